import test from 'ava';
import { createHash } from 'node:crypto';
import { computeDesiredState } from '../agent/plan/desired-state.ts';
import type { DataplaneConfig, DesiredState, MeshView } from '../agent/plan/model.ts';
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';

const key = (name: string): string => createHash('sha256').update(`wg:${name}`).digest('base64');

let seq = 0;
function node(name: string, cluster: string, o: Partial<NodeRecord> = {}): NodeRecord {
  seq++;
  return {
    kind: 'node',
    v: 1,
    name,
    cluster,
    location: `${cluster}-loc`,
    publicKey: key(name),
    identityKey: key(`id:${name}`),
    endpoints: [],
    privateAddresses: [],
    podCidrs: [`10.${seq}.0.0/24`],
    listenPort: 51820,
    topology: 'mesh',
    // As the agent defaults: a node may carry others' traffic (gateway, relay) iff it is public.
    gatewayEligible: (o.endpoints ?? []).length > 0,
    overlayIp: `100.96.0.${seq}`,
    generation: 1,
    registeredAt: 1,
    updatedAt: 1,
    ...o,
  };
}

function cluster(name: string, topology: 'mesh' | 'gateway', gateway: string | null = null): ClusterRecord {
  return { kind: 'cluster', v: 1, name, topology, gateway, gatewayEpoch: 1, generation: 1, updatedAt: 1 };
}

function view(self: NodeRecord, others: readonly NodeRecord[], clusters: readonly ClusterRecord[] = []): MeshView {
  return {
    self,
    nodes: new Map([self, ...others].map((n) => [n.name, n])),
    clusters: new Map(clusters.map((c) => [c.name, c])),
  };
}

const config: DataplaneConfig = {
  interfaceName: 'xl0',
  listenPort: 51820,
  mtu: 1420,
  natKeepaliveSec: 25,
  relayPortBase: 40000,
  relayPortSpan: 100,
};

const peerOf = (s: DesiredState, nodeName: string) => s.peers.find((p) => p.node === nodeName);
const remoteOf = (s: DesiredState, nodeName: string) => s.remotes.find((r) => r.node === nodeName);

test('two mesh clusters: every remote node is a direct peer; same-cluster nodes are not', (t) => {
  const a1 = node('a1', 'east', { endpoints: ['192.0.2.1:51820'], overlayIp: '100.96.0.1', podCidrs: ['10.1.0.0/24'] });
  const a2 = node('a2', 'east', { endpoints: ['192.0.2.2:51820'], overlayIp: '100.96.0.2', podCidrs: ['10.2.0.0/24'] });
  const b1 = node('b1', 'west', { endpoints: ['198.51.100.1:51820'], overlayIp: '100.96.0.3', podCidrs: ['10.3.0.0/24', '10.33.0.0/24'] });
  const b2 = node('b2', 'west', { endpoints: ['198.51.100.2:51820'], overlayIp: '100.96.0.4', podCidrs: ['10.4.0.0/24'] });
  const s = computeDesiredState(view(a1, [a2, b1, b2]), config);

  t.deepEqual(s.interface, { name: 'xl0', listenPort: 51820, mtu: 1420, addresses: ['100.96.0.1/32'] });
  t.deepEqual(s.peers.map((p) => p.node).sort(), ['b1', 'b2']);
  t.deepEqual(peerOf(s, 'b1'), {
    publicKey: key('b1'),
    endpoint: '198.51.100.1:51820',
    allowedIps: ['10.3.0.0/24', '10.33.0.0/24', '100.96.0.3/32'],
    persistentKeepalive: 0,
    node: 'b1',
    cluster: 'west',
    path: 'direct',
    via: null,
    carries: ['b1'],
  });
  t.deepEqual(s.routes, [
    { dst: '10.3.0.0/24', dev: 'xl0' },
    { dst: '10.33.0.0/24', dev: 'xl0' },
    { dst: '10.4.0.0/24', dev: 'xl0' },
    { dst: '100.96.0.3/32', dev: 'xl0' },
    { dst: '100.96.0.4/32', dev: 'xl0' },
  ]);
  t.deepEqual(s.remotes, [
    { node: 'b1', cluster: 'west', path: 'direct', via: null, reason: null },
    { node: 'b2', cluster: 'west', path: 'direct', via: null, reason: null },
  ]);
  t.deepEqual(s.relays, []);
  t.false(s.isGateway);
});

// Endpoint and keepalive by NAT situation: [self endpoints, self keepalive override, peer endpoints, want endpoint, want keepalive]
const natTable: [string, string[], number | undefined, string[], string | null, number][] = [
  ['public ↔ public', ['192.0.2.1:51820'], undefined, ['198.51.100.1:51820'], '198.51.100.1:51820', 0],
  ['NAT self ↔ public peer', [], undefined, ['198.51.100.1:51820'], '198.51.100.1:51820', 25],
  ['public self ↔ NAT peer', ['192.0.2.1:51820'], undefined, [], null, 0],
  ['own keepalive overrides (public self)', ['192.0.2.1:51820'], 10, [], null, 10],
  ['own keepalive 0 overrides (NAT self)', [], 0, ['198.51.100.1:51820'], '198.51.100.1:51820', 0],
  ['IPv6 endpoint', [], undefined, ['[2001:db8::1]:51820'], '[2001:db8::1]:51820', 25],
];
for (const [title, selfEndpoints, keepalive, peerEndpoints, wantEndpoint, wantKeepalive] of natTable) {
  test(`NAT rules: ${title}`, (t) => {
    const self = node('self', 'east', { endpoints: selfEndpoints, ...(keepalive === undefined ? {} : { persistentKeepalive: keepalive }) });
    const peer = node('peer', 'west', { endpoints: peerEndpoints });
    const s = computeDesiredState(view(self, [peer]), config);
    const p = peerOf(s, 'peer');
    t.is(p?.endpoint, wantEndpoint);
    t.is(p?.persistentKeepalive, wantKeepalive);
    t.is(p?.path, 'direct');
  });
}

test('NAT ↔ NAT goes through a relay: endpoint is the relay host and the pair port; both sides and the relay agree', (t) => {
  const x = node('x', 'east');
  const y = node('y', 'west');
  const r = node('r', 'third', { endpoints: ['203.0.113.7:51820'] });
  const fromX = computeDesiredState(view(x, [y, r]), config);
  const fromY = computeDesiredState(view(y, [x, r]), config);
  const fromR = computeDesiredState(view(r, [x, y]), config);

  const px = peerOf(fromX, 'y');
  const py = peerOf(fromY, 'x');
  t.is(px?.path, 'relay');
  t.is(px?.via, 'r');
  t.is(px?.persistentKeepalive, 25);
  t.regex(px?.endpoint ?? '', /^203\.0\.113\.7:4\d{4}$/);
  t.is(px?.endpoint, py?.endpoint);
  t.deepEqual(remoteOf(fromX, 'y'), { node: 'y', cluster: 'west', path: 'relay', via: 'r', reason: null });
  // The relay itself peers directly with both (it is public) and forwards for the pair.
  const port = Number(px?.endpoint?.split(':')[1]);
  t.deepEqual(fromR.relays, [{ port, a: { node: 'x', publicKey: key('x') }, b: { node: 'y', publicKey: key('y') } }]);
  t.is(peerOf(fromR, 'x')?.endpoint, null);
  t.true(port >= 40000 && port < 40100);
});

test('relay choice is stable when unrelated nodes join (rendezvous hashing)', (t) => {
  const x = node('x', 'east');
  const y = node('y', 'west');
  const relays = ['r1', 'r2', 'r3'].map((n) => node(n, 'third', { endpoints: [`203.0.113.${n.slice(1)}:51820`] }));
  const before = peerOf(computeDesiredState(view(x, [y, ...relays]), config), 'y')?.via;
  t.truthy(before);
  for (let i = 0; i < 20; i++) {
    const joiner = node(`j${i}`, 'fourth', { endpoints: [`198.51.100.${i + 10}:51820`] });
    const after = peerOf(computeDesiredState(view(x, [y, ...relays, joiner]), config), 'y')?.via;
    // Either unchanged, or the newcomer itself wins: never a reshuffle among the old relays.
    t.true(after === before || after === joiner.name, `joiner ${joiner.name} moved the pair to ${after}`);
  }
  // NAT nodes joining never affect eligibility.
  const natJoiner = node('n0', 'fourth');
  t.is(peerOf(computeDesiredState(view(x, [y, ...relays, natJoiner]), config), 'y')?.via, before);
});

test('relay ports: collisions probe deterministically, the relay listen port is skipped, a full range gives none', (t) => {
  const r = node('r', 'hub', { endpoints: ['203.0.113.1:51820'], listenPort: 40000 });
  const nats = ['p', 'q', 'u'].map((n, i) => node(n, `c${i}`));
  const [p, q] = nats as [NodeRecord, NodeRecord, NodeRecord];
  // span 3 starting at the relay's own port: only 2 usable ports for 3 pairs.
  const small = { ...config, relayPortBase: 40000, relayPortSpan: 3 };
  const fromR = computeDesiredState(view(r, nats), small);
  t.is(fromR.relays.length, 2);
  t.deepEqual(fromR.relays.map((a) => a.port), [40001, 40002]);
  const fromP = computeDesiredState(view(p, [r, ...nats.slice(1)]), small);
  const fromQ = computeDesiredState(view(q, [r, p, ...nats.slice(2)]), small);
  const none = [...fromP.remotes, ...fromQ.remotes].filter((x) => x.path === 'none');
  t.true(none.length >= 1);
  t.regex(none[0]?.reason ?? '', /relay r has no free port in 40000-40002/);
  // Wide range: every pair gets a distinct port.
  const wide = computeDesiredState(view(r, nats), config);
  t.is(new Set(wide.relays.map((a) => a.port)).size, 3);
});

test('NAT ↔ NAT without any public node: no peer, path none with a reason', (t) => {
  const x = node('x', 'east');
  const y = node('y', 'west');
  const s = computeDesiredState(view(x, [y]), config);
  t.deepEqual(s.peers, []);
  t.deepEqual(s.routes, []);
  t.deepEqual(remoteOf(s, 'y'), {
    node: 'y',
    cluster: 'west',
    path: 'none',
    via: null,
    reason: 'x and y are both behind NAT and no public node can relay for them',
  });
});

test('a non-gateway node of a gateway cluster is never a relay candidate', (t) => {
  const x = node('x', 'east');
  const y = node('y', 'west');
  const gw = node('gw', 'corp', { endpoints: ['203.0.113.1:51820'], topology: 'gateway' });
  const worker = node('worker', 'corp', { endpoints: ['203.0.113.2:51820'], topology: 'gateway' });
  const clusters = [cluster('corp', 'gateway', 'gw')];
  for (let i = 0; i < 5; i++) {
    // Whatever the hash says, only the gateway may be picked.
    const xi = node(`x${i}`, 'east');
    const s = computeDesiredState(view(xi, [x, y, gw, worker], clusters), config);
    t.is(peerOf(s, 'y')?.via, 'gw');
  }
});

test('gateway cluster seen from a mesh node: one peer (the gateway) carries the whole cluster', (t) => {
  const a = node('a', 'east', { endpoints: ['192.0.2.1:51820'], overlayIp: '100.96.0.1', podCidrs: ['10.1.0.0/24'] });
  const gw = node('gw', 'corp', { endpoints: ['203.0.113.1:51820'], overlayIp: '100.96.0.10', podCidrs: ['10.10.0.0/24'], topology: 'gateway' });
  const w1 = node('w1', 'corp', { overlayIp: '100.96.0.11', podCidrs: ['10.11.0.0/24'], topology: 'gateway' });
  const w2 = node('w2', 'corp', { overlayIp: '100.96.0.12', podCidrs: ['10.12.0.0/24'], topology: 'gateway' });
  const s = computeDesiredState(view(a, [w2, gw, w1], [cluster('corp', 'gateway', 'gw')]), config);
  t.is(s.peers.length, 1);
  t.deepEqual(s.peers[0], {
    publicKey: key('gw'),
    endpoint: '203.0.113.1:51820',
    allowedIps: ['10.10.0.0/24', '10.11.0.0/24', '10.12.0.0/24', '100.96.0.10/32', '100.96.0.11/32', '100.96.0.12/32'],
    persistentKeepalive: 0,
    node: 'gw',
    cluster: 'corp',
    path: 'gateway',
    via: null,
    carries: ['gw', 'w1', 'w2'],
  });
  t.is(s.routes.length, 6);
  t.deepEqual(
    s.remotes.map((r) => [r.node, r.path, r.via]),
    [
      ['gw', 'gateway', 'gw'],
      ['w1', 'gateway', 'gw'],
      ['w2', 'gateway', 'gw'],
    ],
  );
});

test('gateway cluster without a live gateway: no path, reason says why', (t) => {
  const a = node('a', 'east', { endpoints: ['192.0.2.1:51820'] });
  const w1 = node('w1', 'corp', { topology: 'gateway' });
  for (const gateway of [null, 'expired-node']) {
    const s = computeDesiredState(view(a, [w1], [cluster('corp', 'gateway', gateway)]), config);
    t.deepEqual(s.peers, []);
    t.deepEqual(s.remotes, [{ node: 'w1', cluster: 'corp', path: 'none', via: null, reason: 'cluster corp has no active gateway' }]);
  }
});

test('a cluster without a ClusterRecord is treated as mesh', (t) => {
  const a = node('a', 'east', { endpoints: ['192.0.2.1:51820'] });
  const w1 = node('w1', 'corp', { topology: 'gateway' });
  const w2 = node('w2', 'corp', { topology: 'gateway' });
  const s = computeDesiredState(view(a, [w1, w2]), config);
  t.deepEqual(s.peers.map((p) => [p.node, p.path]), [
    [s.peers[0]?.node, 'direct'],
    [s.peers[1]?.node, 'direct'],
  ]);
  t.deepEqual(s.peers.map((p) => p.node).sort(), ['w1', 'w2']);
});

test('self is the gateway: peers with every remote, carries our cluster, routes our workers\' overlay IPs over the VPC', (t) => {
  const gw = node('gw', 'corp', { endpoints: ['203.0.113.1:51820'], privateAddresses: ['10.0.0.1'], overlayIp: '100.96.0.10', podCidrs: ['10.10.0.0/24'], topology: 'gateway' });
  const w1 = node('w1', 'corp', { privateAddresses: ['10.0.0.11'], overlayIp: '100.96.0.11', podCidrs: ['10.11.0.0/24'], topology: 'gateway' });
  const b = node('b', 'west', { overlayIp: '100.96.0.3', podCidrs: ['10.3.0.0/24'] });
  const other = node('ogw', 'branch', { endpoints: ['198.51.100.9:51820'], overlayIp: '100.96.0.20', podCidrs: ['10.20.0.0/24'], topology: 'gateway' });
  const s = computeDesiredState(view(gw, [w1, b, other], [cluster('corp', 'gateway', 'gw'), cluster('branch', 'gateway', 'ogw')]), config);
  t.true(s.isGateway);
  t.deepEqual(s.peers.map((p) => [p.node, p.path, p.endpoint]).sort(), [
    ['b', 'direct', null],
    ['ogw', 'gateway', '198.51.100.9:51820'],
  ]);
  t.deepEqual(s.routes, [
    { dst: '10.20.0.0/24', dev: 'xl0' },
    { dst: '10.3.0.0/24', dev: 'xl0' },
    { dst: '100.96.0.11/32', via: '10.0.0.11' },
    { dst: '100.96.0.20/32', dev: 'xl0' },
    { dst: '100.96.0.3/32', dev: 'xl0' },
  ]);
  t.false(s.remotes.some((r) => r.cluster === 'corp'));
});

test('self is a non-gateway node: no peers, routes to every reachable remote via the gateway\'s private address', (t) => {
  const gw = node('gw', 'corp', { endpoints: ['203.0.113.1:51820'], privateAddresses: ['10.0.0.1', '10.0.1.1'], topology: 'gateway' });
  const w1 = node('w1', 'corp', { privateAddresses: ['10.0.0.11'], overlayIp: '100.96.0.11', podCidrs: ['10.11.0.0/24'], topology: 'gateway' });
  const b = node('b', 'west', { endpoints: ['198.51.100.2:51820'], overlayIp: '100.96.0.3', podCidrs: ['10.3.0.0/24'] });
  const dark = node('dark', 'closed', { topology: 'gateway' });
  const clusters = [cluster('corp', 'gateway', 'gw'), cluster('closed', 'gateway', null)];
  const s = computeDesiredState(view(w1, [gw, b, dark], clusters), config);
  t.false(s.isGateway);
  t.deepEqual(s.peers, []);
  t.deepEqual(s.routes, [
    { dst: '10.3.0.0/24', via: '10.0.0.1' },
    { dst: '100.96.0.3/32', via: '10.0.0.1' },
  ]);
  t.deepEqual(s.remotes, [
    { node: 'dark', cluster: 'closed', path: 'none', via: null, reason: 'via gateway gw: cluster closed has no active gateway' },
    { node: 'b', cluster: 'west', path: 'local-gateway', via: 'gw', reason: null },
  ]);
  t.deepEqual(s.relays, []);
});

test('non-gateway node whose cluster has no usable gateway: nothing routed, reasons given', (t) => {
  const w1 = node('w1', 'corp', { topology: 'gateway' });
  const b = node('b', 'west', { endpoints: ['198.51.100.2:51820'] });
  const noGw = computeDesiredState(view(w1, [b], [cluster('corp', 'gateway', null)]), config);
  t.deepEqual(noGw.routes, []);
  t.deepEqual(noGw.remotes, [{ node: 'b', cluster: 'west', path: 'none', via: null, reason: 'cluster corp has no active gateway' }]);

  const gw = node('gw', 'corp', { endpoints: ['203.0.113.1:51820'], topology: 'gateway' });
  const noAddr = computeDesiredState(view(w1, [gw, b], [cluster('corp', 'gateway', 'gw')]), config);
  t.deepEqual(noAddr.routes, []);
  t.is(remoteOf(noAddr, 'b')?.reason, 'gateway gw has no private address');
});

test('never a route or allowed IP for our own overlay IP or pod CIDRs', (t) => {
  const a = node('a', 'east', { endpoints: ['192.0.2.1:51820'], overlayIp: '100.96.0.1', podCidrs: ['10.1.0.0/24'] });
  // A (misconfigured) remote claiming our pod CIDR and our overlay IP.
  const b = node('b', 'west', { endpoints: ['198.51.100.1:51820'], overlayIp: '100.96.0.2', podCidrs: ['10.1.0.0/24', '100.96.0.1/32', '10.2.0.0/24'] });
  const s = computeDesiredState(view(a, [b]), config);
  t.deepEqual(peerOf(s, 'b')?.allowedIps, ['10.2.0.0/24', '100.96.0.2/32']);
  t.deepEqual(s.routes.map((r) => r.dst), ['10.2.0.0/24', '100.96.0.2/32']);
});

test('a CIDR claimed by two peers goes to one only (no flapping between peers)', (t) => {
  const a = node('a', 'east', { endpoints: ['192.0.2.1:51820'] });
  const b = node('b', 'west', { endpoints: ['198.51.100.1:51820'], podCidrs: ['10.99.0.0/24'] });
  const c = node('c', 'west', { endpoints: ['198.51.100.2:51820'], podCidrs: ['10.99.0.0/24'] });
  const s = computeDesiredState(view(a, [c, b]), config);
  t.true(peerOf(s, 'b')?.allowedIps.includes('10.99.0.0/24'));
  t.false(peerOf(s, 'c')?.allowedIps.includes('10.99.0.0/24'));
  t.is(s.routes.filter((r) => r.dst === '10.99.0.0/24').length, 1);
});

test('deterministic: insertion order of the view does not matter, output is sorted', (t) => {
  const a = node('a', 'east', { endpoints: ['192.0.2.1:51820'] });
  const others = ['m', 'c', 'x', 'b', 'q'].map((n, i) => node(n, i % 2 ? 'west' : 'north', i % 3 ? {} : { endpoints: [`198.51.100.${i + 1}:51820`] }));
  const relay = node('r', 'hub', { endpoints: ['203.0.113.1:51820'] });
  const one = computeDesiredState(view(a, [...others, relay]), config);
  const two = computeDesiredState(view(a, [relay, ...others].reverse()), config);
  t.deepEqual(one, two);
  t.deepEqual(one.peers.map((p) => p.publicKey), [...one.peers.map((p) => p.publicKey)].sort());
  t.deepEqual(one.routes.map((r) => r.dst), [...one.routes.map((r) => r.dst)].sort());
});

test('IPv6 overlay and pod CIDRs', (t) => {
  const a = node('a', 'east', { endpoints: ['[2001:db8::1]:51820'], overlayIp: 'fd00:100::1', podCidrs: ['fd10:1::/64'] });
  const b = node('b', 'west', { endpoints: ['[2001:db8::2]:51820'], overlayIp: 'fd00:100:0::2', podCidrs: ['fd10:2:0::/64'] });
  const s = computeDesiredState(view(a, [b]), config);
  t.deepEqual(s.interface.addresses, ['fd00:100::1/128']);
  t.deepEqual(peerOf(s, 'b')?.allowedIps, ['fd00:100::2/128', 'fd10:2::/64']);
  t.deepEqual(s.routes, [
    { dst: 'fd00:100::2/128', dev: 'xl0' },
    { dst: 'fd10:2::/64', dev: 'xl0' },
  ]);
});
