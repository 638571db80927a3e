// Pure: the merged multi-cluster services (every cluster's exports, protocol/service.ts) and the
// live mesh → the ServiceImport objects this cluster should hold (KEP-1645: one per exported
// service name, in the service's namespace, with the merged ports and the exporting clusters in
// status.clusters), and the `Conflict` condition of each of this cluster's ServiceExports.
import type { NodeRecord } from '../../../protocol/messages.ts';
import type { MergedService } from '../../../protocol/service.ts';
import type { JsonValue } from './json.ts';
import { MANAGED_BY, MANAGED_BY_LABEL, MCS_API_VERSION } from './resources.ts';
import { keyOf, type ValidCondition } from './desired-exports.ts';

export interface DesiredImport {
  readonly namespace: string;
  readonly name: string;
  /** spec of the ServiceImport (type, ports). */
  readonly spec: { readonly [k: string]: JsonValue };
  /** status of the ServiceImport (clusters). */
  readonly status: { readonly [k: string]: JsonValue };
}

/**
 * Every merged service that at least one LIVE cluster exports (a cluster whose nodes all expired
 * or were revoked leaves status.clusters, and the import goes when none is left). The type is
 * `Headless`: Crosslink allocates no ClusterSetIP, `<svc>.<ns>.svc.clusterset.local` answers with
 * the endpoints' pod IPs.
 */
export function desiredImports(merged: readonly MergedService[], nodes: Iterable<Pick<NodeRecord, 'cluster'>>): Map<string, DesiredImport> {
  const live = new Set<string>();
  for (const n of nodes) live.add(n.cluster);
  const out = new Map<string, DesiredImport>();
  for (const s of merged) {
    const clusters = s.clusters.map((c) => c.cluster).filter((c) => live.has(c)).sort();
    if (clusters.length === 0) continue;
    out.set(keyOf(s), {
      namespace: s.namespace,
      name: s.name,
      spec: { type: 'Headless', ports: s.ports.map((p) => (p.name === '' ? { port: p.port, protocol: p.protocol } : { name: p.name, port: p.port, protocol: p.protocol })) },
      status: { clusters: clusters.map((cluster) => ({ cluster })) },
    });
  }
  return out;
}

/** The full ServiceImport object to write (labels mark it as Crosslink's). */
export function serviceImportObject(d: DesiredImport, resourceVersion?: string): { [k: string]: JsonValue } {
  return {
    apiVersion: MCS_API_VERSION,
    kind: 'ServiceImport',
    metadata: {
      name: d.name,
      namespace: d.namespace,
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY },
      ...(resourceVersion === undefined ? {} : { resourceVersion }),
    },
    spec: d.spec,
    status: d.status,
  };
}

/** Per exported service of `localCluster`: Conflict True with the merge's message, else False. */
export function conflictConditions(merged: readonly MergedService[], localCluster: string): Map<string, ValidCondition> {
  const out = new Map<string, ValidCondition>();
  for (const s of merged) {
    if (!s.clusters.some((c) => c.cluster === localCluster)) continue;
    const mine = s.conditions.filter((c) => c.cluster === localCluster);
    out.set(
      keyOf(s),
      mine.length > 0
        ? { status: 'True', reason: mine[0]?.reason ?? 'PortConflict', message: mine.map((c) => c.message).join('; ') }
        : { status: 'False', reason: 'NoConflicts', message: 'the export agrees with every other cluster exporting this service' },
    );
  }
  return out;
}
