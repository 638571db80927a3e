// Pure: the verified ServiceExport records + the live mesh view → what this agent answers for each
// `<svc>.<ns>.svc.clusterset.local`: the merged ports and the ready endpoints of live nodes, in
// answer order (local cluster first, then by path health and measured RTT; `local-first` keeps
// only the nearest cluster that has endpoints).
import type { NodeRecord } from '../../protocol/messages.ts';
import {
  liveEndpoints,
  mergeServiceExports,
  orderClusters,
  type ClusterPathInfo,
  type DnsPolicy,
  type MergedService,
  type ServiceExportRecord,
  type ServicePort,
} from '../../protocol/service.ts';

export interface ServiceEntry {
  readonly namespace: string;
  readonly name: string;
  readonly ports: readonly ServicePort[];
  /** Endpoint addresses in answer order, with their exporting cluster. */
  readonly endpoints: readonly { readonly address: string; readonly cluster: string }[];
}

/** Keyed by `<name>.<namespace>` (lowercase). */
export type ServiceTable = ReadonlyMap<string, ServiceEntry>;

export interface ServiceTableInput {
  readonly records: Iterable<ServiceExportRecord>;
  readonly nodes: Iterable<Pick<NodeRecord, 'cluster' | 'podCidrs'>>;
  readonly localCluster: string;
  readonly paths: ReadonlyMap<string, ClusterPathInfo>;
  readonly policy: DnsPolicy;
}

export function entryFor(service: MergedService, input: Omit<ServiceTableInput, 'records'>): ServiceEntry {
  const live = liveEndpoints(service, input.nodes);
  const ordered = orderClusters(live.clusters, input.localCluster, input.paths, input.policy);
  return {
    namespace: service.namespace,
    name: service.name,
    ports: service.ports,
    endpoints: ordered.flatMap((c) => c.addresses.map((address) => ({ address, cluster: c.cluster }))),
  };
}

export function buildServiceTable(input: ServiceTableInput): ServiceTable {
  const nodes = [...input.nodes];
  const table = new Map<string, ServiceEntry>();
  for (const s of mergeServiceExports(input.records)) table.set(`${s.name}.${s.namespace}`, entryFor(s, { ...input, nodes }));
  return table;
}
