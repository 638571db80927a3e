// Multi-cluster services (KEP-1645, Multi-Cluster Services API) on Crosslink's control plane:
// the export request an agent sends (signed by its node identity key), the ServiceExport record the
// coordinator signs into the KV (one per service, namespace and exporting cluster), the admission
// check (addresses only inside the exporting cluster's pod ranges), and the pure merge of several
// clusters' exports of one name into one service (port conflicts: the oldest export wins).
import * as z from 'zod';
import { cidrContainsIp, parseCidr, parseIp } from './cidr.ts';
import { ClusterName, ErrorBody, IpText, Key32, NodeName, SignedEnvelope, type NodeRecord } from './messages.ts';
import type { Checked } from './validate-registration.ts';

/** Service and namespace names are DNS labels (RFC 1123), as in Kubernetes. */
export const ServiceLabel = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label: lowercase letters, digits and "-", at most 63');

export const ServiceProtocol = z.enum(['TCP', 'UDP']);
export type ServiceProtocol = z.infer<typeof ServiceProtocol>;

/** A service port. `name` is what SRV names use (`_<name>._<proto>.…`); unnamed ports get no SRV record. */
export const ServicePort = z
  .object({
    name: z
      .string()
      .max(63)
      .regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$/, 'must be empty or a DNS label')
      .default(''),
    port: z.number().int().min(1).max(65535),
    protocol: ServiceProtocol,
  })
  .strict();
export type ServicePort = z.infer<typeof ServicePort>;

export const MAX_SERVICE_PORTS = 32;
export const MAX_SERVICE_ADDRESSES = 256;

const ports = z
  .array(ServicePort)
  .min(1)
  .max(MAX_SERVICE_PORTS)
  .refine((ps) => new Set(ps.map((p) => `${p.port}/${p.protocol}`)).size === ps.length, 'must not list the same port/protocol twice')
  .refine((ps) => new Set(ps.map((p) => p.name)).size === ps.length, 'port names must be unique (at most one unnamed port)');

/** What an agent asks to export: the cluster's complete set of ready endpoints for one service. */
export const ServiceExportRequest = z
  .object({
    v: z.literal(1),
    /** The requesting node; it must be live and belong to `cluster`. */
    node: NodeName,
    identityKey: Key32,
    cluster: ClusterName,
    namespace: ServiceLabel,
    name: ServiceLabel,
    ports,
    /** Ready endpoint addresses; each must lie inside a pod range of `cluster`. */
    addresses: z.array(IpText).max(MAX_SERVICE_ADDRESSES),
    sentAt: z.number().int().nonnegative(),
  })
  .strict();
export type ServiceExportRequest = z.infer<typeof ServiceExportRequest>;

/** Withdraws one cluster's export: the export request without ports and addresses. */
export const ServiceUnexportRequest = ServiceExportRequest.omit({ ports: true, addresses: true });
export type ServiceUnexportRequest = z.infer<typeof ServiceUnexportRequest>;

/** Signed by the coordinator, stored at serviceKeys.export(namespace, name, cluster). */
export const ServiceExportRecord = z
  .object({
    kind: z.literal('service-export'),
    v: z.literal(1),
    namespace: ServiceLabel,
    name: ServiceLabel,
    cluster: ClusterName,
    ports,
    addresses: z.array(IpText).max(MAX_SERVICE_ADDRESSES),
    /** The node whose request wrote this version. */
    exportedBy: NodeName,
    /** First export of this (service, cluster); kept across updates. The oldest export wins port conflicts. */
    createdAt: z.number().int().nonnegative(),
    updatedAt: z.number().int().nonnegative(),
    /** Monotonic per key; agents ignore an older record than one they hold (replay). */
    generation: z.number().int().nonnegative(),
  })
  .strict();
export type ServiceExportRecord = z.infer<typeof ServiceExportRecord>;

export const ServiceReply = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), record: SignedEnvelope.nullable() }),
  z.object({ ok: z.literal(false), error: ErrorBody }),
]);
export type ServiceReply = z.infer<typeof ServiceReply>;

export function serviceSubjects(prefix = 'crosslink.v1') {
  return {
    /** request/reply: SignedEnvelope<ServiceExportRequest> → ServiceReply (leader answers). */
    export: `${prefix}.services.export`,
    /** request/reply: SignedEnvelope<ServiceUnexportRequest> → ServiceReply. */
    unexport: `${prefix}.services.unexport`,
  } as const;
}

/** KV layout: names and namespaces are DNS labels (no dots), so the key splits unambiguously. */
export const serviceKeys = {
  export: (namespace: string, name: string, cluster: string) => `services.${namespace}.${name}.${cluster}`,
  filter: 'services.>',
  parse(key: string): { namespace: string; name: string; cluster: string } | undefined {
    const parts = key.split('.');
    if (parts.length !== 4 || parts[0] !== 'services') return undefined;
    const [, namespace, name, cluster] = parts as [string, string, string, string];
    return { namespace, name, cluster };
  },
} as const;

/** `<name>.<namespace>` as the CLI and logs write a service. */
export const serviceRef = (s: { readonly name: string; readonly namespace: string }): string => `${s.name}.${s.namespace}`;

// ---- admission -------------------------------------------------------------------------------

const refuse = (code: ErrorBody['code'], field: string, message: string): { ok: false; error: ErrorBody } => ({ ok: false, error: { code, field, message } });

/**
 * The coordinator's admission of an export, pure. Same trust rules as node registration: the
 * request is signed by the identity key of a live node (checked by the caller when opening it),
 * that node belongs to the cluster it exports for, and every address lies inside one of
 * `clusterPodRanges` — the pod ranges the cluster was enrolled with (its signed definition, not
 * what node records claim). Duplicate addresses are collapsed, sorted.
 */
export function admitServiceExport(
  req: ServiceExportRequest,
  node: Pick<NodeRecord, 'name' | 'cluster' | 'identityKey'> | undefined,
  clusterPodRanges: readonly string[],
): Checked<{ readonly addresses: readonly string[] }> {
  const who = checkRequester(req, node);
  if (!who.ok) return who;
  const ranges = clusterPodRanges.map((c) => parseCidr(c)).filter((c) => c !== undefined);
  const out = new Set<string>();
  for (const [i, a] of req.addresses.entries()) {
    const ip = parseIp(a);
    if (!ip) return refuse('invalid', `addresses[${i}]`, `addresses[${i}]: ${JSON.stringify(a)} is not an IP address`);
    if (!ranges.some((r) => cidrContainsIp(r, ip.family, ip.value))) {
      return refuse(
        'unauthorized',
        `addresses[${i}]`,
        `addresses[${i}]: ${a} is not inside a pod range of cluster "${req.cluster}" (${clusterPodRanges.join(', ') || 'none'}); a cluster may only export its own pods`,
      );
    }
    out.add(a);
  }
  return { ok: true, value: { addresses: [...out].sort(compareIps) } };
}

/** The requester must be a live node of the cluster, with the identity key that signed the request. */
export function checkRequester(
  req: { readonly node: string; readonly cluster: string; readonly identityKey: string },
  node: Pick<NodeRecord, 'name' | 'cluster' | 'identityKey'> | undefined,
): Checked<true> {
  if (!node) return refuse('unknown-node', 'node', `node "${req.node}" is not registered (expired or removed); only live nodes export services`);
  if (node.identityKey !== req.identityKey) return refuse('unauthorized', 'identityKey', `node "${req.node}" is registered with another identity key`);
  if (node.cluster !== req.cluster) {
    return refuse('unauthorized', 'cluster', `node "${req.node}" belongs to cluster "${node.cluster}", not "${req.cluster}"; a node exports only for its own cluster`);
  }
  return { ok: true, value: true };
}

export function compareIps(a: string, b: string): number {
  const pa = parseIp(a);
  const pb = parseIp(b);
  if (!pa || !pb) return a < b ? -1 : a > b ? 1 : 0;
  if (pa.family !== pb.family) return pa.family - pb.family;
  return pa.value < pb.value ? -1 : pa.value > pb.value ? 1 : 0;
}

// ---- merge (KEP-1645: one service per name across clusters) --------------------------------

export interface ServiceCondition {
  /** `Conflict` as in KEP-1645 (ServiceExport condition). */
  readonly type: 'Conflict';
  readonly reason: 'PortConflict';
  /** The cluster whose export conflicts with the winning definition. */
  readonly cluster: string;
  readonly message: string;
}

export interface ClusterEndpoints {
  readonly cluster: string;
  readonly addresses: readonly string[];
  readonly createdAt: number;
}

export interface MergedService {
  readonly namespace: string;
  readonly name: string;
  /** Union of the exported ports; for a name defined differently, the oldest export's definition. */
  readonly ports: readonly ServicePort[];
  /** Exporting clusters, oldest export first. */
  readonly clusters: readonly ClusterEndpoints[];
  readonly conditions: readonly ServiceCondition[];
}

const samePort = (a: ServicePort, b: ServicePort): boolean => a.port === b.port && a.protocol === b.protocol;
const portText = (p: ServicePort): string => `${p.port}/${p.protocol}`;

/**
 * Merges every cluster's export into one service per (namespace, name), pure. Precedence is the
 * export's creation time (oldest first; the cluster name breaks ties), as KEP-1645 specifies:
 * ports are the union keyed by port name; a name whose port/protocol differs from the definition
 * already taken, or a port/protocol already taken under another name, is a conflict: the older
 * definition stays and the younger cluster gets a `Conflict` condition. Endpoints of every
 * exporting cluster are kept (a conflict changes ports, not membership). Sorted by namespace, name.
 */
export function mergeServiceExports(records: Iterable<ServiceExportRecord>): MergedService[] {
  const groups = new Map<string, ServiceExportRecord[]>();
  for (const r of records) {
    const k = `${r.namespace}/${r.name}`;
    const g = groups.get(k);
    if (g) g.push(r);
    else groups.set(k, [r]);
  }
  const out: MergedService[] = [];
  for (const group of groups.values()) {
    group.sort((a, b) => a.createdAt - b.createdAt || (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0));
    const first = group[0];
    if (!first) continue;
    const byName = new Map<string, ServicePort>();
    const conditions: ServiceCondition[] = [];
    for (const r of group) {
      for (const p of r.ports) {
        const taken = byName.get(p.name);
        if (taken) {
          if (!samePort(taken, p)) {
            conditions.push({
              type: 'Conflict',
              reason: 'PortConflict',
              cluster: r.cluster,
              message: `cluster "${r.cluster}" exports port "${p.name}" as ${portText(p)}, but an older export defines it as ${portText(taken)}; the older definition is used`,
            });
          }
          continue;
        }
        const other = [...byName.values()].find((q) => samePort(q, p));
        if (other) {
          conditions.push({
            type: 'Conflict',
            reason: 'PortConflict',
            cluster: r.cluster,
            message: `cluster "${r.cluster}" exports ${portText(p)} as port "${p.name}", but an older export names it "${other.name}"; the older definition is used`,
          });
          continue;
        }
        byName.set(p.name, p);
      }
    }
    out.push({
      namespace: first.namespace,
      name: first.name,
      ports: [...byName.values()].sort((a, b) => a.port - b.port || (a.protocol < b.protocol ? -1 : 1)),
      clusters: group.map((r) => ({ cluster: r.cluster, addresses: r.addresses, createdAt: r.createdAt })),
      conditions,
    });
  }
  return out.sort((a, b) => (a.namespace === b.namespace ? (a.name < b.name ? -1 : 1) : a.namespace < b.namespace ? -1 : 1));
}

// ---- liveness and answer order ------------------------------------------------------------------

/**
 * Keeps only the endpoints that a live node of their exporting cluster hosts (inside its pod
 * CIDRs): when a node expires or is revoked its record leaves the KV, and with it its pods'
 * endpoints leave every answer; a cluster without live nodes contributes nothing.
 */
export function liveEndpoints(service: MergedService, nodes: Iterable<Pick<NodeRecord, 'cluster' | 'podCidrs'>>): MergedService {
  const rangesByCluster = new Map<string, NonNullable<ReturnType<typeof parseCidr>>[]>();
  for (const n of nodes) {
    const list = rangesByCluster.get(n.cluster) ?? [];
    for (const c of n.podCidrs) {
      const p = parseCidr(c);
      if (p) list.push(p);
    }
    rangesByCluster.set(n.cluster, list);
  }
  return {
    ...service,
    clusters: service.clusters.map((c) => {
      const ranges = rangesByCluster.get(c.cluster) ?? [];
      return {
        ...c,
        addresses: c.addresses.filter((a) => {
          const ip = parseIp(a);
          return ip !== undefined && ranges.some((r) => cidrContainsIp(r, ip.family, ip.value));
        }),
      };
    }),
  };
}

export type DnsPolicy = 'local-first' | 'all';

/** What the agent knows of the path to a cluster. `rttMs` null: not measured. */
export interface ClusterPathInfo {
  readonly healthy: boolean;
  readonly rttMs: number | null;
}

/**
 * The order clusters are answered in: the local cluster first, then healthy clusters by measured
 * RTT (unmeasured after measured), then unhealthy ones; the cluster name breaks ties. With
 * `local-first` only the first cluster that has endpoints is answered (the nearest; others are
 * the failover). Clusters without endpoints are left out. Pure.
 */
export function orderClusters(
  clusters: readonly ClusterEndpoints[],
  localCluster: string,
  paths: ReadonlyMap<string, ClusterPathInfo>,
  policy: DnsPolicy,
): ClusterEndpoints[] {
  const rank = (c: ClusterEndpoints): [number, number, number] => {
    if (c.cluster === localCluster) return [0, 0, 0];
    const p = paths.get(c.cluster);
    const healthy = p?.healthy ?? false;
    const rtt = p?.rttMs ?? null;
    return [healthy ? 1 : 2, rtt === null ? 1 : 0, rtt ?? 0];
  };
  const sorted = clusters
    .filter((c) => c.addresses.length > 0)
    .map((c) => ({ c, r: rank(c) }))
    .sort((x, y) => x.r[0] - y.r[0] || x.r[1] - y.r[1] || x.r[2] - y.r[2] || (x.c.cluster < y.c.cluster ? -1 : x.c.cluster > y.c.cluster ? 1 : 0))
    .map((x) => x.c);
  return policy === 'local-first' ? sorted.slice(0, 1) : sorted;
}
