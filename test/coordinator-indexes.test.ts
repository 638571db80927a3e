// The registry's indexes: a registration is validated against the few nodes it could conflict with
// (found by WireGuard key and pod CIDR lookups) and gets its address from an address index with a
// lowest-free cursor, instead of scanning every node and sorting the whole ipam table. These tests
// show the lookups find exactly what the scans found, and that they do not read the whole table.
import test from 'ava';
import { AddressIndex, allocateOverlayIp, decideOverlayIp, type IpamEntry } from '../coordinator/ipam.ts';
import { IpamTable, NodeTable, PodCidrIndex } from '../coordinator/registry-index.ts';
import type { StoredRecord } from '../coordinator/store.ts';
import { formatIp, parseCidr, type Cidr } from '../protocol/cidr.ts';
import type { NodeRecord, RegistrationRequest } from '../protocol/messages.ts';
import { validateRegistration, type RegistrationPolicy } from '../protocol/validate-registration.ts';

const cidr = (text: string): Cidr => {
  const c = parseCidr(text);
  if (!c) throw new Error(`bad CIDR ${text}`);
  return c;
};

// ---- pod CIDR index --------------------------------------------------------------------------

const held: [string, string][] = [
  ['a', '10.1.0.0/24'],
  ['b', '10.1.1.0/24'],
  ['c', '10.2.0.0/16'],
  ['d', '10.3.4.128/25'],
  ['e', '10.3.4.7/32'],
  ['f', 'fd00:1::/64'],
  ['g', 'fd00:2::/48'],
];

const overlapRows: { query: string; want: string[] }[] = [
  { query: '10.1.0.0/24', want: ['a'] },
  { query: '10.1.0.128/25', want: ['a'] },
  { query: '10.1.0.0/23', want: ['a', 'b'] },
  { query: '10.1.0.0/16', want: ['a', 'b'] },
  { query: '10.2.77.0/24', want: ['c'] },
  { query: '10.0.0.0/14', want: ['a', 'b', 'c', 'd', 'e'] },
  { query: '10.3.4.0/24', want: ['d', 'e'] },
  { query: '10.3.4.0/25', want: ['e'] },
  { query: '10.3.4.128/26', want: ['d'] },
  { query: '10.4.0.0/16', want: [] },
  { query: '10.1.2.0/24', want: [] },
  { query: 'fd00:1::/48', want: ['f'] },
  { query: 'fd00:2:0:5::/64', want: ['g'] },
  { query: 'fd00::/16', want: ['f', 'g'] },
  { query: 'fd01::/48', want: [] },
];

function filledIndex(): PodCidrIndex {
  const index = new PodCidrIndex();
  for (const [name, text] of held) index.add(cidr(text), name);
  return index;
}

for (const row of overlapRows) {
  test(`pod CIDR index: ${row.query} overlaps [${row.want.join(', ')}]`, (t) => {
    const found = [...filledIndex().overlapping(cidr(row.query))].sort();
    t.deepEqual(found, row.want);
    // The brute-force answer agrees.
    const q = cidr(row.query);
    const brute = held.filter(([, text]) => {
      const h = cidr(text);
      return h.family === q.family && h.network <= q.network + (1n << BigInt((q.family === 4 ? 32 : 128) - q.prefix)) - 1n && q.network <= h.network + (1n << BigInt((h.family === 4 ? 32 : 128) - h.prefix)) - 1n;
    });
    t.deepEqual(found, brute.map(([n]) => n).sort());
  });
}

test('pod CIDR index: removed CIDRs are no longer found; shared networks keep their other holders', (t) => {
  const index = filledIndex();
  index.add(cidr('10.1.0.0/24'), 'a2');
  index.remove(cidr('10.1.0.0/24'), 'a');
  t.deepEqual([...index.overlapping(cidr('10.1.0.0/16'))].sort(), ['a2', 'b']);
  index.remove(cidr('10.1.0.0/24'), 'a2');
  index.remove(cidr('10.3.4.7/32'), 'e');
  t.deepEqual([...index.overlapping(cidr('10.0.0.0/8'))].sort(), ['b', 'c', 'd']);
});

// ---- candidates for validation ------------------------------------------------------------------

const KEY = (i: number): string => Buffer.alloc(32, 0).fill(i % 250, 0, 1).fill(Math.floor(i / 250) + 1, 1, 2).toString('base64');

function record(i: number, over: Partial<NodeRecord> = {}): NodeRecord {
  return {
    kind: 'node',
    v: 1,
    name: `node-${i}`,
    cluster: `c${i % 10}`,
    location: 'lab',
    publicKey: KEY(i),
    identityKey: KEY(i + 5000),
    endpoints: ['192.0.2.1:51820'],
    privateAddresses: [],
    podCidrs: [`10.${Math.floor(i / 256)}.${i % 256}.0/24`],
    listenPort: 51820,
    topology: 'mesh',
    gatewayEligible: true,
    overlayIp: formatIp(4, cidr('100.96.0.0/16').network + BigInt(i + 1)),
    generation: 1,
    registeredAt: 1,
    updatedAt: 1,
    ...over,
  };
}

const stored = (value: NodeRecord): StoredRecord<NodeRecord> => ({ value, envelope: { payload: '', sig: '' }, revision: 1, signedByUs: true });

const policy: RegistrationPolicy = { overlay: cidr('100.96.0.0/16'), minPodCidrPrefixV4: 16, minPodCidrPrefixV6: 48, maxClockSkewMs: 300_000 };

function request(over: Partial<RegistrationRequest>): RegistrationRequest {
  const { kind: _k, overlayIp: _o, generation: _g, registeredAt: _r, updatedAt: _u, ...rest } = record(9999);
  return { ...rest, agentVersion: 'test', sentAt: 1000, ...over };
}

function bigTable(n: number): NodeTable {
  const nodes = new NodeTable(new AddressIndex(cidr('100.96.0.0/16')));
  for (let i = 0; i < n; i++) nodes.set(`node-${i}`, stored(record(i)));
  return nodes;
}

const candidateRows: { name: string; req: () => Partial<RegistrationRequest>; want: string[] }[] = [
  { name: 'a fresh node without conflicts', req: () => ({}), want: [] },
  { name: 'a pod CIDR inside a live node\'s', req: () => ({ podCidrs: ['10.1.3.128/25'] }), want: ['node-259'] },
  { name: 'a pod CIDR spanning four live nodes', req: () => ({ podCidrs: ['10.2.4.0/22'] }), want: ['node-516', 'node-517', 'node-518', 'node-519'] },
  { name: 'the WireGuard key of a live node', req: () => ({ publicKey: KEY(42) }), want: ['node-42'] },
  { name: 'its own name: the own record comes first', req: () => ({ name: 'node-7', podCidrs: ['10.0.8.0/24'] }), want: ['node-7', 'node-8'] },
];

for (const row of candidateRows) {
  test(`candidates among 1000 live nodes: ${row.name}`, (t) => {
    const nodes = bigTable(1000);
    const req = request(row.req());
    const candidates = nodes.candidatesFor(req);
    t.deepEqual(candidates.map((n) => n.name), row.want);
    // Validating against the candidates gives what validating against every live node gives.
    const all = [...nodes.values()].map((s) => s.value);
    t.deepEqual(validateRegistration(req, policy, { now: 1000, liveNodes: candidates }), validateRegistration(req, policy, { now: 1000, liveNodes: all }));
  });
}

test('node table: indexes follow updates and removals (key, pod CIDRs, cluster, address)', (t) => {
  const addresses = new AddressIndex(cidr('100.96.0.0/16'));
  const nodes = new NodeTable(addresses);
  nodes.set('node-1', stored(record(1)));
  nodes.set('node-2', stored(record(2)));
  t.deepEqual(nodes.members('c1').map((n) => n.name), ['node-1']);
  // node-1 changes key, pod CIDR, cluster and address.
  nodes.set('node-1', stored(record(1, { publicKey: KEY(77), podCidrs: ['10.9.0.0/24'], cluster: 'c2', overlayIp: '100.96.0.50' })));
  t.deepEqual(nodes.candidatesFor(request({ publicKey: KEY(1), podCidrs: ['10.0.1.0/24'] })).map((n) => n.name), []);
  t.deepEqual(nodes.candidatesFor(request({ publicKey: KEY(77), podCidrs: ['10.9.0.0/16'] })).map((n) => n.name), ['node-1']);
  t.deepEqual(nodes.members('c1'), []);
  t.deepEqual(nodes.members('c2').map((n) => n.name).sort(), ['node-1', 'node-2']);
  t.false(addresses.isUsedByOther(cidr('100.96.0.2/32').network, 'x'), 'the old address is free again');
  t.true(addresses.isUsedByOther(cidr('100.96.0.50/32').network, 'x'));
  nodes.delete('node-1');
  t.deepEqual(nodes.candidatesFor(request({ publicKey: KEY(77), podCidrs: ['10.9.0.0/16'] })), []);
  t.false(addresses.isUsedByOther(cidr('100.96.0.50/32').network, 'x'));
});

// ---- address index and allocation --------------------------------------------------------------

const entry = (ip: string, extra: Partial<IpamEntry> = {}): IpamEntry => ({ v: 1, ip, identityKey: KEY(1), generation: 1, updatedAt: 1, ...extra });

test('allocation from the index never reads the ipam table while the pool has room', (t) => {
  const pool = cidr('100.96.0.0/16');
  const addresses = new AddressIndex(pool);
  const ipam = new IpamTable(addresses);
  const released = (): never => {
    throw new Error('the table was read');
  };
  for (let i = 0; i < 2000; i++) {
    const d = decideOverlayIp({ name: `n${i}`, own: undefined, addresses, released });
    t.is(d.kind, 'fresh');
    if (d.kind === 'fresh') ipam.set(`n${i}`, { value: entry(d.ip), revision: i + 1 });
  }
  t.is(ipam.get('n1999')?.value.ip, '100.96.7.208');
  // A freed address (a reclaimed entry deleted) is below the cursor: it is handed out next.
  ipam.delete('n10');
  t.deepEqual(decideOverlayIp({ name: 'x', own: undefined, addresses, released }), { kind: 'fresh', ip: '100.96.0.11' });
});

test('allocation from the index decides as the whole-table allocator does (random operations)', (t) => {
  const pool = cidr('10.7.0.0/27'); // 30 usable addresses: fills up, so reclaim and exhaustion happen too
  let seed = 7;
  const random = (n: number): number => (seed = (seed * 16_807) % 2_147_483_647) % n;
  const addresses = new AddressIndex(pool);
  const ipam = new IpamTable(addresses);
  const nodes = new NodeTable(addresses);
  let now = 1;
  const kinds = new Set<string>();
  for (let step = 0; step < 600; step++) {
    now++;
    const name = `n${random(45)}`;
    const own = ipam.get(name)?.value;
    const entries = new Map([...ipam].map(([k, v]) => [k, v.value]));
    const live = new Set(nodes.keys());
    const want = allocateOverlayIp({ pool, name, entries, live, alsoUsed: [...nodes.values()].filter((n) => n.value.name !== name).map((n) => n.value.overlayIp) });
    const got = decideOverlayIp({ name, own, addresses, released: () => ipam.released((n) => nodes.has(n)) });
    t.deepEqual(got, want, `step ${step}, ${name}`);
    kinds.add(got.kind);
    if (random(3) === 0 && nodes.has(name)) {
      // The node goes away: its record is deleted, its ipam entry kept as released.
      nodes.delete(name);
      if (own) ipam.set(name, { value: { ...own, releasedAt: now }, revision: now });
      continue;
    }
    if (got.kind === 'exhausted') continue;
    if (got.kind === 'reclaim') ipam.delete(got.from);
    ipam.set(name, { value: entry(got.ip, { updatedAt: now }), revision: now });
    nodes.set(name, stored(record(Number(name.slice(1)), { name, overlayIp: got.ip })));
  }
  t.deepEqual([...kinds].sort(), ['exhausted', 'fresh', 'keep', 'reclaim'], 'every kind of decision was compared');
});
