// Per-cluster state (topology, active gateway), pure. Deterministic from the live node records and
// the current cluster record, so any leader computes the same answer and writes only on change.
import type { ClusterRecord, NodeRecord, Topology } from '../protocol/messages.ts';
import { compareText } from '../lib/compare.ts';

export type ClusterDecision =
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'delete' }
  | { readonly kind: 'write'; readonly record: ClusterRecord; readonly gatewayChanged: boolean };


/** Topology of the most recently (re)registered node; ties go to the lowest name. */
export function clusterTopology(members: readonly NodeRecord[]): Topology | undefined {
  // One pass, not a sort: this runs on every registration, over every member of the cluster.
  let latest: NodeRecord | undefined;
  for (const n of members) {
    if (latest === undefined || n.updatedAt > latest.updatedAt || (n.updatedAt === latest.updatedAt && compareText(n.name, latest.name) < 0)) latest = n;
  }
  return latest?.topology;
}

/**
 * The active gateway: the current one while it is live, still eligible and not `unhealthy` (no
 * needless failover), otherwise the healthy eligible node with a public endpoint, then the lowest
 * name. `unhealthy`: gateways a quorum of probing nodes reports down (coordinator/gateway-health.ts);
 * when every eligible node is unhealthy the current one is kept (failing over cannot help).
 */
export function electGateway(members: readonly NodeRecord[], current: string | null, unhealthy: ReadonlySet<string> = new Set()): string | null {
  const eligible = members.filter((n) => n.gatewayEligible);
  const healthy = eligible.filter((n) => !unhealthy.has(n.name));
  if (current !== null && (healthy.length === 0 ? eligible : healthy).some((n) => n.name === current)) return current;
  const best = [...(healthy.length === 0 ? eligible : healthy)].sort((a, b) => Number(b.endpoints.length > 0) - Number(a.endpoints.length > 0) || compareText(a.name, b.name))[0];
  return best?.name ?? null;
}

/**
 * What the cluster record of `cluster` should be, given its live members (any order). `retired` is
 * the record deleted when the cluster last emptied (if remembered), so a re-created record keeps
 * counting generation and epoch upwards instead of starting over.
 */
export function decideCluster(
  cluster: string,
  members: readonly NodeRecord[],
  current: ClusterRecord | undefined,
  now: number,
  retired?: Pick<ClusterRecord, 'generation' | 'gatewayEpoch'>,
  unhealthy: ReadonlySet<string> = new Set(),
): ClusterDecision {
  const own = members.filter((n) => n.cluster === cluster);
  const topology = clusterTopology(own);
  if (topology === undefined) return current ? { kind: 'delete' } : { kind: 'unchanged' };
  const gateway = topology === 'gateway' ? electGateway(own, current?.gateway ?? null, unhealthy) : null;
  if (current && current.topology === topology && current.gateway === gateway) return { kind: 'unchanged' };
  const gatewayChanged = (current?.gateway ?? null) !== gateway;
  const record: ClusterRecord = {
    kind: 'cluster',
    v: 1,
    name: cluster,
    topology,
    gateway,
    gatewayEpoch: (current?.gatewayEpoch ?? retired?.gatewayEpoch ?? 0) + (gatewayChanged ? 1 : 0),
    generation: (current?.generation ?? retired?.generation ?? 0) + 1,
    updatedAt: now,
  };
  return { kind: 'write', record, gatewayChanged };
}
