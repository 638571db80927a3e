// Which addresses belong to which cluster, for the access policy. ONE function, used by every agent
// (its nftables table) and by `crosslink-coordinator policy test`, so both always agree.
//
// A cluster's addresses are the pod ranges the operator ENROLLED it with (its coordinator-signed
// `enrollments.<cluster>` definition, `cluster add --pod-cidr`) plus the overlay IP the coordinator
// assigned to each of its registered nodes. The pod ranges a node record claims are never used: a
// record claiming a range outside its cluster's enrollment must not widen what a `{cluster: X}`
// rule matches. A node of a cluster that is not (or no longer) enrolled belongs to no cluster.
import { parseCidr, parseIp } from '../cidr.ts';
import type { ClusterDefinition, NodeRecord } from '../messages.ts';
import type { PolicyContext } from './evaluate.ts';

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The policy's view of the mesh: enrolled definitions (verified) and verified node records. */
export function policyContext(enrolled: Iterable<ClusterDefinition>, nodes: Iterable<NodeRecord>): PolicyContext {
  const clusters = new Map<string, Set<string>>();
  for (const def of enrolled) {
    const set = clusters.get(def.name) ?? new Set<string>();
    for (const c of def.podCidrs) set.add(parseCidr(c)?.text ?? c);
    clusters.set(def.name, set);
  }
  const overlay = new Set<string>();
  for (const n of nodes) {
    if (parseIp(n.overlayIp) === undefined) continue;
    overlay.add(n.overlayIp);
    const host = parseCidr(n.overlayIp);
    // Only the overlay address (coordinator-assigned), and only into an enrolled cluster.
    if (host) clusters.get(n.cluster)?.add(host.text);
  }
  return {
    clusters: new Map([...clusters].sort(([a], [b]) => byName(a, b)).map(([k, v]) => [k, [...v].sort()])),
    nodeOverlayIps: [...overlay].sort(),
  };
}
