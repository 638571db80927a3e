// Reads what the route guard protects: the host's addresses and the main table's routes that
// Crosslink does not own (connected subnets, default route, CNI and admin routes). Reads only,
// through the Runner. Our own interface and our own routes (proto 149) are left out: they are
// the overlay, not the host.
import type { Runner } from '../../lib/runner.ts';
import type { HostAddress, HostFacts, HostRoute } from '../plan/route-guard.ts';
import { RouteParseError, isOwnedRoute, parseIpRoutes, readRoutesArgv } from './route-diff.ts';

interface IpJsonAddrLink {
  ifname?: unknown;
  addr_info?: { local?: unknown; prefixlen?: unknown }[];
}

/** Parses `ip -j addr show`: every address with its prefix length, except on `skipDev`. */
export function parseHostAddresses(stdout: string, skipDev: string): HostAddress[] {
  if (stdout.trim() === '') return [];
  let raw: unknown;
  try {
    raw = JSON.parse(stdout);
  } catch (err) {
    throw new RouteParseError(`ip -j addr output is not JSON: ${stdout.slice(0, 80)}`, { cause: err });
  }
  if (!Array.isArray(raw)) throw new RouteParseError('ip -j addr output is not a JSON array');
  const out: HostAddress[] = [];
  for (const link of raw as IpJsonAddrLink[]) {
    if (typeof link.ifname !== 'string' || link.ifname === skipDev) continue;
    for (const a of link.addr_info ?? []) {
      if (typeof a.local === 'string' && typeof a.prefixlen === 'number') out.push({ cidr: `${a.local}/${a.prefixlen}`, dev: link.ifname });
    }
  }
  return out;
}

/** The host side of HostFacts (the NATS addresses come from the agent's configuration). */
export async function readHostFacts(runner: Runner, iface: string, natsAddresses: readonly string[]): Promise<HostFacts> {
  const [addr, v4, v6] = await Promise.all([
    runner.run(['ip', '-j', 'addr', 'show']),
    runner.run(readRoutesArgv(4)),
    runner.run(readRoutesArgv(6), { allowFailure: true }),
  ]);
  const live = [...parseIpRoutes(v4.stdout, 4), ...(v6.exitCode === 0 ? parseIpRoutes(v6.stdout, 6) : [])];
  const routes: HostRoute[] = live
    .filter((r) => !isOwnedRoute(r) && r.dev !== iface)
    .map((r) => ({ dst: r.dst, dev: r.dev, via: r.via, protocol: r.protocol, scope: r.scope }));
  return Object.freeze({ addresses: parseHostAddresses(addr.stdout, iface), routes, natsAddresses: [...natsAddresses] });
}
