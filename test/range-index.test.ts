// The route guard's range index answers exactly what a scan over every range in order answers
// (first overlapping / exactly equal range), on random IPv4 and IPv6 ranges of every size.
import test from 'ava';
import { RangeIndex, type RangeMatch } from '../agent/plan/range-index.ts';
import { cidrsOverlap, formatIp, parseCidr, type Cidr } from '../protocol/cidr.ts';
import { mulberry32 } from './helpers/prng.ts';

const rng = mulberry32;

/** Random CIDRs packed into a small space so that overlaps are frequent. */
function randomCidr(r: () => number, family: 4 | 6, wide: number, v4Base = 0x0a000000n): Cidr {
  const bits = family === 4 ? 32 : 128;
  // Addresses in 10.0.0.0/16 (v4; or another /16) or fd00::/112 (v6): many nested and equal ranges.
  const base = family === 4 ? v4Base : 0xfd00n << 112n;
  const ip = base + BigInt(Math.floor(r() * 65536));
  const prefix = bits - Math.floor(r() * r() * 14) - (r() < wide ? bits - 4 : 0);
  const c = parseCidr(`${formatIp(family, ip)}/${Math.max(0, prefix)}`, { allowHostBits: true });
  if (!c) throw new Error('bad random cidr');
  return c;
}

function scan(ranges: readonly { range: Cidr; mode: RangeMatch; what: string }[], c: Cidr): string | undefined {
  for (const p of ranges) {
    const hit = p.mode === 'exact' ? p.range.family === c.family && p.range.network === c.network && p.range.prefix === c.prefix : cidrsOverlap(p.range, c);
    if (hit) return p.what;
  }
  return undefined;
}

// The last /16 of IPv4 as well: IPv4 networks are plain numbers in the index, and addresses at or
// above 128.0.0.0 are where signed 32-bit arithmetic would go wrong.
for (const [seed, v4Base] of [[1, 0x0a000000n], [2, 0x0a000000n], [3, 0x0a000000n], [4, 0xffff0000n], [5, 0x80000000n]] as const) {
  test(`first match equals an in-order scan (seed ${seed}, IPv4 around ${formatIp(4, v4Base)})`, (t) => {
    const r = rng(seed);
    const ranges: { range: Cidr; mode: RangeMatch; what: string }[] = [];
    const index = new RangeIndex<string>();
    for (let i = 0; i < 600; i++) {
      const family = r() < 0.7 ? 4 : 6;
      const mode: RangeMatch = r() < 0.2 ? 'exact' : 'overlap';
      const range = randomCidr(r, family, 0.002, v4Base);
      const what = `#${i} ${range.text} ${mode}`;
      ranges.push({ range, mode, what });
      index.add(range, mode, what);
    }
    let hits = 0;
    for (let q = 0; q < 2000; q++) {
      const c = randomCidr(r, r() < 0.7 ? 4 : 6, 0.02, v4Base);
      const want = scan(ranges, c);
      if (want !== undefined) hits++;
      t.is(index.first(c), want, `query ${c.text}`);
    }
    // The data exercises both answers.
    t.true(hits > 200 && hits < 1800, `hits ${hits}`);
  });
}

test('exact ranges match only the same CIDR; families never mix', (t) => {
  const index = new RangeIndex<string>();
  const cidr = (s: string): Cidr => {
    const c = parseCidr(s, { allowHostBits: true });
    if (!c) throw new Error(`not a CIDR: ${s}`);
    return c;
  };
  index.add(cidr('10.50.0.0/24'), 'exact', 'cni route');
  index.add(cidr('::/0'), 'overlap', 'all of v6');
  t.is(index.first(cidr('10.50.0.0/24')), 'cni route');
  t.is(index.first(cidr('10.50.0.0/25')), undefined);
  t.is(index.first(cidr('10.50.0.0/16')), undefined);
  t.is(index.first(cidr('10.0.0.0/8')), undefined);
  t.is(index.first(cidr('fd00::1/128')), 'all of v6');
  // Added later, first in order wins.
  index.add(cidr('10.0.0.0/8'), 'overlap', 'ten');
  t.is(index.first(cidr('10.50.0.0/24')), 'cni route');
  t.is(index.first(cidr('10.50.0.0/25')), 'ten');
});
