// Keyed diff (by public key) of desired WireGuard peers against `wg show dump`, and the `wg set`
// commands that close it. Only changed attributes are sent, so one peer joining costs one command.
import type { DesiredPeer } from '../plan/model.ts';
import { canonicalEndpoint, type LiveWireguard } from './wg-dump.ts';

export interface PeerUpdate {
  readonly publicKey: string;
  /** Present only when it must change. */
  readonly endpoint?: string;
  readonly persistentKeepalive?: number;
  readonly allowedIps?: readonly string[];
}

export interface WireguardDiff {
  /** New listen port, or null when it already matches. */
  readonly listenPort: number | null;
  readonly add: readonly DesiredPeer[];
  readonly update: readonly PeerUpdate[];
  /** Public keys of live peers we no longer want. */
  readonly remove: readonly string[];
}

export interface PlannedCommand {
  /** Short operation name for failure summaries ("add peer", "delete route", …). */
  readonly op: string;
  readonly argv: readonly string[];
}

const sortedSet = (xs: readonly string[]): string[] => [...new Set(xs)].sort();
const sameSet = (a: readonly string[], b: readonly string[]): boolean => {
  const x = sortedSet(a);
  const y = sortedSet(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
};

export function diffWireguard(
  desired: { readonly listenPort: number; readonly peers: readonly DesiredPeer[] },
  live: LiveWireguard,
): WireguardDiff {
  const liveByKey = new Map(live.peers.map((p) => [p.publicKey, p]));
  const wanted = new Set(desired.peers.map((p) => p.publicKey));
  const add: DesiredPeer[] = [];
  const update: PeerUpdate[] = [];
  for (const want of desired.peers) {
    const have = liveByKey.get(want.publicKey);
    if (!have) {
      add.push(want);
      continue;
    }
    // A null desired endpoint means "don't care": never clear an endpoint WireGuard learned from a NATed peer.
    const endpointChanged = want.endpoint !== null && canonicalEndpoint(want.endpoint) !== have.endpoint;
    const keepaliveChanged = want.persistentKeepalive !== have.persistentKeepalive;
    const allowedChanged = !sameSet(want.allowedIps, have.allowedIps);
    if (!endpointChanged && !keepaliveChanged && !allowedChanged) continue;
    update.push({
      publicKey: want.publicKey,
      ...(endpointChanged && want.endpoint !== null ? { endpoint: want.endpoint } : {}),
      ...(keepaliveChanged ? { persistentKeepalive: want.persistentKeepalive } : {}),
      ...(allowedChanged ? { allowedIps: sortedSet(want.allowedIps) } : {}),
    });
  }
  const remove = live.peers.filter((p) => !wanted.has(p.publicKey)).map((p) => p.publicKey).sort();
  return {
    listenPort: live.interface.listenPort === desired.listenPort ? null : desired.listenPort,
    add,
    update,
    remove,
  };
}

export function isEmptyWireguardDiff(d: WireguardDiff): boolean {
  return d.listenPort === null && d.add.length === 0 && d.update.length === 0 && d.remove.length === 0;
}

function peerArgs(u: PeerUpdate): string[] {
  const args = ['peer', u.publicKey];
  if (u.endpoint !== undefined) args.push('endpoint', u.endpoint);
  if (u.persistentKeepalive !== undefined) args.push('persistent-keepalive', u.persistentKeepalive === 0 ? 'off' : String(u.persistentKeepalive));
  if (u.allowedIps !== undefined) args.push('allowed-ips', u.allowedIps.join(','));
  return args;
}

/** Adds and updates (one `wg set` per peer) come first; removals last so a moved CIDR is never unrouted. */
export function wireguardCommands(iface: string, diff: WireguardDiff): { readonly upserts: PlannedCommand[]; readonly removals: PlannedCommand[] } {
  const upserts: PlannedCommand[] = [];
  if (diff.listenPort !== null) upserts.push({ op: 'set listen-port', argv: ['wg', 'set', iface, 'listen-port', String(diff.listenPort)] });
  for (const p of diff.add) {
    const args = peerArgs({
      publicKey: p.publicKey,
      ...(p.endpoint !== null ? { endpoint: p.endpoint } : {}),
      // New peers start with keepalive off; only say it when we want it on.
      ...(p.persistentKeepalive > 0 ? { persistentKeepalive: p.persistentKeepalive } : {}),
      allowedIps: sortedSet(p.allowedIps),
    });
    upserts.push({ op: 'add peer', argv: ['wg', 'set', iface, ...args] });
  }
  for (const u of diff.update) upserts.push({ op: 'update peer', argv: ['wg', 'set', iface, ...peerArgs(u)] });
  const removals = diff.remove.map((key) => ({ op: 'remove peer', argv: ['wg', 'set', iface, 'peer', key, 'remove'] }));
  return { upserts, removals };
}
