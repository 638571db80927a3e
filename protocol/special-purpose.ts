// Special-purpose address space (RFC 6890 and the IANA special-purpose registries) as it matters for
// pod CIDRs. Three classes:
//   - forbidden: never routable as pod space (loopback, link-local, multicast, translation and
//     mapped ranges, documentation, …): no enrollment can make a claim there valid;
//   - private: RFC 1918 and IPv6 unique-local space, the normal home of pod CIDRs;
//   - everything else (public space, and shared CGNAT space 100.64.0.0/10): allowed only when the
//     operator enrolled a cluster with that range explicitly (`cluster add --allow-public`).
import { cidrsOverlap, parseCidr, type Cidr } from './cidr.ts';

function must(text: string): Cidr {
  const c = parseCidr(text);
  if (!c) throw new Error(`bad built-in CIDR ${text}`);
  return c;
}

export interface NamedRange {
  readonly cidr: Cidr;
  readonly what: string;
}

const named = (text: string, what: string): NamedRange => ({ cidr: must(text), what });

/** Never valid as pod space, whatever a cluster was enrolled with. */
export const FORBIDDEN_POD_RANGES: readonly NamedRange[] = [
  named('0.0.0.0/8', '"this network"'),
  named('127.0.0.0/8', 'loopback'),
  named('169.254.0.0/16', 'link-local'),
  named('192.0.0.0/24', 'IETF protocol assignments'),
  named('192.0.2.0/24', 'documentation (TEST-NET-1)'),
  named('198.18.0.0/15', 'benchmarking'),
  named('198.51.100.0/24', 'documentation (TEST-NET-2)'),
  named('203.0.113.0/24', 'documentation (TEST-NET-3)'),
  named('224.0.0.0/4', 'multicast'),
  named('240.0.0.0/4', 'reserved (class E)'),
  named('255.255.255.255/32', 'limited broadcast'),
  named('::/128', 'unspecified'),
  named('::1/128', 'loopback'),
  named('::ffff:0:0/96', 'IPv4-mapped'),
  named('64:ff9b::/96', 'NAT64 well-known prefix'),
  named('64:ff9b:1::/48', 'local-use NAT64'),
  named('100::/64', 'discard-only'),
  named('2001::/23', 'IETF protocol assignments (Teredo, ORCHID, …)'),
  named('2001:db8::/32', 'documentation'),
  named('2002::/16', '6to4'),
  named('fe80::/10', 'link-local'),
  named('ff00::/8', 'multicast'),
];

/** Where pod CIDRs normally live. */
export const PRIVATE_RANGES: readonly NamedRange[] = [
  named('10.0.0.0/8', 'private (RFC 1918)'),
  named('172.16.0.0/12', 'private (RFC 1918)'),
  named('192.168.0.0/16', 'private (RFC 1918)'),
  named('fc00::/7', 'unique local (RFC 4193)'),
];

/** The forbidden range `c` overlaps, if any. */
export function forbiddenOverlap(c: Cidr): NamedRange | undefined {
  return FORBIDDEN_POD_RANGES.find((r) => cidrsOverlap(r.cidr, c));
}

/** True when `c` lies wholly inside private space. */
export function isPrivateRange(c: Cidr): boolean {
  return PRIVATE_RANGES.some((r) => r.cidr.family === c.family && r.cidr.prefix <= c.prefix && cidrsOverlap(r.cidr, c));
}

/** True when `inner` lies wholly inside `outer`. */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.family === outer.family && outer.prefix <= inner.prefix && cidrsOverlap(outer, inner);
}
