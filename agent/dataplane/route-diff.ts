// Routes Crosslink owns are marked with a dedicated route protocol number; we read, replace and
// delete only those, so routes of the CNI, the cloud or the admin are never touched.
import { canonicalCidr, formatIp, hostCidr, parseIp } from '../../protocol/cidr.ts';
import type { DesiredRoute } from '../plan/model.ts';
import type { PlannedCommand } from './wg-diff.ts';
import { parseIpJson } from './ip-json.ts';
import type { Runner } from '../../lib/runner.ts';

/**
 * Route protocol (`proto 149` in `ip route`) marking Crosslink's routes. 149 is unassigned in
 * /etc/iproute2/rt_protos and not used by common routing daemons (bird 12, zebra 11, kernel 2, boot 3…).
 */
export const ROUTE_PROTO = 149;

export interface LiveRoute {
  /** Canonical CIDR ("10.1.0.0/24", "100.96.0.3/32", "fd00::1/128"). */
  readonly dst: string;
  readonly dev: string | null;
  readonly via: string | null;
  /** Route metric (priority): absent in `ip -j` output means 0 (IPv4); IPv6 routes carry it (default 1024). */
  readonly metric: number;
  /** Route protocol as `ip -j` prints it: "kernel", "boot", "static", "149"… Only ROUTE_PROTO is ours. */
  readonly protocol: string;
  /** "link" for connected subnets, null (universe) otherwise. */
  readonly scope: string | null;
}

/** The metric `ip route replace` gives a route without one: 0 for IPv4, 1024 for IPv6. */
export const defaultMetric = (family: 4 | 6): number => (family === 6 ? 1024 : 0);

/** Crosslink installed it: our protocol number (and, by construction, table main). */
export const isOwnedRoute = (r: LiveRoute): boolean => r.protocol === String(ROUTE_PROTO);

/**
 * `ip -j [-6] route show table main`: the WHOLE main table, both ours and everybody else's, so
 * the diff knows which destinations belong to someone else and never `replace`s them. Reads only.
 */
export function readRoutesArgv(family: 4 | 6): string[] {
  return ['ip', '-j', ...(family === 6 ? ['-6'] : []), 'route', 'show', 'table', 'main'];
}

/** The main table of both families, read side by side (a host without IPv6 reads as no IPv6 routes). */
export async function readMainRoutes(runner: Runner): Promise<LiveRoute[]> {
  const [v4, v6] = await Promise.all([runner.run(readRoutesArgv(4)), runner.run(readRoutesArgv(6), { allowFailure: true })]);
  return [...parseIpRoutes(v4.stdout, 4), ...(v6.exitCode === 0 ? parseIpRoutes(v6.stdout, 6) : [])];
}

interface IpJsonRoute {
  dst?: unknown;
  dev?: unknown;
  gateway?: unknown;
  via?: unknown;
  metric?: unknown;
  protocol?: unknown;
  scope?: unknown;
  type?: unknown;
}

function canonicalIp(text: string): string {
  const ip = parseIp(text);
  return ip ? formatIp(ip.family, ip.value) : text;
}

function routeDst(dst: string, family: 4 | 6): string | undefined {
  if (dst === 'default') return family === 4 ? '0.0.0.0/0' : '::/0';
  if (dst.includes('/')) return canonicalCidr(dst);
  return parseIp(dst) ? hostCidr(dst) : undefined;
}

/**
 * Parses `ip -j route show` output. Host routes come without a prefix length ("10.1.2.3"); a route
 * without "protocol" is iproute2's default, "boot".
 */
export function parseIpRoutes(stdout: string, family: 4 | 6): LiveRoute[] {
  const raw = parseIpJson(stdout, readRoutesArgv(family));
  const out: LiveRoute[] = [];
  for (const r of raw as IpJsonRoute[]) {
    if (typeof r.dst !== 'string') continue;
    const dst = routeDst(r.dst, family);
    if (dst === undefined) continue;
    let via: string | null = null;
    if (typeof r.gateway === 'string') via = canonicalIp(r.gateway);
    else if (r.via && typeof r.via === 'object' && typeof (r.via as { host?: unknown }).host === 'string') {
      via = canonicalIp((r.via as { host: string }).host);
    }
    out.push({
      dst,
      dev: typeof r.dev === 'string' ? r.dev : null,
      via,
      metric: typeof r.metric === 'number' ? r.metric : 0,
      protocol: typeof r.protocol === 'string' ? r.protocol : typeof r.protocol === 'number' ? String(r.protocol) : 'boot',
      scope: typeof r.scope === 'string' ? r.scope : null,
    });
  }
  return out;
}

/** A desired route the diff will not install, and why. */
export interface BlockedRoute {
  readonly route: DesiredRoute;
  readonly reason: string;
}

export interface RouteDiff {
  /** Missing or different: `ip route replace`. */
  readonly upsert: readonly DesiredRoute[];
  /** Ours (proto 149) but no longer wanted, or a duplicate of a wanted one (other metric/device). */
  readonly remove: readonly LiveRoute[];
  /** Wanted, but its destination is held by a route Crosslink does not own: never replaced, never deleted. */
  readonly blocked: readonly BlockedRoute[];
}

function matches(want: DesiredRoute, have: LiveRoute): boolean {
  if (want.via !== undefined) {
    if (have.via !== canonicalIp(want.via)) return false;
    return want.dev === undefined || have.dev === want.dev;
  }
  return have.via === null && have.dev === (want.dev ?? null);
}

const familyOfDst = (dst: string): 4 | 6 => (dst.includes(':') ? 6 : 4);

/** A desired route as `ip -j route show` lists it once `ip route replace … proto 149` installed it. */
export function liveRouteOf(r: DesiredRoute): LiveRoute {
  return {
    dst: r.dst,
    dev: r.dev ?? null,
    via: r.via !== undefined ? canonicalIp(r.via) : null,
    metric: defaultMetric(familyOfDst(r.dst)),
    protocol: String(ROUTE_PROTO),
    scope: null,
  };
}

/**
 * Keyed diff of the desired routes against the live main table. Only routes with our protocol
 * number are ever replaced or deleted. Live routes are keyed by destination AND metric (two routes
 * of ours with one destination and different metrics or devices are two routes: the one a desired
 * route maps to — same destination, default metric — is kept or replaced, every other is deleted).
 * A destination that already has a route of someone else (a connected subnet, a CNI route, the
 * admin's) is blocked: `ip route replace` would overwrite it.
 */
export function diffRoutes(desired: readonly DesiredRoute[], live: readonly LiveRoute[]): RouteDiff {
  const owned = live.filter(isOwnedRoute);
  const foreignByDst = new Map<string, LiveRoute>();
  for (const r of live) if (!isOwnedRoute(r) && !foreignByDst.has(r.dst)) foreignByDst.set(r.dst, r);
  const ownedByKey = new Map<string, LiveRoute>();
  for (const r of owned) if (!ownedByKey.has(`${r.dst} ${r.metric}`)) ownedByKey.set(`${r.dst} ${r.metric}`, r);

  const upsert: DesiredRoute[] = [];
  const blocked: BlockedRoute[] = [];
  const kept = new Set<LiveRoute>();
  for (const want of desired) {
    const foreign = foreignByDst.get(want.dst);
    if (foreign) {
      blocked.push({ route: want, reason: `${want.dst} already has a route Crosslink does not own (${describeRoute(foreign)})` });
      continue;
    }
    const have = ownedByKey.get(`${want.dst} ${defaultMetric(familyOfDst(want.dst))}`);
    if (have) kept.add(have);
    if (!have || !matches(want, have)) upsert.push(want);
  }
  const remove = owned.filter((r) => !kept.has(r));
  return { upsert, remove, blocked };
}

/** "proto kernel, dev eth0" / "proto boot, via 10.0.0.1" for messages. */
export function describeRoute(r: LiveRoute): string {
  return [`proto ${r.protocol}`, ...(r.via !== null ? [`via ${r.via}`] : []), ...(r.dev !== null ? [`dev ${r.dev}`] : []), ...(r.metric !== 0 ? [`metric ${r.metric}`] : [])].join(', ');
}

export function routeCommands(diff: RouteDiff, liveDsts: ReadonlySet<string>): { readonly upserts: PlannedCommand[]; readonly removals: PlannedCommand[] } {
  const upserts = diff.upsert.map((r) => ({
    op: liveDsts.has(r.dst) ? 'replace route' : 'add route',
    argv: [
      'ip',
      'route',
      'replace',
      r.dst,
      ...(r.via !== undefined ? ['via', r.via] : []),
      ...(r.dev !== undefined ? ['dev', r.dev] : []),
      'proto',
      String(ROUTE_PROTO),
    ],
  }));
  // Deletes name the protocol, the metric and the device: exactly the route read, never a neighbour.
  const removals = diff.remove.map((r) => ({
    op: 'delete route',
    argv: ['ip', 'route', 'del', r.dst, 'proto', String(ROUTE_PROTO), 'metric', String(r.metric), ...(r.dev !== null ? ['dev', r.dev] : [])],
  }));
  return { upserts, removals };
}
