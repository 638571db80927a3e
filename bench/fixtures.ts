// Synthetic meshes for benchmarks: N nodes spread over clusters, some behind NAT.
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';
import type { MeshView } from '../agent/plan/model.ts';

/** A deterministic 32-byte base64 key derived from an index (not a real key: benchmarks only need uniqueness). */
export function syntheticKey(i: number, salt = 0): string {
  const b = Buffer.alloc(32);
  b.writeUInt32BE(i, 0);
  b.writeUInt32BE(salt, 4);
  b[31] = 0x40;
  return b.toString('base64');
}

export interface MeshShape {
  readonly nodes: number;
  readonly clusters: number;
  /** Fraction of nodes without a public endpoint. */
  readonly natFraction: number;
  readonly gatewayClusters?: number;
}

export function syntheticNode(i: number, clusters: number, nat: boolean, topology: 'mesh' | 'gateway' = 'mesh'): NodeRecord {
  const c = i % clusters;
  const hi = Math.floor(i / 250);
  const lo = i % 250;
  return {
    kind: 'node',
    v: 1,
    name: `node-${i}`,
    cluster: `c${c}`,
    location: `region-${c}`,
    publicKey: syntheticKey(i),
    identityKey: syntheticKey(i, 1),
    endpoints: nat ? [] : [`198.51.${hi % 256}.${lo + 1}:51820`],
    privateAddresses: [`172.16.${hi % 256}.${lo + 1}`],
    podCidrs: [`10.${Math.floor(i / 256) % 256}.${i % 256}.0/24`],
    listenPort: 51820,
    topology,
    gatewayEligible: !nat,
    overlayIp: `100.${96 + Math.floor(i / 65536)}.${Math.floor(i / 256) % 256}.${(i % 256) + 1 > 254 ? 1 : (i % 256) + 1}`,
    generation: 1,
    registeredAt: 0,
    updatedAt: 0,
  };
}

export function syntheticMesh(shape: MeshShape, selfIndex = 0): MeshView {
  const nodes = new Map<string, NodeRecord>();
  const natEvery = shape.natFraction > 0 ? Math.round(1 / shape.natFraction) : 0;
  const gwClusters = shape.gatewayClusters ?? 0;
  for (let i = 0; i < shape.nodes; i++) {
    const topology = i % shape.clusters < gwClusters ? 'gateway' : 'mesh';
    const rec = syntheticNode(i, shape.clusters, natEvery > 0 && i % natEvery === natEvery - 1, topology);
    nodes.set(rec.name, rec);
  }
  const clusters = new Map<string, ClusterRecord>();
  for (let c = 0; c < shape.clusters; c++) {
    const gateway = c < gwClusters ? `node-${c}` : null;
    clusters.set(`c${c}`, {
      kind: 'cluster',
      v: 1,
      name: `c${c}`,
      topology: gateway ? 'gateway' : 'mesh',
      gateway,
      gatewayEpoch: 1,
      generation: 1,
      updatedAt: 0,
    });
  }
  const self = nodes.get(`node-${selfIndex}`);
  if (!self) throw new Error('self missing');
  return { self, nodes, clusters };
}
