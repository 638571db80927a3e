import test from 'ava';
import { allocateOverlayIp, usableRange, type IpamDecision, type IpamEntry } from '../coordinator/ipam.ts';
import { formatIp, parseCidr } from '../protocol/cidr.ts';

const KEY = Buffer.alloc(32, 7).toString('base64');

function entry(ip: string, extra: Partial<IpamEntry> = {}): IpamEntry {
  return { v: 1, ip, identityKey: KEY, generation: 1, updatedAt: 1000, ...extra };
}

interface Row {
  name: string;
  pool: string;
  node: string;
  entries?: Record<string, IpamEntry>;
  live?: string[];
  alsoUsed?: string[];
  want: IpamDecision | { kind: 'exhausted' };
}

const rows: Row[] = [
  { name: 'first node gets the first usable address (not the network address)', pool: '100.96.0.0/16', node: 'a', want: { kind: 'fresh', ip: '100.96.0.1' } },
  {
    name: 'next node gets the next address',
    pool: '100.96.0.0/16',
    node: 'b',
    entries: { a: entry('100.96.0.1') },
    live: ['a'],
    want: { kind: 'fresh', ip: '100.96.0.2' },
  },
  {
    name: 'lowest free address fills a gap',
    pool: '100.96.0.0/16',
    node: 'd',
    entries: { a: entry('100.96.0.1'), c: entry('100.96.0.3') },
    live: ['a', 'c'],
    want: { kind: 'fresh', ip: '100.96.0.2' },
  },
  {
    name: 'same name keeps its address while live',
    pool: '100.96.0.0/16',
    node: 'b',
    entries: { a: entry('100.96.0.1'), b: entry('100.96.0.7') },
    live: ['a', 'b'],
    want: { kind: 'keep', ip: '100.96.0.7' },
  },
  {
    name: 'same name gets its address back after expiry',
    pool: '100.96.0.0/16',
    node: 'b',
    entries: { a: entry('100.96.0.1'), b: entry('100.96.0.7', { releasedAt: 5000 }) },
    live: ['a'],
    want: { kind: 'keep', ip: '100.96.0.7' },
  },
  {
    name: 'addresses of expired names are not handed out while the pool has room',
    pool: '100.96.0.0/16',
    node: 'c',
    entries: { a: entry('100.96.0.1', { releasedAt: 5000 }), b: entry('100.96.0.2', { releasedAt: 6000 }) },
    live: [],
    want: { kind: 'fresh', ip: '100.96.0.3' },
  },
  {
    name: 'a live record without an ipam entry still blocks its address',
    pool: '100.96.0.0/16',
    node: 'c',
    alsoUsed: ['100.96.0.1'],
    want: { kind: 'fresh', ip: '100.96.0.2' },
  },
  {
    name: 'an address outside a changed pool is replaced',
    pool: '100.97.0.0/16',
    node: 'a',
    entries: { a: entry('100.96.0.9') },
    live: ['a'],
    want: { kind: 'fresh', ip: '100.97.0.1' },
  },
  {
    name: 'full pool: reclaim the longest-expired name',
    pool: '10.255.0.0/30', // two usable addresses
    node: 'c',
    entries: { a: entry('10.255.0.1', { releasedAt: 9000 }), b: entry('10.255.0.2', { releasedAt: 3000 }) },
    live: [],
    want: { kind: 'reclaim', ip: '10.255.0.2', from: 'b' },
  },
  {
    name: 'full pool: live names are never reclaimed',
    pool: '10.255.0.0/30',
    node: 'c',
    entries: { a: entry('10.255.0.1', { releasedAt: 9000 }), b: entry('10.255.0.2', { releasedAt: 3000 }) },
    live: ['b'],
    want: { kind: 'reclaim', ip: '10.255.0.1', from: 'a' },
  },
  {
    name: 'full pool: an entry without releasedAt is ordered by updatedAt',
    pool: '10.255.0.0/30',
    node: 'c',
    entries: { a: entry('10.255.0.1', { releasedAt: 9000 }), b: entry('10.255.0.2', { updatedAt: 100 }) },
    live: [],
    want: { kind: 'reclaim', ip: '10.255.0.2', from: 'b' },
  },
  {
    name: 'truly full: every address belongs to a live node',
    pool: '10.255.0.0/30',
    node: 'c',
    entries: { a: entry('10.255.0.1'), b: entry('10.255.0.2') },
    live: ['a', 'b'],
    want: { kind: 'exhausted' },
  },
  { name: 'IPv6: first address after the subnet-router anycast address', pool: 'fd7a:115c:a1e0::/48', node: 'a', want: { kind: 'fresh', ip: 'fd7a:115c:a1e0::1' } },
  {
    name: 'IPv6: next free',
    pool: 'fd7a:115c:a1e0::/48',
    node: 'c',
    entries: { a: entry('fd7a:115c:a1e0::1'), b: entry('fd7a:115c:a1e0::2') },
    live: ['a', 'b'],
    want: { kind: 'fresh', ip: 'fd7a:115c:a1e0::3' },
  },
  {
    name: 'IPv6: same name keeps its address',
    pool: 'fd7a:115c:a1e0::/48',
    node: 'b',
    entries: { a: entry('fd7a:115c:a1e0::1'), b: entry('fd7a:115c:a1e0::2', { releasedAt: 1 }) },
    live: ['a'],
    want: { kind: 'keep', ip: 'fd7a:115c:a1e0::2' },
  },
  {
    name: 'IPv6: the last address of the range is usable (no broadcast)',
    pool: 'fd00::/126',
    node: 'd',
    entries: { a: entry('fd00::1'), b: entry('fd00::2') },
    live: ['a', 'b'],
    want: { kind: 'fresh', ip: 'fd00::3' },
  },
];

for (const row of rows) {
  test(row.name, (t) => {
    const d = allocateOverlayIp({
      pool: parseCidr(row.pool)!,
      name: row.node,
      entries: new Map(Object.entries(row.entries ?? {})),
      live: new Set(row.live ?? []),
      alsoUsed: row.alsoUsed ?? [],
    });
    if (row.want.kind === 'exhausted') {
      t.is(d.kind, 'exhausted');
      if (d.kind === 'exhausted') t.regex(d.message, /10\.255\.0\.0\/30 is full/);
    } else {
      t.deepEqual(d, row.want);
    }
  });
}

test('filling a /28 hands out 14 distinct addresses, then reports exhaustion', (t) => {
  const pool = parseCidr('10.9.0.0/28')!;
  const entries = new Map<string, IpamEntry>();
  const live = new Set<string>();
  for (let i = 0; i < 14; i++) {
    const d = allocateOverlayIp({ pool, name: `n${i}`, entries, live });
    t.is(d.kind, 'fresh');
    if (d.kind !== 'fresh') return;
    entries.set(`n${i}`, entry(d.ip));
    live.add(`n${i}`);
  }
  const ips = [...entries.values()].map((e) => e.ip);
  t.is(new Set(ips).size, 14);
  t.false(ips.includes('10.9.0.0'));
  t.false(ips.includes('10.9.0.15'));
  t.is(allocateOverlayIp({ pool, name: 'n14', entries, live }).kind, 'exhausted');
});

test('usableRange', (t) => {
  const r4 = usableRange(parseCidr('100.96.0.0/16')!);
  t.is(formatIp(4, r4.first), '100.96.0.1');
  t.is(formatIp(4, r4.last), '100.96.255.254');
  const r31 = usableRange(parseCidr('10.0.0.0/31')!);
  t.is(formatIp(4, r31.first), '10.0.0.0');
  t.is(formatIp(4, r31.last), '10.0.0.1');
  const r6 = usableRange(parseCidr('fd00::/64')!);
  t.is(formatIp(6, r6.first), 'fd00::1');
  t.is(formatIp(6, r6.last), 'fd00::ffff:ffff:ffff:ffff');
});
