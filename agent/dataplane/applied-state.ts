// The live state an apply left behind, as the next apply would read it: WireGuard (as `wg show
// dump` would list it) and the main table's routes (ours as installed, everybody else's as last
// read). A change-driven apply diffs against this instead of re-reading `wg show dump` and both
// route tables, so a join costs the same on a 10-node and a 3,000-node mesh; the periodic resync
// reads the kernel afresh and repairs whatever changed behind our back. Pure.
import type { DesiredInterface, DesiredState } from '../plan/model.ts';
import type { LinkJson } from './interface-state.ts';
import { isOwnedRoute, liveRouteOf, type LiveRoute } from './route-diff.ts';
import { canonicalEndpoint, type LivePeer, type LiveWireguard } from './wg-dump.ts';

export interface AppliedState {
  readonly wireguard: LiveWireguard;
  readonly routes: readonly LiveRoute[];
  /** The interface as the apply ensured it (MTU, addresses, up): a change-driven apply with the same one does not read it again. */
  readonly interface: DesiredInterface;
  /** The link as ensured for it (agent/dataplane/interface-state.ts). */
  readonly link: LinkJson;
  /** The backend generation it was built for: a recreated interface (wireguard-go restart) voids it. */
  readonly generation: number;
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
  const peers: LivePeer[] = desired.peers.map((want) => {
    const had = before.get(want.publicKey);
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
  });
  const routes: LiveRoute[] = [
    ...live.routes.filter((r) => !isOwnedRoute(r)),
    ...desired.routes.filter((r) => !blockedDsts.has(r.dst)).map(liveRouteOf),
  ];
  return {
    wireguard: { interface: { ...live.wireguard.interface, publicKey, listenPort: desired.interface.listenPort }, peers },
    routes,
    interface: desired.interface,
    link,
    generation,
  };
}
