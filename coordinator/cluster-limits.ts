// Per-cluster limits on live nodes and service exports (docs/security-review.md findings 7 and 8):
// what `cluster add` writes when the operator gives none, how the flags are read, and the refusal a
// registration or export beyond a limit gets. The limits live in the signed cluster definition
// (maxNodes, maxExports); a definition without them has no limit. Enforced with slot claims
// (slot-claims.ts) in registry.ts and services.ts.
import { ValidationError } from '../lib/errors.ts';
import { CLUSTER_LIMIT_MAX, type ErrorBody } from '../protocol/messages.ts';

/**
 * `cluster add` without --max-nodes: Kubernetes' own documented ceiling for one cluster (5,000
 * nodes), so no real cluster is refused, while one leaked join credential can no longer fill the
 * overlay (a /16 holds 65,534 addresses) or make every agent carry tens of thousands of peers.
 */
export const DEFAULT_MAX_NODES = 5000;

/** `cluster add` without --max-exports: each export is a record every agent's service watch holds. */
export const DEFAULT_MAX_EXPORTS = 1000;

export type LimitFlag = '--max-nodes' | '--max-exports';

/** A limit flag's value: a whole number from 1 to CLUSTER_LIMIT_MAX (digits only: no 1e3, no 0x10). */
export function parseLimit(flag: LimitFlag, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const what = flag === '--max-nodes' ? 'live nodes' : 'service exports';
  const n = /^\d{1,7}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > CLUSTER_LIMIT_MAX) {
    throw new ValidationError(flag, text, `use a whole number from 1 to ${CLUSTER_LIMIT_MAX}: the most ${what} the cluster may have`);
  }
  return n;
}

/** A refused slot claim (slot-claims.ts): the limit, the live members, the other claims in flight. */
export interface LimitReached {
  readonly limit: number;
  readonly live: number;
  readonly inFlight: number;
}

/** What a new node of a cluster at its node limit is told (a live node re-registering never is). */
export function nodeLimitRefusal(cluster: string, { limit, live, inFlight }: LimitReached): ErrorBody {
  return {
    code: 'conflict',
    field: 'cluster',
    message:
      `cluster ${JSON.stringify(cluster)} is at its node limit: ${live} live node${live === 1 ? '' : 's'}${inFlight > 0 ? ` and ${inFlight} registering` : ''} of at most ${limit}; ` +
      `a new node gets in once one expires (silent for --node-ttl), deregisters or is revoked, or once an operator raises the limit ` +
      `(\`crosslink-coordinator cluster set ${cluster} --max-nodes N\`)`,
  };
}

/** What a new service export beyond the cluster's export limit is told (an update of an export never is). */
export function exportLimitRefusal(cluster: string, { limit, live: held, inFlight }: LimitReached): ErrorBody {
  return {
    code: 'conflict',
    field: 'cluster',
    message:
      `cluster ${JSON.stringify(cluster)} is at its service export limit: ${held} export${held === 1 ? '' : 's'}${inFlight > 0 ? ` and ${inFlight} being written` : ''} of at most ${limit}; ` +
      `unexport a service of the cluster (\`crosslink unexport\`), or an operator raises the limit (\`crosslink-coordinator cluster set ${cluster} --max-exports N\`)`,
  };
}

/** "3 of at most 5", or "3 (no limit)". */
export function usageText(count: number, limit: number | undefined): string {
  return limit === undefined ? `${count} (no limit)` : `${count} of at most ${limit}`;
}
