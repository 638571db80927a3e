// Where the time of a coordinator failover goes (`npm run bench -- failover-coordinator`), read from
// the pino lines of the follower that takes over (one clock: every process runs on this host). From
// the leader's SIGKILL (t0) to:
//   expires    the dead leader's last lease renewal (the entry's server time stamp) + the lease TTL:
//              no follower may take over before it
//   took       the follower's `became leader` (its compare-and-set on the lease succeeded)
//   loaded     its `state loaded from the bucket` (the registry read; cleanups and cluster records follow)
//   announced  its `announced the new leader` (subscriptions confirmed, "leader up" published), with the spread
// Pure: the caller collects the lines; a phase whose line is missing is NaN.
import type { LogLine } from './failover-breakdown.ts';

export interface CoordinatorFailoverPhases {
  readonly expires: number;
  readonly took: number;
  readonly loaded: number;
  readonly announced: number;
  /** The spread the new leader announced (ms), NaN if it did not announce. */
  readonly spreadMs: number;
  /** Where the registry came from: 'warm copy' or 'bucket read' (coordinator/warm-snapshot.ts); '-' if not logged. */
  readonly loadedFrom: string;
}

export function coordinatorFailoverPhases(follower: readonly LogLine[], o: { readonly t0: number; readonly lastRenewalAt: number; readonly leaseTtlMs: number }): CoordinatorFailoverPhases {
  const first = (msg: string): LogLine | undefined => follower.find((l) => l.time >= o.t0 && l.msg === msg);
  const at = (l: LogLine | undefined): number => (l ? l.time - o.t0 : NaN);
  const announced = first('announced the new leader: agents heartbeat within the spread');
  const spread = announced?.fields['spreadMs'];
  const loaded = first('state loaded from the bucket');
  const from = loaded?.fields['from'];
  return {
    expires: o.lastRenewalAt + o.leaseTtlMs - o.t0,
    took: at(first('became leader')),
    loaded: at(loaded),
    announced: at(announced),
    spreadMs: typeof spread === 'number' ? spread : NaN,
    loadedFrom: typeof from === 'string' ? from : '-',
  };
}
