// The live state an apply left behind, as the next apply would read it: WireGuard (as `wg show
// dump` would list it) and the main table's routes (ours as installed, everybody else's as last
// read). A change-driven apply diffs against this instead of re-reading `wg show dump` and both
// route tables, so a join costs the same on a 10-node and a 3,000-node mesh; the periodic resync
// reads the kernel afresh and repairs whatever changed behind our back. With a delta (what changed
// since the desired state it was built from, desired-delta.ts) only the changed keys are rebuilt:
// unchanged peers keep their objects. Pure.
//
// The data plane holds ONE of these (LeftState): the mesh as the last full apply left it, or the
// interface as an interface-only apply (a fail-static start) left it (interface-state.ts), and
// `startingPoint` decides which of it the next apply may start from. The other start-time
// leftovers are not applied state: the reconciler's host read of the start (routes read beside the
// interface-only apply) is a read handed down once as DataplaneTarget.liveRoutes, and
// InterfaceEcho (own-changes.ts) holds the interface being ensured, which must outlive an apply in
// flight and one that failed (the echo of our own `ip link set` is not drift either way).
import type { DesiredPeer, DesiredState } from '../plan/model.ts';
import type { DesiredDelta } from './desired-delta.ts';
import type { InterfaceState, LinkJson } from './interface-state.ts';
import { isOwnedRoute, liveRouteOf, type LiveRoute } from './route-diff.ts';
import { canonicalEndpoint, type LivePeer, type LiveWireguard } from './wg-dump.ts';

export interface AppliedState {
  readonly kind: 'mesh';
  /** Peers sorted by public key (the desired state's order). */
  readonly wireguard: LiveWireguard;
  readonly routes: readonly LiveRoute[];
  /** The link as ensured for it (agent/dataplane/interface-state.ts). */
  readonly link: LinkJson;
  /** The desired state realised: the next change-driven apply diffs only what changed since (desiredDelta);
   *  its `interface` is the one the apply ensured (MTU, addresses, up), not read again while unchanged. */
  readonly desired: DesiredState;
  /** Desired route destinations held by routes of others (never installed). */
  readonly blocked: ReadonlySet<string>;
  /** The backend generation it was built for: a recreated interface (wireguard-go restart) voids it. */
  readonly generation: number;
}

/** What the last apply that succeeded left: the mesh (a full apply) or the interface only. */
export type LeftState = AppliedState | InterfaceState;

/**
 * What a new apply may start from instead of reading the kernel: only a change-driven apply
 * (`trusted`: target.readLive false, and no relay hints needing a fresh dump) on the interface
 * generation `left` was built for. A full apply's state is a model to diff the delta against; an
 * interface-only apply's state carries its reads (WireGuard and the link) into the first full
 * apply of a start. A recreated interface (another generation) voids either.
 */
export function startingPoint(left: LeftState | undefined, trusted: boolean, generation: number): { readonly model?: AppliedState; readonly carried?: InterfaceState } {
  if (!trusted || left === undefined || left.generation !== generation) return {};
  return left.kind === 'mesh' ? { model: left } : { carried: left };
}

function livePeerOf(want: DesiredPeer, had: LivePeer | undefined): LivePeer {
  return {
    publicKey: want.publicKey,
    endpoint: want.endpoint !== null ? canonicalEndpoint(want.endpoint) : (had?.endpoint ?? null),
    allowedIps: [...new Set(want.allowedIps)].sort(),
    latestHandshakeAt: had?.latestHandshakeAt ?? null,
    rxBytes: had?.rxBytes ?? 0,
    txBytes: had?.txBytes ?? 0,
    persistentKeepalive: want.persistentKeepalive,
    hasPresharedKey: had?.hasPresharedKey ?? false,
  };
}

/**
 * The state after an apply that succeeded in full: `live` is what the apply started from (read or
 * itself derived), `desired` what it realised, `publicKey` the key it ensured. Routes the diff
 * blocked (foreign destinations) stay as they were; endpoints we do not set (null: learned from a
 * NATed peer's handshakes) keep what was live.
 */
export function stateAfterApply(
  live: { readonly wireguard: LiveWireguard; readonly routes: readonly LiveRoute[] },
  desired: DesiredState,
  publicKey: string,
  blockedDsts: ReadonlySet<string>,
  generation: number,
  link: LinkJson,
): AppliedState {
  const before = new Map(live.wireguard.peers.map((p) => [p.publicKey, p]));
  const peers: LivePeer[] = desired.peers.map((want) => livePeerOf(want, before.get(want.publicKey)));
  const routes: LiveRoute[] = [
    ...live.routes.filter((r) => !isOwnedRoute(r)),
    ...desired.routes.filter((r) => !blockedDsts.has(r.dst)).map(liveRouteOf),
  ];
  return {
    kind: 'mesh',
    wireguard: { interface: { ...live.wireguard.interface, publicKey, listenPort: desired.interface.listenPort }, peers },
    routes,
    link,
    desired,
    blocked: blockedDsts,
    generation,
  };
}

/**
 * The state after a change-driven apply that succeeded in full, from the state it started from
 * (`previous`, built for `delta`'s "before") and the delta: only changed peers are rebuilt (one
 * walk over both sorted lists, unchanged peers keep their objects), only changed routes replaced.
 * `blockedNow`: the changed destinations the diff blocked.
 */
export function stateAfterDelta(previous: AppliedState, desired: DesiredState, delta: DesiredDelta, publicKey: string, blockedNow: ReadonlySet<string>, link: LinkJson): AppliedState {
  const had = previous.wireguard.peers;
  const peers: LivePeer[] = [];
  let i = 0;
  for (const want of desired.peers) {
    while (i < had.length && (had[i]?.publicKey ?? '') < want.publicKey) i++;
    const old = had[i]?.publicKey === want.publicKey ? had[i] : undefined;
    peers.push(old !== undefined && !delta.peerKeys.has(want.publicKey) ? old : livePeerOf(want, old));
  }
  const blocked = new Set([...previous.blocked].filter((d) => !delta.routeDsts.has(d)));
  for (const d of blockedNow) blocked.add(d);
  const routes: LiveRoute[] = [
    ...previous.routes.filter((r) => !(isOwnedRoute(r) && delta.routeDsts.has(r.dst))),
    ...delta.routes.filter((r) => !blockedNow.has(r.dst)).map(liveRouteOf),
  ];
  return {
    kind: 'mesh',
    wireguard: { interface: { ...previous.wireguard.interface, publicKey, listenPort: desired.interface.listenPort }, peers },
    routes,
    link,
    desired,
    blocked,
    generation: previous.generation,
  };
}
