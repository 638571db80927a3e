// Multi-cluster services, pure parts: merging exports (KEP-1645 conflicts: oldest wins), admission
// (only the exporting cluster's pod ranges), liveness filtering and the DNS answer order.
import test from 'ava';
import { buildServiceTable } from '../agent/services/service-table.ts';
import { clusterPathsFromPeers, type PeerPathFacts } from '../agent/services/paths.ts';
import type { ErrorBody } from '../protocol/messages.ts';
import {
  admitServiceExport,
  liveEndpoints,
  mergeServiceExports,
  orderClusters,
  ServiceExportRequest,
  type ClusterPathInfo,
  type ServiceExportRecord,
  type ServicePort,
} from '../protocol/service.ts';

const KEY = 'A'.repeat(43) + '=';
const OTHER_KEY = 'B'.repeat(43) + '=';

function rec(cluster: string, createdAt: number, ports: ServicePort[], addresses: string[], name = 'web', namespace = 'shop'): ServiceExportRecord {
  return { kind: 'service-export', v: 1, namespace, name, cluster, ports, addresses, exportedBy: `${cluster}-n1`, createdAt, updatedAt: createdAt, generation: 1 };
}
const http = (port = 80): ServicePort => ({ name: 'http', port, protocol: 'TCP' });

const mergeCases: {
  title: string;
  records: ServiceExportRecord[];
  ports: string[];
  clusters: string[];
  conflicts: string[];
}[] = [
  { title: 'one cluster', records: [rec('a', 10, [http()], ['10.1.0.5'])], ports: ['http:80/TCP'], clusters: ['a'], conflicts: [] },
  {
    title: 'same ports in two clusters: one service, oldest first',
    records: [rec('b', 20, [http()], ['10.2.0.5']), rec('a', 10, [http()], ['10.1.0.5'])],
    ports: ['http:80/TCP'],
    clusters: ['a', 'b'],
    conflicts: [],
  },
  {
    title: 'different port names: the union',
    records: [rec('a', 10, [http()], ['10.1.0.5']), rec('b', 20, [{ name: 'metrics', port: 9090, protocol: 'TCP' }], ['10.2.0.5'])],
    ports: ['http:80/TCP', 'metrics:9090/TCP'],
    clusters: ['a', 'b'],
    conflicts: [],
  },
  {
    title: 'same name, other port: the oldest export wins, the younger cluster gets a condition',
    records: [rec('b', 5, [http(8080)], ['10.2.0.5']), rec('a', 10, [http(80)], ['10.1.0.5'])],
    ports: ['http:8080/TCP'],
    clusters: ['b', 'a'],
    conflicts: ['a'],
  },
  {
    title: 'same name, other protocol: conflict',
    records: [rec('a', 1, [http()], ['10.1.0.5']), rec('b', 2, [{ name: 'http', port: 80, protocol: 'UDP' }], ['10.2.0.5'])],
    ports: ['http:80/TCP'],
    clusters: ['a', 'b'],
    conflicts: ['b'],
  },
  {
    title: 'same port under another name: conflict, the older name stays',
    records: [rec('a', 1, [http()], ['10.1.0.5']), rec('b', 2, [{ name: 'web', port: 80, protocol: 'TCP' }], ['10.2.0.5'])],
    ports: ['http:80/TCP'],
    clusters: ['a', 'b'],
    conflicts: ['b'],
  },
  {
    title: 'equal creation times: the cluster name decides, deterministically',
    records: [rec('z', 7, [http(81)], ['10.2.0.5']), rec('m', 7, [http(80)], ['10.1.0.5'])],
    ports: ['http:80/TCP'],
    clusters: ['m', 'z'],
    conflicts: ['z'],
  },
];

for (const c of mergeCases) {
  test(`merge: ${c.title}`, (t) => {
    const merged = mergeServiceExports(c.records);
    t.is(merged.length, 1);
    const s = merged[0];
    t.deepEqual(s?.ports.map((p) => `${p.name}:${p.port}/${p.protocol}`), c.ports);
    t.deepEqual(s?.clusters.map((x) => x.cluster), c.clusters);
    t.deepEqual(s?.conditions.map((x) => x.cluster), c.conflicts);
    for (const cond of s?.conditions ?? []) {
      t.is(cond.type, 'Conflict');
      t.is(cond.reason, 'PortConflict');
    }
  });
}

test('merge: different names or namespaces stay apart, sorted', (t) => {
  const merged = mergeServiceExports([rec('a', 1, [http()], [], 'web', 'shop'), rec('a', 1, [http()], [], 'api', 'shop'), rec('a', 1, [http()], [], 'web', 'blog')]);
  t.deepEqual(merged.map((s) => `${s.namespace}/${s.name}`), ['blog/web', 'shop/api', 'shop/web']);
});

const req = (addresses: string[], cluster = 'a'): ServiceExportRequest =>
  ServiceExportRequest.parse({ v: 1, node: 'a-n1', identityKey: KEY, cluster, namespace: 'shop', name: 'web', ports: [http()], addresses, sentAt: 1 });
const nodeA = { name: 'a-n1', cluster: 'a', identityKey: KEY };

const admissionCases: { title: string; request: ServiceExportRequest; node: typeof nodeA | undefined; ok: boolean; field?: string; code?: ErrorBody['code'] }[] = [
  { title: 'addresses inside the pod ranges', request: req(['10.1.0.9', '10.1.1.4', '10.1.0.9']), node: nodeA, ok: true },
  { title: 'an address of another cluster', request: req(['10.1.0.9', '10.2.0.5']), node: nodeA, ok: false, field: 'addresses[1]', code: 'unauthorized' },
  { title: 'the node address range is not a pod range', request: req(['192.0.2.10']), node: nodeA, ok: false, field: 'addresses[0]', code: 'unauthorized' },
  { title: 'an IPv6 pod', request: req(['fd00:10:1::5']), node: nodeA, ok: true },
  { title: 'exporting for another cluster', request: req(['10.2.0.5'], 'b'), node: nodeA, ok: false, field: 'cluster', code: 'unauthorized' },
  { title: 'an unknown (expired, revoked) node', request: req(['10.1.0.9']), node: undefined, ok: false, field: 'node', code: 'unknown-node' },
  { title: 'a node with another identity key', request: req(['10.1.0.9']), node: { ...nodeA, identityKey: OTHER_KEY }, ok: false, field: 'identityKey', code: 'unauthorized' },
];

for (const c of admissionCases) {
  test(`admission: ${c.title}`, (t) => {
    const r = admitServiceExport(c.request, c.node, ['10.1.0.0/24', '10.1.1.0/24', 'fd00:10:1::/64']);
    t.is(r.ok, c.ok, JSON.stringify(r));
    if (!r.ok) {
      t.is(r.error.field, c.field);
      t.is(r.error.code, c.code ?? 'internal');
      t.true(r.error.message.length > 20);
    } else {
      t.deepEqual([...r.value.addresses], [...new Set(c.request.addresses)].sort((x, y) => (x.includes(':') === y.includes(':') ? x.localeCompare(y, 'en', { numeric: true }) : x.includes(':') ? 1 : -1)));
    }
  });
}

test('request shape: duplicate ports and bad names are refused', (t) => {
  const base = { v: 1, node: 'a-n1', identityKey: KEY, cluster: 'a', namespace: 'shop', name: 'web', addresses: [], sentAt: 1 };
  t.false(ServiceExportRequest.safeParse({ ...base, ports: [http(), http()] }).success);
  t.false(ServiceExportRequest.safeParse({ ...base, ports: [http(80), { name: 'other', port: 80, protocol: 'TCP' }] }).success);
  t.false(ServiceExportRequest.safeParse({ ...base, name: 'Web', ports: [http()] }).success);
  t.false(ServiceExportRequest.safeParse({ ...base, namespace: 'a.b', ports: [http()] }).success);
  t.false(ServiceExportRequest.safeParse({ ...base, ports: [] }).success);
  t.true(ServiceExportRequest.safeParse({ ...base, ports: [http()] }).success);
});

test('liveness: only endpoints a live node of the exporting cluster hosts remain', (t) => {
  const [s] = mergeServiceExports([rec('a', 1, [http()], ['10.1.0.5', '10.1.1.5']), rec('b', 2, [http()], ['10.2.0.5'])]);
  if (!s) throw new Error('no service');
  // a-n2 (10.1.1.0/24) expired; cluster b has no live node; a node of c claiming b's range does not count.
  const live = liveEndpoints(s, [
    { cluster: 'a', podCidrs: ['10.1.0.0/24'] },
    { cluster: 'c', podCidrs: ['10.2.0.0/24'] },
  ]);
  t.deepEqual(live.clusters.map((c) => [c.cluster, [...c.addresses]]), [
    ['a', ['10.1.0.5']],
    ['b', []],
  ]);
});

const paths = (entries: [string, ClusterPathInfo][]): Map<string, ClusterPathInfo> => new Map(entries);
const ep = (cluster: string, n = 1) => ({ cluster, addresses: Array.from({ length: n }, (_, i) => `10.0.${cluster.charCodeAt(0)}.${i + 1}`), createdAt: 0 });

const orderCases: { title: string; local: string; clusters: string[]; paths: [string, ClusterPathInfo][]; policy: 'all' | 'local-first'; expect: string[] }[] = [
  { title: 'local first, then by RTT', local: 'b', clusters: ['a', 'b', 'c'], paths: [['a', { healthy: true, rttMs: 40 }], ['c', { healthy: true, rttMs: 10 }]], policy: 'all', expect: ['b', 'c', 'a'] },
  { title: 'measured before unmeasured', local: 'x', clusters: ['a', 'c'], paths: [['a', { healthy: true, rttMs: null }], ['c', { healthy: true, rttMs: 90 }]], policy: 'all', expect: ['c', 'a'] },
  { title: 'healthy before unhealthy, even when slower', local: 'x', clusters: ['a', 'c'], paths: [['a', { healthy: false, rttMs: 1 }], ['c', { healthy: true, rttMs: 90 }]], policy: 'all', expect: ['c', 'a'] },
  { title: 'unknown clusters last, by name', local: 'x', clusters: ['d', 'a', 'c'], paths: [['c', { healthy: true, rttMs: null }]], policy: 'all', expect: ['c', 'a', 'd'] },
  { title: 'local-first: only the local cluster', local: 'b', clusters: ['a', 'b'], paths: [['a', { healthy: true, rttMs: 1 }]], policy: 'local-first', expect: ['b'] },
  { title: 'local-first without local endpoints: the nearest other', local: 'x', clusters: ['a', 'c'], paths: [['a', { healthy: true, rttMs: 50 }], ['c', { healthy: true, rttMs: 5 }]], policy: 'local-first', expect: ['c'] },
];

for (const c of orderCases) {
  test(`order: ${c.title}`, (t) => {
    t.deepEqual(orderClusters(c.clusters.map((x) => ep(x)), c.local, paths(c.paths), c.policy).map((x) => x.cluster), c.expect);
  });
}

test('order: clusters without live endpoints are left out (local-first falls over to the next)', (t) => {
  const out = orderClusters([{ cluster: 'b', addresses: [], createdAt: 0 }, ep('a')], 'b', new Map(), 'local-first');
  t.deepEqual(out.map((x) => x.cluster), ['a']);
});

const peer = (cluster: string, probe: PeerPathFacts['probe'], latestHandshakeAt: number | null = null): PeerPathFacts => ({ cluster, latestHandshakeAt, probe });
const up = (rttMs: number | null): PeerPathFacts['probe'] => ({ state: 'up', rttMs });
const NOW = 1_000_000;

test('path health from peers: probes decide; before a probe verdict a fresh handshake is healthy without RTT', (t) => {
  const p = clusterPathsFromPeers(
    [
      peer('a', up(12)),
      peer('b', null, NOW - 200_000),
      peer('c', null, null),
      peer('c', { state: 'pending', rttMs: null }, NOW - 1000),
      // a fresh handshake does not outvote a probe that says down
      peer('d', { state: 'down', rttMs: 3 }, NOW - 1000),
      // the fastest healthy peer of a cluster gives its RTT; a down peer's stale RTT does not count
      peer('e', up(30)),
      peer('e', { state: 'down', rttMs: 1 }),
      peer('e', up(7)),
    ],
    NOW,
  );
  t.deepEqual(Object.fromEntries(p), {
    a: { healthy: true, rttMs: 12 },
    b: { healthy: false, rttMs: null },
    c: { healthy: true, rttMs: null },
    d: { healthy: false, rttMs: null },
    e: { healthy: true, rttMs: 7 },
  });
});

// From what the prober measured to the DNS answer order (the agent's hook: status peers → paths →
// order). Exporting clusters: the local one (unless 'x': no local endpoints) and every peer's.
const probeOrderCases: { title: string; local: string; peers: PeerPathFacts[]; policy: 'all' | 'local-first'; expect: string[] }[] = [
  { title: 'local first, then by probe RTT', local: 'b', peers: [peer('a', up(40)), peer('c', up(10))], policy: 'all', expect: ['b', 'c', 'a'] },
  { title: 'RTT changes reorder', local: 'b', peers: [peer('a', up(4)), peer('c', up(10))], policy: 'all', expect: ['b', 'a', 'c'] },
  { title: 'a probed-down cluster goes last, even with the lowest past RTT', local: 'x', peers: [peer('a', { state: 'down', rttMs: 1 }), peer('c', up(90))], policy: 'all', expect: ['c', 'a'] },
  { title: 'handshake-only (no probe yet) after measured', local: 'x', peers: [peer('a', null, NOW - 10), peer('c', up(90))], policy: 'all', expect: ['c', 'a'] },
  { title: 'local-first without local endpoints: the lowest-latency other cluster', local: 'x', peers: [peer('a', up(50)), peer('c', up(5))], policy: 'local-first', expect: ['c'] },
  { title: 'local-first keeps the local cluster even when another is faster', local: 'a', peers: [peer('c', up(0.1))], policy: 'local-first', expect: ['a'] },
];

for (const c of probeOrderCases) {
  test(`order from probes: ${c.title}`, (t) => {
    const exporting = [...new Set([c.local, ...c.peers.map((p) => p.cluster)])].filter((x) => x !== 'x');
    t.deepEqual(orderClusters(exporting.map((x) => ep(x)), c.local, clusterPathsFromPeers(c.peers, NOW), c.policy).map((x) => x.cluster), c.expect);
  });
}

test('service table: live endpoints in answer order, per policy', (t) => {
  const records = [rec('a', 1, [http()], ['10.1.0.5']), rec('b', 2, [http()], ['10.2.0.5', '10.2.0.6'])];
  const nodes = [
    { cluster: 'a', podCidrs: ['10.1.0.0/24'] },
    { cluster: 'b', podCidrs: ['10.2.0.0/24'] },
  ];
  const all = buildServiceTable({ records, nodes, localCluster: 'b', paths: new Map(), policy: 'all' });
  t.deepEqual(all.get('web.shop')?.endpoints.map((e) => e.address), ['10.2.0.5', '10.2.0.6', '10.1.0.5']);
  const near = buildServiceTable({ records, nodes, localCluster: 'b', paths: new Map(), policy: 'local-first' });
  t.deepEqual(near.get('web.shop')?.endpoints.map((e) => e.address), ['10.2.0.5', '10.2.0.6']);
  // Cluster b's nodes are gone: its endpoints leave, a's remain.
  const after = buildServiceTable({ records, nodes: nodes.slice(0, 1), localCluster: 'b', paths: new Map(), policy: 'local-first' });
  t.deepEqual(after.get('web.shop')?.endpoints.map((e) => e.address), ['10.1.0.5']);
});
