// Routes Crosslink owns are marked with a dedicated route protocol number; we read, replace and
// delete only those, so routes of the CNI, the cloud or the admin are never touched.
import { canonicalCidr, formatIp, hostCidr, parseIp } from '../../protocol/cidr.ts';
import { CrosslinkError } from '../../lib/errors.ts';
import type { DesiredRoute } from '../plan/model.ts';
import type { PlannedCommand } from './wg-diff.ts';

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
}

export class RouteParseError extends CrosslinkError {
  override name = 'RouteParseError';
}

/** `ip -j [-6] route show table main proto 149`: both families, reads only. */
export function readRoutesArgv(family: 4 | 6): string[] {
  return ['ip', '-j', ...(family === 6 ? ['-6'] : []), 'route', 'show', 'table', 'main', 'proto', String(ROUTE_PROTO)];
}

interface IpJsonRoute {
  dst?: unknown;
  dev?: unknown;
  gateway?: unknown;
  via?: unknown;
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

/** Parses `ip -j route show` output. Host routes come without a prefix length ("10.1.2.3"). */
export function parseIpRoutes(stdout: string, family: 4 | 6): LiveRoute[] {
  if (stdout.trim() === '') return [];
  let raw: unknown;
  try {
    raw = JSON.parse(stdout);
  } catch (err) {
    throw new RouteParseError(`ip -j route output is not JSON: ${stdout.slice(0, 80)}`, { cause: err });
  }
  if (!Array.isArray(raw)) throw new RouteParseError('ip -j route output is not a JSON array');
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
    out.push({ dst, dev: typeof r.dev === 'string' ? r.dev : null, via });
  }
  return out;
}

export interface RouteDiff {
  /** Missing or different: `ip route replace`. */
  readonly upsert: readonly DesiredRoute[];
  /** Ours (proto 149) but no longer wanted. */
  readonly remove: readonly LiveRoute[];
}

function matches(want: DesiredRoute, have: LiveRoute): boolean {
  if (want.via !== undefined) {
    if (have.via !== canonicalIp(want.via)) return false;
    return want.dev === undefined || have.dev === want.dev;
  }
  return have.via === null && have.dev === (want.dev ?? null);
}

export function diffRoutes(desired: readonly DesiredRoute[], live: readonly LiveRoute[]): RouteDiff {
  const liveByDst = new Map(live.map((r) => [r.dst, r]));
  const wanted = new Set(desired.map((r) => r.dst));
  const upsert = desired.filter((r) => {
    const have = liveByDst.get(r.dst);
    return !have || !matches(r, have);
  });
  const remove = [...liveByDst.values()].filter((r) => !wanted.has(r.dst));
  return { upsert, remove };
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
  const removals = diff.remove.map((r) => ({ op: 'delete route', argv: ['ip', 'route', 'del', r.dst, 'proto', String(ROUTE_PROTO)] }));
  return { upserts, removals };
}
