// Which agent of a cluster writes the multi-cluster services objects: the lowest-named node of the
// cluster in the verified mesh snapshot (registered and heartbeating: expired and revoked nodes are
// not in it). Every agent computes the same answer from the same snapshot, with no extra object or
// API permission (a Lease would need both); for the short time two agents' snapshots disagree both
// write the same desired state, and every write is idempotent. Pure.
import { compareText } from '../../../lib/compare.ts';
import type { NodeRecord } from '../../../protocol/messages.ts';

export function servicesLeader(nodes: Iterable<Pick<NodeRecord, 'name' | 'cluster'>>, cluster: string): string | undefined {
  let best: string | undefined;
  for (const n of nodes) if (n.cluster === cluster && (best === undefined || compareText(n.name, best) < 0)) best = n.name;
  return best;
}
