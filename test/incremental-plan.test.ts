// The incremental planner (agent/plan/incremental-plan.ts) against the reference computation
// (computeDesiredState): on random sequences of joins, leaves and record changes — with CIDR
// collisions, underlay addresses inside other nodes' pod CIDRs, host subnets, NATed nodes, gateway
// clusters, cluster record, own record and host fact changes mixed in — every result must equal the
// reference's, byte for byte. Any divergence fails with the seed and step.
import test from 'ava';
import { IncrementalPlanner } from '../agent/plan/incremental-plan.ts';
import { computeDesiredState } from '../agent/plan/desired-state.ts';
import type { DataplaneConfig, MeshView } from '../agent/plan/model.ts';
import type { HostFacts } from '../agent/plan/route-guard.ts';
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';
import { mulberry32 } from './helpers/prng.ts';

const config: DataplaneConfig = { interfaceName: 'xl0', listenPort: 51820, mtu: 1420, natKeepaliveSec: 25, relayPortBase: 52000, relayPortSpan: 100 };

const prng = mulberry32;

const key = (i: number): string => {
  const b = Buffer.alloc(32);
  b.writeUInt32BE(i, 0);
  return b.toString('base64');
};

interface Knobs {
  /** Probability of a node without endpoint (NAT: relay planning, never edited in). */
  readonly nat: number;
  /** Probability of a pod CIDR / private address drawn from a small, colliding pool. */
  readonly collide: number;
  /** Probability of a public key another node has too. Default 0.02. */
  readonly sharedKey?: number;
  /** Probability of a node in the gateway cluster (never edited in). Default: one cluster of five. */
  readonly gateway?: number;
}

function node(i: number, rnd: () => number, k: Knobs, generation = 1): NodeRecord {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const cluster = k.gateway === undefined ? pick(['c0', 'c1', 'c2', 'c3', 'gw']) : rnd() < k.gateway ? 'gw' : pick(['c0', 'c1', 'c2', 'c3']);
  const collide = rnd() < k.collide;
  return {
    kind: 'node',
    v: 1,
    name: `n${i}`,
    cluster,
    location: 'x',
    publicKey: rnd() < (k.sharedKey ?? 0.02) ? key(1) : key(i),
    identityKey: key(i + 100_000),
    endpoints: rnd() < k.nat ? [] : [`198.51.100.${(i % 250) + 1}:${51820 + generation}`],
    // Sometimes inside another node's pod CIDR (10.1.x.0/24), or the host's subnet: the route guard refuses those.
    privateAddresses: [collide ? pick(['10.1.3.7', '10.250.0.9', '172.16.0.1', '10.1.5.7', '10.1.6.1', '10.1.7.2']) : `172.17.${i >> 8}.${i & 255}`],
    podCidrs: [collide ? pick(['10.1.3.0/24', '10.250.0.0/24', '10.1.4.0/24', '10.1.5.0/24', '10.1.6.0/24', '10.1.7.0/24']) : `10.${2 + (i >> 8)}.${i & 255}.0/24`],
    listenPort: 51820,
    topology: cluster === 'gw' ? 'gateway' : 'mesh',
    gatewayEligible: true,
    overlayIp: `100.96.${i >> 8}.${(i & 255) || 1}`,
    generation,
    registeredAt: 0,
    updatedAt: 0,
  };
}

function cluster(name: string, topology: 'mesh' | 'gateway', gateway: string | null, generation = 1): ClusterRecord {
  return { kind: 'cluster', v: 1, name, topology, gateway, gatewayEpoch: generation, generation, updatedAt: 0 };
}

const hostA: HostFacts = {
  addresses: [{ cidr: '10.250.0.2/24', dev: 'eth0' }],
  routes: [{ dst: '0.0.0.0/0', dev: 'eth0', via: '10.250.0.1', protocol: 'boot', scope: null }],
  natsAddresses: ['10.250.0.1'],
};

interface RunStats {
  readonly incremental: number;
  readonly full: number;
  /** Steps planned by editing while the reference refused some CIDR (collisions in the mesh). */
  readonly editedAmidRefusals: number;
  /** Why steps were planned in full, by reason with node names and numbers blanked, e.g. 'n#: # is claimed twice'. */
  readonly fullReasons: ReadonlyMap<string, number>;
}

function run(t: import('ava').ExecutionContext, seed: number, steps: number, k: Knobs): RunStats {
  const rnd = prng(seed);
  const planner = new IncrementalPlanner();
  let self: NodeRecord = { ...node(0, prng(seed + 1), { nat: 0, collide: 0 }), cluster: 'c0', topology: 'mesh' };
  const nodes = new Map<string, NodeRecord>();
  for (let i = 1; i <= 30; i++) nodes.set(`n${i}`, node(i, rnd, k));
  let clusters = new Map<string, ClusterRecord>([['gw', cluster('gw', 'gateway', 'n1')]]);
  let host: HostFacts = hostA;
  let next = 31;
  let editedAmidRefusals = 0;
  const fullReasons = new Map<string, number>();
  for (let step = 0; step < steps; step++) {
    const r = rnd();
    const names = [...nodes.keys()];
    const victim = names[Math.floor(rnd() * names.length)];
    if (r < 0.35 || victim === undefined) {
      const n = node(next++, rnd, k);
      nodes.set(n.name, n);
    } else if (r < 0.6) {
      nodes.delete(victim);
    } else if (r < 0.9) {
      const old = nodes.get(victim);
      if (old) {
        const fresh = node(Number(victim.slice(1)), rnd, k, old.generation + 1);
        // A change of one field (endpoint, pod CIDR, private address, cluster) or all of them.
        const field = Math.floor(rnd() * 5);
        const changed: NodeRecord =
          field === 0 ? { ...old, endpoints: fresh.endpoints } : field === 1 ? { ...old, podCidrs: fresh.podCidrs } : field === 2 ? { ...old, privateAddresses: fresh.privateAddresses } : field === 3 ? { ...old, cluster: fresh.cluster, topology: fresh.topology } : fresh;
        nodes.set(victim, { ...changed, generation: old.generation + 1 });
      }
    } else if (r < 0.94) {
      clusters = new Map(clusters);
      clusters.set('gw', cluster('gw', 'gateway', victim, step));
    } else if (r < 0.97) {
      host = { ...hostA, natsAddresses: [rnd() < 0.5 ? '10.250.0.1' : '10.1.3.9'] };
    } else {
      self = { ...self, generation: self.generation + 1, endpoints: [`198.51.100.254:${51000 + step}`] };
    }
    // The watch's snapshot: a new map, unchanged records keep their objects.
    const view: MeshView = { self, nodes: new Map(nodes), clusters };
    const got = planner.compute(view, config, host, {});
    const want = computeDesiredState(view, config, host);
    const s = planner.stats();
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      t.deepEqual(got, want, `seed ${seed}, step ${step}: the incremental result diverged (path: ${s.lastFullReason === '' ? 'incremental' : `full, ${s.lastFullReason}`})`);
      return { ...s, editedAmidRefusals, fullReasons };
    }
    if (s.lastFullReason === '') {
      if (want.refused.length > 0) editedAmidRefusals++;
    } else {
      const reason = s.lastFullReason.replace(/\bn\d+\b/g, 'n#').replace(/\d+(?:[./]\d+)*/g, '#');
      fullReasons.set(reason, (fullReasons.get(reason) ?? 0) + 1);
    }
  }
  t.pass();
  return { ...planner.stats(), editedAmidRefusals, fullReasons };
}

test('incremental results equal the reference on random joins, leaves and changes (public mesh, few collisions)', (t) => {
  let incremental = 0;
  let full = 0;
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const s = run(t, seed, 400, { nat: 0, collide: 0.08 });
    incremental += s.incremental;
    full += s.full;
  }
  // Not vacuous: most steps took the incremental path (each compared with the reference above).
  t.true(incremental > full, `incremental ${incremental}, full ${full}`);
});

test('incremental results equal the reference with NATed nodes and many collisions: most steps edited, amid refused CIDRs; every fallback met', (t) => {
  // Collisions are frequent (a fifth to two fifths of the nodes draw from the colliding pool, so the
  // reference refuses CIDRs at almost every step); NATed nodes, shared keys and gateway-cluster
  // nodes come and go. The deterministic walks are tuned so that most steps can still be edited.
  const k = { sharedKey: 0.003, gateway: 0.08 };
  const runs = [
    ...[11, 12, 13, 14, 15, 16].map((seed) => run(t, seed, 300, { ...k, nat: 0.001, collide: 0.2 })),
    ...[21, 22, 23].map((seed) => run(t, seed, 300, { ...k, nat: 0, collide: 0.4 })),
  ];
  const total = (f: (r: RunStats) => number): number => runs.reduce((n, r) => n + f(r), 0);
  const reasons = new Map<string, number>();
  for (const r of runs) for (const [why, n] of r.fullReasons) reasons.set(why, (reasons.get(why) ?? 0) + n);
  const seen = [...reasons].map(([why, n]) => `${why}: ${n}`).join('; ');
  // Not vacuous (a planner that always ran the reference would pass every comparison above): most
  // steps were edited, in every walk a real share, and nearly all of them while collisions made the
  // reference refuse CIDRs...
  const incremental = total((r) => r.incremental);
  const full = total((r) => r.full);
  t.true(incremental > full, `most steps edited: incremental ${incremental}, full ${full} (${seen})`);
  for (const r of runs) t.true(r.incremental >= 0.2 * (r.incremental + r.full), `a walk with ${r.incremental} edited steps of ${r.incremental + r.full}`);
  t.true(total((r) => r.editedAmidRefusals) >= 0.9 * incremental, `edited amid refusals: ${total((r) => r.editedAmidRefusals)} of ${incremental}`);
  // ...and each check that sends a change to the reference was met, not only the whole-view ones.
  for (const why of ['n#: # is claimed twice', 'n#: # was refused or is ours', 'n#: # is refused by the route guard', 'n#: underlay address # lies in a mesh CIDR', 'n# has no endpoint (relay planning)', 'n# is in gateway cluster gw']) {
    t.true((reasons.get(why) ?? 0) > 0, `fallback "${why}" never taken: ${seen}`);
  }
});

test('a public node in a mesh with many NATed nodes: joins and leaves of public nodes are edited unless they move a relayed pair onto or off us', (t) => {
  // A third of the nodes are NATed (relay planning couples every NATed pair of different clusters);
  // we are public and a relay candidate, so some pairs are ours. Every step still equals the
  // reference; most changes of public nodes are edited, and each relay check sends some to it.
  const runs = [31, 32, 33, 34].map((seed) => run(t, seed, 160, { nat: 0.25, collide: 0.02, sharedKey: 0.003, gateway: 0.05 }));
  const reasons = new Map<string, number>();
  for (const r of runs) for (const [why, n] of r.fullReasons) reasons.set(why, (reasons.get(why) ?? 0) + n);
  const seen = [...reasons].map(([why, n]) => `${why}: ${n}`).join('; ');
  const incremental = runs.reduce((n, r) => n + r.incremental, 0);
  const full = runs.reduce((n, r) => n + r.full, 0);
  // NATed nodes' own changes (a third of all) still run the reference, and so does the leave of a
  // relay candidate (in a mesh this small almost every candidate carries a pair); the rest is edited.
  t.true(incremental > 0.2 * (incremental + full), `edited: incremental ${incremental}, full ${full} (${seen})`);
  for (const why of ['n#: would win a NATed pair we relay', 'n#: relays NATed pairs']) {
    t.true((reasons.get(why) ?? 0) > 0, `fallback "${why}" never taken: ${seen}`);
  }
  t.log(seen);
});

test('joins of public nodes into a 150-node mesh with 20 % NATed nodes are edited, each equal to the reference', (t) => {
  const rnd = prng(43);
  const planner = new IncrementalPlanner();
  const self: NodeRecord = { ...node(0, rnd, { nat: 0, collide: 0 }), cluster: 'c0', topology: 'mesh' };
  const nodes = new Map<string, NodeRecord>();
  const mesh = (i: number, nat: number): NodeRecord => ({ ...node(i, rnd, { nat, collide: 0, sharedKey: 0 }), cluster: `c${i % 4}`, topology: 'mesh' });
  for (let i = 1; i <= 150; i++) nodes.set(`n${i}`, mesh(i, 0.2));
  const clusters = new Map<string, ClusterRecord>();
  const first = planner.compute({ self, nodes: new Map(nodes), clusters }, config, hostA);
  t.true(first.relays.length > 0, 'we relay some NATed pairs (else the relay checks say nothing)');
  for (let j = 0; j < 30; j++) {
    const joiner = mesh(1000 + j, 0);
    nodes.set(joiner.name, joiner);
    const view: MeshView = { self, nodes: new Map(nodes), clusters };
    const got = planner.compute(view, config, hostA);
    t.is(JSON.stringify(got), JSON.stringify(computeDesiredState(view, config, hostA)), `join ${j}`);
  }
  const s = planner.stats();
  // A joiner takes a pair of ours only if it outranks us on it (~relays/candidates of the joins).
  t.true(s.incremental >= 27, `joins edited: ${s.incremental} of 30 (${s.lastFullReason})`);
});

test('an unchanged view returns the previous result; a join edits the previous one and leaves it untouched', (t) => {
  const planner = new IncrementalPlanner();
  const rnd = prng(7);
  const self: NodeRecord = { ...node(0, rnd, { nat: 0, collide: 0 }), cluster: 'c0', topology: 'mesh' };
  const nodes = new Map<string, NodeRecord>();
  for (let i = 1; i <= 50; i++) nodes.set(`n${i}`, { ...node(i, rnd, { nat: 0, collide: 0 }), cluster: `c${1 + (i % 3)}`, topology: 'mesh' });
  const clusters = new Map<string, ClusterRecord>();
  const first = planner.compute({ self, nodes: new Map(nodes), clusters }, config, hostA);
  const peersBefore = JSON.stringify(first.peers);
  t.is(planner.compute({ self, nodes: new Map(nodes), clusters }, config, hostA), first, 'same records: same result object');
  const joiner: NodeRecord = { ...node(77, rnd, { nat: 0, collide: 0 }), cluster: 'c2', topology: 'mesh' };
  nodes.set(joiner.name, joiner);
  const second = planner.compute({ self, nodes: new Map(nodes), clusters }, config, hostA);
  t.deepEqual(planner.stats(), { full: 1, incremental: 2, lastFullReason: '' });
  t.true(second.peers.some((p) => p.node === 'n77'));
  t.is(JSON.stringify(first.peers), peersBefore, 'the previous result (held by the reconciler and the data plane) is not mutated');
  // Host facts read afresh (a full reconcile), the same in value: still edited; other facts: the reference runs.
  const fresh = planner.compute({ self, nodes: new Map(nodes), clusters }, config, { ...hostA, routes: [...hostA.routes] });
  t.is(planner.stats().incremental, 3);
  t.is(fresh, second, 'same facts, same records: the same result');
  planner.compute({ self, nodes: new Map(nodes), clusters }, config, { ...hostA, natsAddresses: ['10.250.0.7'] });
  t.is(planner.stats().lastFullReason, 'host facts changed');
});
