// Who is on the overlay. Mesh clusters put every node on it; gateway clusters only their active
// gateway (the others reach remote clusters through it over the VPC). Pure, shared by the relay
// plan and the desired-state computation so both agree on the same membership.
import type { NodeRecord, Topology } from '../../protocol/messages.ts';
import type { MeshView } from './model.ts';
import { byName } from '../../lib/compare.ts';

export interface ClusterView {
  readonly name: string;
  /** From the ClusterRecord; a cluster without a record is treated as mesh. */
  readonly topology: Topology;
  /** Active gateway (gateway topology only): named by the ClusterRecord AND present as a node of this cluster. */
  readonly gateway: NodeRecord | null;
  /** Sorted by name. */
  readonly nodes: readonly NodeRecord[];
}

export interface TopologyIndex {
  /** Every node, self included (self's record wins over a stale copy in `nodes`). */
  readonly nodes: ReadonlyMap<string, NodeRecord>;
  /** Sorted by name. */
  readonly clusters: ReadonlyMap<string, ClusterView>;
  /** Nodes that hold WireGuard peers: all nodes of mesh clusters + active gateways. Sorted by name. */
  readonly overlayMembers: readonly NodeRecord[];
}

/** A node is public when it advertises at least one endpoint; otherwise it is behind NAT. */
export function isPublic(node: NodeRecord): boolean {
  return node.endpoints.length > 0;
}

export function indexTopology(view: MeshView): TopologyIndex {
  const nodes = new Map<string, NodeRecord>();
  for (const [name, node] of view.nodes) if (name === node.name) nodes.set(name, node);
  nodes.set(view.self.name, view.self);

  const members = new Map<string, NodeRecord[]>();
  for (const node of nodes.values()) {
    const list = members.get(node.cluster) ?? [];
    list.push(node);
    members.set(node.cluster, list);
  }

  const clusters = new Map<string, ClusterView>();
  for (const name of [...members.keys()].sort()) {
    const list = (members.get(name) ?? []).sort(byName);
    const record = view.clusters.get(name);
    const topology: Topology = record?.topology ?? 'mesh';
    let gateway: NodeRecord | null = null;
    if (topology === 'gateway' && record?.gateway) {
      const candidate = nodes.get(record.gateway);
      // A gateway named by the record but gone (expired) or in another cluster is no gateway.
      if (candidate && candidate.cluster === name) gateway = candidate;
    }
    clusters.set(name, { name, topology, gateway, nodes: list });
  }

  const overlayMembers: NodeRecord[] = [];
  for (const c of clusters.values()) {
    if (c.topology === 'mesh') overlayMembers.push(...c.nodes);
    else if (c.gateway) overlayMembers.push(c.gateway);
  }
  overlayMembers.sort(byName);
  return { nodes, clusters, overlayMembers };
}

export function isOverlayMember(index: TopologyIndex, node: NodeRecord): boolean {
  const c = index.clusters.get(node.cluster);
  if (!c) return false;
  return c.topology === 'mesh' || c.gateway?.name === node.name;
}
