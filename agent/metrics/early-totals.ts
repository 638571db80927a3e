// What the agent's event metrics add up to before prom-client is loaded (agent/metrics/deferred-agent-metrics.ts):
// plain totals, folded as events happen, handed to the real AgentMetrics at the first scrape
// (AgentMetrics.restore). Bounded whatever the uptime: one number per histogram bucket.

/** Bucket bounds (seconds) of crosslink_agent_reconcile_duration_seconds; one more bucket, +Inf, follows. */
export const RECONCILE_BUCKETS: readonly number[] = Object.freeze([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);

/** Reconciles of one result: how many, and per bucket (the last one +Inf) their count and summed seconds. */
export interface ReconcileTotals {
  count: number;
  readonly bucketCounts: number[];
  readonly bucketSums: number[];
}

export interface EarlyTotals {
  readonly reconciles: { readonly ok: ReconcileTotals; readonly failed: ReconcileTotals };
  /** Mutating data-plane operations applied. */
  changes: number;
  /** Result of the latest reconcile; null before the first. */
  lastOk: boolean | null;
  /** KV revision the latest reconcile worked from; 0: none yet. */
  revision: number;
  wireguardRestarts: number;
  routeRepairs: number;
}

const reconcileTotals = (): ReconcileTotals => ({
  count: 0,
  bucketCounts: new Array<number>(RECONCILE_BUCKETS.length + 1).fill(0),
  bucketSums: new Array<number>(RECONCILE_BUCKETS.length + 1).fill(0),
});

export function emptyTotals(): EarlyTotals {
  return { reconciles: { ok: reconcileTotals(), failed: reconcileTotals() }, changes: 0, lastOk: null, revision: 0, wireguardRestarts: 0, routeRepairs: 0 };
}

/** Index of the bucket a duration (seconds) counts in, as a Prometheus histogram does (value ≤ bound); the last index is +Inf. */
export function bucketIndex(seconds: number): number {
  const i = RECONCILE_BUCKETS.findIndex((bound) => seconds <= bound);
  return i === -1 ? RECONCILE_BUCKETS.length : i;
}

/** Folds one reconcile into the totals (the same effect AgentMetrics.reconciled has on its series). */
export function foldReconcile(t: EarlyTotals, r: { readonly ok: boolean; readonly durationMs: number; readonly changes: number; readonly revision: number }): void {
  const totals = r.ok ? t.reconciles.ok : t.reconciles.failed;
  const seconds = r.durationMs / 1000;
  const i = bucketIndex(seconds);
  totals.count++;
  totals.bucketCounts[i] = (totals.bucketCounts[i] ?? 0) + 1;
  totals.bucketSums[i] = (totals.bucketSums[i] ?? 0) + seconds;
  if (r.changes > 0) t.changes += r.changes;
  t.lastOk = r.ok;
  if (r.revision > 0) t.revision = r.revision;
}
