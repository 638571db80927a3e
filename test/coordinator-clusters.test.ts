// Pure cluster/gateway decisions (the NATS-level failover is in coordinator-liveness.test.ts).
import test from 'ava';
import { decideCluster, electGateway } from '../coordinator/clusters.ts';
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';

const KEY = Buffer.alloc(32, 1).toString('base64');

function node(name: string, extra: Partial<NodeRecord> = {}): NodeRecord {
  return {
    kind: 'node',
    v: 1,
    name,
    cluster: 'c1',
    location: 'l',
    publicKey: KEY,
    identityKey: KEY,
    endpoints: [],
    privateAddresses: [],
    podCidrs: [],
    listenPort: 51820,
    topology: 'gateway',
    gatewayEligible: true,
    overlayIp: '100.96.0.1',
    generation: 1,
    registeredAt: 1,
    updatedAt: 1,
    ...extra,
  };
}

function cluster(extra: Partial<ClusterRecord> = {}): ClusterRecord {
  return { kind: 'cluster', v: 1, name: 'c1', topology: 'gateway', gateway: 'b', gatewayEpoch: 3, generation: 5, updatedAt: 1, ...extra };
}

const electRows: { name: string; members: NodeRecord[]; current: string | null; want: string | null }[] = [
  { name: 'lowest name among equals', members: [node('c'), node('b')], current: null, want: 'b' },
  { name: 'a public endpoint beats a lower name', members: [node('a'), node('b', { endpoints: ['192.0.2.2:51820'] })], current: null, want: 'b' },
  { name: 'ineligible nodes are never chosen', members: [node('a', { gatewayEligible: false }), node('b')], current: null, want: 'b' },
  { name: 'no eligible node: no gateway', members: [node('a', { gatewayEligible: false })], current: null, want: null },
  { name: 'the current gateway stays while live and eligible (sticky)', members: [node('a', { endpoints: ['192.0.2.1:1'] }), node('z')], current: 'z', want: 'z' },
  { name: 'the current gateway is replaced once it is gone', members: [node('a'), node('b')], current: 'gone', want: 'a' },
  { name: 'the current gateway is replaced once ineligible', members: [node('a'), node('z', { gatewayEligible: false })], current: 'z', want: 'a' },
];

for (const row of electRows) {
  test(`electGateway: ${row.name}`, (t) => {
    t.is(electGateway(row.members, row.current), row.want);
  });
}

test('decideCluster: first node of a gateway cluster creates the record with epoch 1', (t) => {
  const d = decideCluster('c1', [node('a')], undefined, 100);
  t.deepEqual(d, {
    kind: 'write',
    gatewayChanged: true,
    record: { kind: 'cluster', v: 1, name: 'c1', topology: 'gateway', gateway: 'a', gatewayEpoch: 1, generation: 1, updatedAt: 100 },
  });
});

test('decideCluster: mesh cluster has no gateway and epoch 0', (t) => {
  const d = decideCluster('c1', [node('a', { topology: 'mesh' })], undefined, 100);
  t.like(d, { kind: 'write', gatewayChanged: false, record: { topology: 'mesh', gateway: null, gatewayEpoch: 0 } });
});

test('decideCluster: unchanged writes nothing', (t) => {
  t.deepEqual(decideCluster('c1', [node('a'), node('b')], cluster({ gateway: 'b' }), 100), { kind: 'unchanged' });
});

test('decideCluster: failover bumps epoch and generation', (t) => {
  const d = decideCluster('c1', [node('a')], cluster({ gateway: 'b' }), 100);
  t.like(d, { kind: 'write', gatewayChanged: true, record: { gateway: 'a', gatewayEpoch: 4, generation: 6 } });
});

test('decideCluster: a tie on the latest registration goes to the lowest name, in any member order', (t) => {
  const a = node('a', { topology: 'mesh', updatedAt: 9 });
  const b = node('b', { topology: 'gateway', updatedAt: 9 });
  const old = node('0', { topology: 'gateway', updatedAt: 1 });
  for (const members of [[a, b, old], [b, old, a], [old, b, a]]) {
    t.like(decideCluster('c1', members, undefined, 100), { kind: 'write', record: { topology: 'mesh', gateway: null } });
  }
});

test('decideCluster: topology follows the most recently registered node', (t) => {
  const d = decideCluster('c1', [node('a', { updatedAt: 5 }), node('b', { topology: 'mesh', updatedAt: 9 })], cluster({ gateway: 'a' }), 100);
  t.like(d, { kind: 'write', gatewayChanged: true, record: { topology: 'mesh', gateway: null, gatewayEpoch: 4 } });
});

test('decideCluster: members of other clusters are ignored', (t) => {
  const d = decideCluster('c1', [node('a', { cluster: 'other' })], cluster(), 100);
  t.deepEqual(d, { kind: 'delete' });
});

test('decideCluster: no live members deletes the record (or does nothing if none)', (t) => {
  t.deepEqual(decideCluster('c1', [], cluster(), 100), { kind: 'delete' });
  t.deepEqual(decideCluster('c1', [], undefined, 100), { kind: 'unchanged' });
});

test('decideCluster: a re-created cluster keeps counting from the retired record', (t) => {
  const d = decideCluster('c1', [node('a')], undefined, 100, { generation: 7, gatewayEpoch: 4 });
  t.like(d, { kind: 'write', record: { gateway: 'a', gatewayEpoch: 5, generation: 8 } });
});
