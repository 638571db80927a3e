// Reads what the route guard protects: the host's addresses and the main table's routes that
// Crosslink does not own (connected subnets, default route, CNI and admin routes). Reads only,
// through the Runner. Our own interface and our own routes (proto 149) are left out: they are
// the overlay, not the host.
import type { Runner } from '../../lib/runner.ts';
import type { HostAddress, HostFacts, HostRoute } from '../plan/route-guard.ts';
import { parseIpJson } from './ip-json.ts';
import { isOwnedRoute, readMainRoutes, type LiveRoute } from './route-diff.ts';

/** Every address of the host. */
const HOST_ADDR_ARGV = ['ip', '-j', 'addr', 'show'] as const;

interface IpJsonAddrLink {
  ifname?: unknown;
  addr_info?: { local?: unknown; prefixlen?: unknown }[];
}

/** Parses `ip -j addr show`: every address with its prefix length, except on `skipDev`. */
export function parseHostAddresses(stdout: string, skipDev: string): HostAddress[] {
  const raw = parseIpJson(stdout, HOST_ADDR_ARGV);
  const out: HostAddress[] = [];
  for (const link of raw as IpJsonAddrLink[]) {
    if (typeof link.ifname !== 'string' || link.ifname === skipDev) continue;
    for (const a of link.addr_info ?? []) {
      if (typeof a.local === 'string' && typeof a.prefixlen === 'number') out.push({ cidr: `${a.local}/${a.prefixlen}`, dev: link.ifname });
    }
  }
  return out;
}

/**
 * One read of the host: what the route guard protects (HostFacts) and the main table as read
 * (`routes`, every route, ours included), so the apply of the same reconcile diffs against that
 * read instead of reading the tables a second time (DataplaneTarget.liveRoutes).
 */
export interface HostRead {
  readonly facts: HostFacts;
  readonly routes?: readonly LiveRoute[];
}

/** Reads the host: `ip -j addr show` and the main table of both families, side by side. */
export async function readHost(runner: Runner, iface: string, natsAddresses: readonly string[]): Promise<HostRead> {
  const [addr, live] = await Promise.all([runner.run(HOST_ADDR_ARGV), readMainRoutes(runner)]);
  const routes: HostRoute[] = live
    .filter((r) => !isOwnedRoute(r) && r.dev !== iface)
    .map((r) => ({ dst: r.dst, dev: r.dev, via: r.via, protocol: r.protocol, scope: r.scope }));
  const facts = Object.freeze({ addresses: parseHostAddresses(addr.stdout, iface), routes, natsAddresses: [...natsAddresses] });
  return { facts, routes: Object.freeze(live) };
}

/** The host side of HostFacts (the NATS addresses come from the agent's configuration). */
export async function readHostFacts(runner: Runner, iface: string, natsAddresses: readonly string[]): Promise<HostFacts> {
  return (await readHost(runner, iface, natsAddresses)).facts;
}
