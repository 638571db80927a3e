import test from 'ava';
import { createHash } from 'node:crypto';
import type { MeshView } from '../agent/plan/model.ts';
import { pairKey, planRelays, preferredPort, relayCandidates, rendezvousRelay } from '../agent/plan/relay-plan.ts';
import { indexTopology } from '../agent/plan/roles.ts';
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';

const key = (name: string): string => createHash('sha256').update(`wg:${name}`).digest('base64');

function node(name: string, cluster: string, endpoints: string[] = [], listenPort = 51820): NodeRecord {
  return {
    kind: 'node', v: 1, name, cluster, location: 'x', publicKey: key(name), identityKey: key(`id:${name}`), endpoints,
    privateAddresses: [], podCidrs: ['10.0.0.0/24'], listenPort, topology: 'mesh', gatewayEligible: endpoints.length > 0,
    overlayIp: '100.96.0.1', generation: 1, registeredAt: 1, updatedAt: 1,
  };
}

function viewOf(nodes: NodeRecord[], clusters: ClusterRecord[] = []): MeshView {
  const [self] = nodes;
  if (!self) throw new Error('need a node');
  return { self, nodes: new Map(nodes.map((n) => [n.name, n])), clusters: new Map(clusters.map((c) => [c.name, c])) };
}

const ports = { relayPortBase: 40000, relayPortSpan: 1000 };

test('pairKey is order-independent', (t) => {
  t.is(pairKey('b', 'a'), 'a,b');
  t.is(pairKey('a', 'b'), 'a,b');
});

test('preferredPort stays in [base, base+span)', (t) => {
  for (let i = 0; i < 100; i++) {
    const p = preferredPort(`k${i}`, 40000, 7);
    t.true(p >= 40000 && p < 40007);
  }
});

test('rendezvous: removing a non-winner never moves the pair; removing the winner moves only its pairs', (t) => {
  const candidates = Array.from({ length: 8 }, (_, i) => node(`r${i}`, 'hub', [`203.0.113.${i + 1}:51820`]));
  for (let p = 0; p < 30; p++) {
    const k = pairKey(key(`a${p}`), key(`b${p}`));
    const winner = rendezvousRelay(k, candidates);
    t.truthy(winner);
    for (const gone of candidates) {
      const after = rendezvousRelay(k, candidates.filter((c) => c !== gone));
      if (gone !== winner) t.is(after, winner);
      else t.not(after, winner);
    }
  }
  t.is(rendezvousRelay('x', []), undefined);
});

test('relay candidates: public, eligible overlay members only (gateway clusters contribute their active gateway)', (t) => {
  const nodes = [
    node('mesh-public', 'm', ['192.0.2.1:51820']),
    node('mesh-nat', 'm'),
    // Public but the operator said it may not carry others' traffic (--no-gateway-eligible).
    { ...node('mesh-public-ineligible', 'm', ['192.0.2.9:51820']), gatewayEligible: false },
    { ...node('gw', 'g', ['192.0.2.2:51820']), topology: 'gateway' as const },
    { ...node('worker', 'g', ['192.0.2.3:51820']), topology: 'gateway' as const },
  ];
  const clusters: ClusterRecord[] = [{ kind: 'cluster', v: 1, name: 'g', topology: 'gateway', gateway: 'gw', gatewayEpoch: 1, generation: 1, updatedAt: 1 }];
  t.deepEqual(relayCandidates(indexTopology(viewOf(nodes, clusters))).map((n) => n.name), ['gw', 'mesh-public']);
});

test('plan: every NAT pair across clusters gets a relay and a unique port per relay; all perspectives agree', (t) => {
  const relays = [node('r1', 'hub', ['203.0.113.1:51820']), node('r2', 'hub', ['203.0.113.2:51820'])];
  const nats = Array.from({ length: 12 }, (_, i) => node(`n${i}`, `c${i % 4}`));
  const all = [...relays, ...nats];
  const plan = planRelays(indexTopology(viewOf(all)), ports);
  let pairs = 0;
  for (const a of nats) {
    for (const b of nats) {
      if (a.name >= b.name || a.cluster === b.cluster) continue;
      pairs++;
      const c = plan.forPair(a, b);
      t.true(c.ok);
      if (!c.ok) continue;
      t.deepEqual(plan.forPair(b, a), c);
      t.is(c.endpoint, `${c.relay.endpoints[0]?.split(':')[0]}:${c.port}`);
    }
  }
  const served = relays.flatMap((r) => plan.assignmentsOf(r.name));
  t.is(served.length, pairs);
  for (const r of relays) {
    const ps = plan.assignmentsOf(r.name).map((a) => a.port);
    t.is(new Set(ps).size, ps.length);
    t.deepEqual(ps, [...ps].sort((x, y) => x - y));
  }
  // Same pairs computed from another node's view (different self, shuffled order): same plan.
  const other = planRelays(indexTopology(viewOf([...all].reverse())), ports);
  t.deepEqual(relays.map((r) => other.assignmentsOf(r.name)), relays.map((r) => plan.assignmentsOf(r.name)));
});

test('plan: same-cluster NAT nodes need no relay; public pairs never appear', (t) => {
  const r = node('r', 'hub', ['203.0.113.1:51820']);
  const a = node('a', 'east');
  const b = node('b', 'east');
  const p = node('p', 'west', ['198.51.100.1:51820']);
  const plan = planRelays(indexTopology(viewOf([r, a, b, p])), ports);
  t.deepEqual(plan.assignmentsOf('r'), []);
});

test('plan: IPv6 relay endpoint is bracketed', (t) => {
  const r = node('r', 'hub', ['[2001:db8::7]:51820']);
  const a = node('a', 'east');
  const b = node('b', 'west');
  const c = planRelays(indexTopology(viewOf([r, a, b])), ports).forPair(a, b);
  t.true(c.ok);
  if (c.ok) t.regex(c.endpoint, /^\[2001:db8::7\]:4\d{4}$/);
});
