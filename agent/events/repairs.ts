// What a self-healing reconcile put back. A reconcile asked for only by the self-heal path — the
// netlink drift monitor (`drift: …`), a lost probe (`probe to X lost`: a peer removed by hand makes
// no netlink event) or the periodic resync — changes the kernel only where it had drifted from what
// the agent last applied, so each mutating command it ran is a repair. A run that also had another
// reason (a mesh change, a key rotation, a wireguard-go restart, the start) is not a repair: its
// changes are the mesh moving on, and a restart has its own event. Pure.
import type { ReconcileRecord } from '../reconciler.ts';

export interface Repairs {
  /** Route destinations put back (`ip route replace <dst> dev <iface> …`). */
  readonly routes: readonly string[];
  /** WireGuard public keys of peers put back or corrected (`wg set <iface> peer <key> …`). */
  readonly peers: readonly string[];
  /** The MTU the interface was set back to, or null. */
  readonly mtu: number | null;
}

const SELF_HEAL_REASON = /^(?:drift: |probe to \S+ lost$|resync$)/;

/** True when every reason of the run is a self-heal trigger. */
export function isSelfHealRun(reasons: readonly string[]): boolean {
  return reasons.length > 0 && reasons.every((r) => SELF_HEAL_REASON.test(r));
}

/** The repairs of one reconcile of `iface` (nothing when the run was not a self-heal run). */
export function repairsOf(record: Pick<ReconcileRecord, 'reasons' | 'commands'>, iface: string): Repairs {
  const routes: string[] = [];
  const peers: string[] = [];
  let mtu: number | null = null;
  if (!isSelfHealRun(record.reasons)) return { routes, peers, mtu };
  for (const argv of record.commands) {
    const [cmd, ...rest] = argv;
    if (cmd === 'ip' && rest[0] === 'route' && rest[1] === 'replace' && rest.includes(iface) && rest[2] !== undefined) routes.push(rest[2]);
    else if (cmd === 'ip' && rest[0] === 'link' && rest[1] === 'set' && rest.includes(iface) && rest.includes('mtu')) {
      const value = Number(rest[rest.indexOf('mtu') + 1]);
      if (Number.isInteger(value)) mtu = value;
    } else if (cmd === 'wg' && rest[0] === 'set' && rest[1] === iface) {
      // One `wg set <iface> peer K … peer K2 …` per peer (a removal has `remove`: not a repair).
      for (let i = 2; i < rest.length - 1; i++) if (rest[i] === 'peer' && rest[i + 2] !== 'remove') peers.push(rest[i + 1] ?? '');
    }
  }
  return { routes, peers: peers.filter((p) => p.length > 0), mtu };
}
