// The route guard's rules answered by a scan over every protected range in order: the reference the
// indexed guard (agent/plan/route-guard.ts) must equal, answer for answer and reason for reason.
// The rules are those of the guard before its IPv4 ranges became numbers (round 22): the host's
// addresses and connected subnets, next hops, routes others own (exact), NATS servers, then every
// node's endpoints and private addresses, ours first.
import { cidrsOverlap, parseCidr, type Cidr } from '../../protocol/cidr.ts';
import type { NodeRecord } from '../../protocol/messages.ts';
import { underlayOf, type HostFacts, type RouteGuard } from '../../agent/plan/route-guard.ts';

interface Range {
  readonly range: Cidr;
  readonly exact: boolean;
  readonly what: string;
}

const host = (ip: string): Cidr | undefined => (ip.includes('/') ? undefined : parseCidr(ip, { allowHostBits: true }));

export function scanRouteGuard(facts: HostFacts, self: NodeRecord, nodes: Iterable<NodeRecord>): RouteGuard {
  const ranges: Range[] = [];
  const add = (range: Cidr | undefined, what: string, exact = false): void => {
    if (range) ranges.push({ range, exact, what });
  };
  for (const a of facts.addresses) {
    const c = parseCidr(a.cidr, { allowHostBits: true });
    if (!c) continue;
    const ip = a.cidr.split('/')[0] ?? a.cidr;
    add(host(ip), `local address ${ip} (${a.dev})`);
    if (c.prefix < (c.family === 4 ? 32 : 128)) add(c, `connected subnet ${c.text} (${a.dev})`);
  }
  for (const r of facts.routes) {
    const dst = parseCidr(r.dst, { allowHostBits: true });
    if (!dst) continue;
    const dev = r.dev === null ? '' : `, dev ${r.dev}`;
    if (r.via !== null) add(host(r.via), dst.prefix === 0 ? `default gateway ${r.via}${dev}` : `next hop ${r.via} of route ${dst.text}`);
    if (dst.prefix === 0) continue;
    if (r.scope === 'link') add(dst, `connected subnet ${dst.text} (proto ${r.protocol}${dev})`);
    else add(dst, `route ${dst.text} (proto ${r.protocol}${dev}) that Crosslink does not own`, true);
  }
  for (const ip of facts.natsAddresses) add(host(ip), `NATS server ${ip}`);
  const underlay = (n: NodeRecord): void => {
    const of = n.name === self.name ? 'this node' : `node ${n.name}`;
    for (const u of underlayOf(n)) add(u.range, `${u.what} ${u.ip} of ${of}`);
  };
  underlay(self);
  for (const n of nodes) if (n.name !== self.name) underlay(n);
  return {
    reason(cidr: string): string | null {
      const c = parseCidr(cidr, { allowHostBits: true });
      if (!c) return `${cidr} is not a CIDR`;
      for (const r of ranges) {
        const hit = r.exact ? r.range.family === c.family && r.range.network === c.network && r.range.prefix === c.prefix : cidrsOverlap(r.range, c);
        if (hit) return `${c.text} overlaps ${r.what}`;
      }
      return null;
    },
  };
}
