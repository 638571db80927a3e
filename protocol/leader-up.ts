// "Leader up": what a coordinator publishes (core NATS, `<prefix>.coordinator.up`, signed by its
// signing key) once a new term serves — after a restart or a failover. Agents that have not been
// heard by this leader yet heartbeat at a random moment within `spreadMs` instead of at their own
// phase up to an interval later, so the whole fleet is heard again within about a second of the new
// leader serving, at a bounded rate (the leader picks the spread from its node count). The epoch
// it carries is the term's (protocol/coordinator-epoch.ts): agents sign it at once.
import * as z from 'zod';
import { CoordinatorEpoch } from './coordinator-epoch.ts';

export const LeaderUp = z
  .object({
    kind: z.literal('leader-up'),
    v: z.literal(1),
    /** The lease holder id of the new leader. */
    holder: z.string().min(1).max(253),
    epoch: CoordinatorEpoch,
    /** The coordinator's clock when it began serving (ms): agents ignore a stale or reordered announcement. */
    at: z.number().int().nonnegative(),
    /** Agents heartbeat at a random moment within this many ms. */
    spreadMs: z.number().int().min(0).max(60_000),
  })
  .strict();
export type LeaderUp = z.infer<typeof LeaderUp>;

/**
 * The spread for `nodes` live nodes: 0.5 ms per node (≈ 2,000 heartbeats/s), at least 250 ms, at most
 * half an interval. A new leader answered 3,400–4,650 heartbeats/s at its peak (200 ms windows) with
 * 2,000/s announced at 1,000 nodes on a shared 2-core machine, reply p99 0.26–0.45 s, no timeouts
 * (docs/benchmarks.md, round 20); at 1 ms per node the fleet waited twice as long for no gain.
 */
export function leaderUpSpreadMs(nodes: number, heartbeatIntervalMs: number): number {
  // Never above the schema's 60 s, or a huge fleet's announcement would not parse and never go out.
  return Math.max(0, Math.min(60_000, Math.floor(heartbeatIntervalMs / 2), Math.max(250, Math.ceil(nodes / 2))));
}
