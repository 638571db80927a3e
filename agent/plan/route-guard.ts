// The route guard: which peer CIDRs this host may route into the overlay. Pure. The agent reads
// the host's own addresses and routes once per reconcile (agent/dataplane/host-facts.ts) and
// hands them here as an immutable snapshot with the NATS server addresses; the desired-state
// computation keeps every peer CIDR that overlaps nothing the host needs and refuses the rest,
// with a reason (status, `crosslink diagnose`). A hostile or mistaken record can then never pull
// the host's own subnets, its default gateway, the NATS servers or any node's underlay address
// into the tunnel — whatever the coordinator admitted (defence in depth). Rules: docs/dataplane.md.
import { ipv4Number, parseCidr, parseEndpoint, parseIpv4Range, type Cidr } from '../../protocol/cidr.ts';
import type { NodeRecord } from '../../protocol/messages.ts';
import { RangeIndex, type RangeMatch } from './range-index.ts';

/** An address configured on the host (any interface but Crosslink's), with its prefix length. */
export interface HostAddress {
  /** "10.0.0.5/24" (host bits kept). */
  readonly cidr: string;
  readonly dev: string;
}

/** A route of the main table that Crosslink does not own. */
export interface HostRoute {
  /** Canonical CIDR; the default route is "0.0.0.0/0" / "::/0". */
  readonly dst: string;
  readonly dev: string | null;
  readonly via: string | null;
  readonly protocol: string;
  /** "link": a connected subnet. */
  readonly scope: string | null;
}

/** What the host needs to keep reaching outside the overlay: an input snapshot, never read live here. */
export interface HostFacts {
  readonly addresses: readonly HostAddress[];
  readonly routes: readonly HostRoute[];
  /** IP addresses of the NATS servers (resolved from --nats-url). */
  readonly natsAddresses: readonly string[];
}

export const NO_HOST_FACTS: HostFacts = Object.freeze({ addresses: [], routes: [], natsAddresses: [] });

/** A peer CIDR the guard kept out of WireGuard and the route table. */
export interface RefusedCidr {
  readonly node: string;
  readonly cluster: string;
  readonly cidr: string;
  readonly reason: string;
}

/** The guard for one computation: `reason(cidr)` is null when the CIDR may be routed into the overlay. */
export interface RouteGuard {
  reason(cidr: string): string | null;
}

/** A bare IP address as a host range; undefined for anything else (a CIDR in an address field included). */
const host = (ip: string): Cidr | undefined => (ip.includes('/') ? undefined : parseCidr(ip, { allowHostBits: true }));
const isDefault = (c: Cidr): boolean => c.prefix === 0;

/**
 * What a protected range is, for the refusal reason. A node's underlay addresses (two per node, the
 * bulk of the index) are described lazily: the text is only built for a range that refuses something.
 */
type Protected = string | { readonly what: 'endpoint' | 'private address'; readonly ip: string; readonly node: string | null };
const describe = (p: Protected): string => (typeof p === 'string' ? p : `${p.what} ${p.ip} of ${p.node === null ? 'this node' : `node ${p.node}`}`);

/** A node's underlay addresses (endpoint hosts, then private addresses) as host ranges: what the guard protects for it. */
export function underlayOf(n: NodeRecord): { readonly what: 'endpoint' | 'private address'; readonly ip: string; readonly range: Cidr }[] {
  const out: { what: 'endpoint' | 'private address'; ip: string; range: Cidr }[] = [];
  for (const e of n.endpoints) {
    const ep = parseEndpoint(e);
    const range = ep ? host(ep.host) : undefined;
    if (ep && range) out.push({ what: 'endpoint', ip: ep.host, range });
  }
  for (const p of n.privateAddresses) {
    const range = host(p);
    if (range) out.push({ what: 'private address', ip: p, range });
  }
  return out;
}

/**
 * Builds the protected set: the host's addresses and connected subnets, every next hop of its
 * routes (the default gateway first of all), destinations of routes others own (exact match),
 * the NATS servers, and every node's endpoints and private addresses (ours included).
 */
export function createRouteGuard(facts: HostFacts, self: NodeRecord, nodes: Iterable<NodeRecord>): RouteGuard {
  // Indexed, not scanned: one range per node endpoint and private address makes a scan O(nodes²) per computation.
  const ranges = new RangeIndex<Protected>();
  const add = (range: Cidr | undefined, what: Protected, mode: RangeMatch = 'overlap'): void => {
    if (range) ranges.add(range, mode, what);
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
    if (r.via !== null) add(host(r.via), isDefault(dst) ? `default gateway ${r.via}${dev}` : `next hop ${r.via} of route ${dst.text}`);
    if (isDefault(dst)) continue;
    if (r.scope === 'link') add(dst, `connected subnet ${dst.text} (proto ${r.protocol}${dev})`);
    else add(dst, `route ${dst.text} (proto ${r.protocol}${dev}) that Crosslink does not own`, 'exact');
  }
  for (const ip of facts.natsAddresses) add(host(ip), `NATS server ${ip}`);
  addUnderlay(ranges, self, null);
  for (const n of nodes) if (n.name !== self.name) addUnderlay(ranges, n, n.name);

  return {
    reason(cidr: string): string | null {
      // IPv4 as numbers (no bigint, and no text unless refused); the rest through parseCidr.
      const v4 = parseIpv4Range(cidr);
      if (v4 !== undefined) {
        const what = ranges.firstIpv4(v4.network, v4.prefix);
        return what === undefined ? null : `${parseCidr(cidr, { allowHostBits: true })?.text ?? cidr} overlaps ${describe(what)}`;
      }
      const c = parseCidr(cidr, { allowHostBits: true });
      if (!c) return `${cidr} is not a CIDR`;
      const what = ranges.first(c);
      return what === undefined ? null : `${c.text} overlaps ${describe(what)}`;
    },
  };
}

/**
 * A node's underlay addresses (endpoint hosts, then private addresses), as underlayOf lists them,
 * added to the index. IPv4 goes in as numbers: no Cidr, bigint or text per address (two per node,
 * the bulk of the index, rebuilt for every desired state).
 */
function addUnderlay(ranges: RangeIndex<Protected>, n: NodeRecord, node: string | null): void {
  for (const e of n.endpoints) {
    const ep = parseEndpoint(e);
    if (ep === undefined) continue;
    const ip = ep.family === 4 ? ipv4Number(ep.host) : undefined;
    if (ip !== undefined) ranges.addIpv4(ip, 32, 'overlap', { what: 'endpoint', ip: ep.host, node });
    else {
      const range = host(ep.host);
      if (range) ranges.add(range, 'overlap', { what: 'endpoint', ip: ep.host, node });
    }
  }
  for (const p of n.privateAddresses) {
    const ip = ipv4Number(p);
    if (ip !== undefined) ranges.addIpv4(ip, 32, 'overlap', { what: 'private address', ip: p, node });
    else {
      const range = host(p);
      if (range) ranges.add(range, 'overlap', { what: 'private address', ip: p, node });
    }
  }
}

/** A guard that refuses nothing: tests only (the negative control of the route-guard test). */
export const UNGUARDED: RouteGuard = Object.freeze({ reason: () => null });
