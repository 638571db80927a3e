// The operator's side of the per-cluster limits (cluster-limits.ts), on the bucket directly like the
// rest of cluster-admin.ts: `cluster set` changes a definition's limits (a new signed definition,
// compare-and-set, like `rotate-credential`), and `cluster list|show` count what each cluster holds.
import { NodeRecord, ClusterDefinition } from '../protocol/messages.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { ClusterAdminError, mustRead, parseClusterName, type ClusterAdminDeps } from './cluster-admin.ts';
import { bucketExportKeys, exportKeysByCluster } from './export-counts.ts';
import { isCasConflict, type StateStore } from './store.ts';

export interface ClusterLimits {
  readonly maxNodes?: number | undefined;
  readonly maxExports?: number | undefined;
}

/**
 * Sets the limits given (the others stay). Lowering one below what the cluster holds removes
 * nothing: live nodes and exports stay, new ones are refused until the count is below the limit.
 */
export async function setClusterLimits(deps: ClusterAdminDeps, name: string, limits: ClusterLimits): Promise<ClusterDefinition> {
  if (limits.maxNodes === undefined && limits.maxExports === undefined) throw new ClusterAdminError('nothing to set: give --max-nodes N and/or --max-exports N');
  const existing = await mustRead(deps.store, parseClusterName(name));
  const definition = ClusterDefinition.parse({
    ...existing.value,
    ...(limits.maxNodes === undefined ? {} : { maxNodes: limits.maxNodes }),
    ...(limits.maxExports === undefined ? {} : { maxExports: limits.maxExports }),
    updatedAt: Math.max(deps.clock.now(), existing.value.updatedAt),
  } satisfies ClusterDefinition);
  try {
    await deps.store.putDefinition(definition, existing.revision);
  } catch (err) {
    if (isCasConflict(err)) throw new ClusterAdminError(`cluster "${name}" changed meanwhile; run the command again`, { cause: err });
    throw err;
  }
  return definition;
}

/** What a cluster holds against its limits. */
export interface ClusterUsage {
  readonly nodes: number;
  readonly exports: number;
}

/** Live nodes (signed node records) and service exports (keys) per cluster, read from the bucket. */
export async function clusterUsage(store: StateStore): Promise<ReadonlyMap<string, ClusterUsage>> {
  const out = new Map<string, { nodes: number; exports: number }>();
  const of = (cluster: string): { nodes: number; exports: number } => {
    let u = out.get(cluster);
    if (!u) out.set(cluster, (u = { nodes: 0, exports: 0 }));
    return u;
  };
  for (const rec of (await store.loadSignedUnder(kvKeys.nodesFilter, NodeRecord)).values()) of(rec.value.cluster).nodes++;
  for (const [cluster, keys] of exportKeysByCluster(await bucketExportKeys(store.kv))) of(cluster).exports = keys.size;
  return out;
}

/** The service exports of one cluster (keys only: no record is read or verified). */
export async function clusterExportCount(store: StateStore, cluster: string): Promise<number> {
  return exportKeysByCluster(await bucketExportKeys(store.kv)).get(cluster)?.size ?? 0;
}
