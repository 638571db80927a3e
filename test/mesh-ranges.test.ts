// agent/plan/mesh-ranges.ts against brute force: on random CIDRs and underlay addresses (IPv4 and
// IPv6, added in one batch or one at a time, then changed one at a time), both overlap questions
// and the exact counts give the answers a scan of every CIDR and address gives.
import test from 'ava';
import { MeshRanges, type Address } from '../agent/plan/mesh-ranges.ts';
import { cidrLast, parseCidr, parseIp, type Cidr } from '../protocol/cidr.ts';
import { mulberry32 } from './helpers/prng.ts';

function randomCidr(rnd: () => number): Cidr {
  const v6 = rnd() < 0.2;
  const text = v6 ? `fd00:${Math.floor(rnd() * 4)}::/${[48, 64, 128][Math.floor(rnd() * 3)]}` : `10.${Math.floor(rnd() * 4)}.${Math.floor(rnd() * 8)}.0/${[16, 24, 32][Math.floor(rnd() * 3)]}`;
  const c = parseCidr(text, { allowHostBits: true });
  if (!c) throw new Error(text);
  return c;
}

function randomAddress(rnd: () => number): Address {
  const text = rnd() < 0.2 ? `fd00:${Math.floor(rnd() * 4)}::${Math.floor(rnd() * 9)}` : `10.${Math.floor(rnd() * 4)}.${Math.floor(rnd() * 8)}.${Math.floor(rnd() * 3)}`;
  const ip = parseIp(text);
  if (!ip) throw new Error(text);
  return ip;
}

const contains = (c: Cidr, a: Address): boolean => c.family === a.family && a.value >= c.network && a.value <= cidrLast(c);

for (const batch of [true, false]) {
  test(`answers equal a brute-force scan (${batch ? 'addresses added in one batch' : 'addresses added one at a time'}, then changed one at a time)`, (t) => {
    for (const seed of [1, 2, 3]) {
      const rnd = mulberry32(seed);
      const ranges = new MeshRanges();
      const cidrs: Cidr[] = Array.from({ length: 60 }, () => randomCidr(rnd));
      const addresses: Address[] = Array.from({ length: 60 }, () => randomAddress(rnd));
      for (const c of cidrs) ranges.addCidr(c);
      if (batch) ranges.addAddresses(addresses);
      else for (const a of addresses) ranges.addAddress(a);
      for (let step = 0; step < 200; step++) {
        const r = rnd();
        if (r < 0.25 && addresses.length > 0) {
          const [a] = addresses.splice(Math.floor(rnd() * addresses.length), 1);
          if (a) ranges.removeAddress(a);
        } else if (r < 0.5) {
          const a = randomAddress(rnd);
          addresses.push(a);
          ranges.addAddress(a);
        } else if (r < 0.75 && cidrs.length > 0) {
          const [c] = cidrs.splice(Math.floor(rnd() * cidrs.length), 1);
          if (c) ranges.removeCidr(c);
        } else {
          const c = randomCidr(rnd);
          cidrs.push(c);
          ranges.addCidr(c);
        }
        const probeCidr = randomCidr(rnd);
        const probeAddress = randomAddress(rnd);
        const where = `seed ${seed}, step ${step}`;
        t.is(ranges.hasAddressInside(probeCidr), addresses.some((a) => contains(probeCidr, a)), `${where}: an address inside ${probeCidr.text}`);
        t.is(ranges.hasCidrContaining(probeAddress), cidrs.some((c) => contains(c, probeAddress)), `${where}: a CIDR containing the probe address`);
        t.is(ranges.cidrCount(probeCidr), cidrs.filter((c) => c.text === probeCidr.text).length, `${where}: count of ${probeCidr.text}`);
      }
    }
  });
}
