// NodeSource for standalone mode: the identity comes from flags (validated in config.ts). The only
// thing looked up is the default private address, read from the route table through the Runner.
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { Runner } from '../../lib/runner.ts';
import { formatIp, parseIp } from '../../protocol/cidr.ts';
import type { AgentConfig } from '../config.ts';
import type { NodeIdentity, NodeSource, PublishedState } from '../plan/model.ts';

interface JsonRoute {
  dev?: unknown;
  prefsrc?: unknown;
  nexthops?: { dev?: unknown }[];
}

interface JsonAddr {
  addr_info?: { family?: unknown; local?: unknown; scope?: unknown }[];
}

/**
 * The primary IPv4 of the default-route interface: the route's preferred source if it has one,
 * else the first global IPv4 on its device. Empty when there is no IPv4 default route.
 */
export async function detectPrivateAddresses(runner: Runner): Promise<string[]> {
  const r = await runner.run(['ip', '-j', 'route', 'show', 'default'], { allowFailure: true });
  if (r.exitCode !== 0 || r.stdout.trim() === '') return [];
  const routes = JSON.parse(r.stdout) as JsonRoute[];
  for (const route of routes) {
    if (typeof route.prefsrc === 'string' && parseIp(route.prefsrc)?.family === 4) return [canonicalIp(route.prefsrc)];
  }
  const dev = routes.map((x) => (typeof x.dev === 'string' ? x.dev : x.nexthops?.find((h) => typeof h.dev === 'string')?.dev)).find((d) => typeof d === 'string');
  if (typeof dev !== 'string') return [];
  const a = await runner.run(['ip', '-j', '-4', 'addr', 'show', 'dev', dev]);
  const links = a.stdout.trim() === '' ? [] : (JSON.parse(a.stdout) as JsonAddr[]);
  for (const link of links) {
    for (const info of link.addr_info ?? []) {
      if (info.family === 'inet' && info.scope === 'global' && typeof info.local === 'string' && parseIp(info.local)) {
        return [canonicalIp(info.local)];
      }
    }
  }
  return [];
}

function canonicalIp(text: string): string {
  const ip = parseIp(text);
  return ip ? formatIp(ip.family, ip.value) : text;
}

/** The identity flags describe, with defaults applied (no I/O). */
export function identityFromConfig(config: AgentConfig, privateAddresses: readonly string[]): NodeIdentity {
  if (config.location === null) {
    throw new Error('standalone identity needs --location (config validation should have caught this)');
  }
  return Object.freeze({
    name: config.nodeName,
    cluster: config.cluster,
    location: config.location,
    ...(config.zone === null ? {} : { zone: config.zone }),
    endpoints: config.endpoints,
    privateAddresses: Object.freeze([...privateAddresses]),
    podCidrs: config.podCidrs,
    topology: config.topology,
    gatewayEligible: config.gatewayEligible ?? config.endpoints.length > 0,
    ...(config.persistentKeepalive === null ? {} : { persistentKeepalive: config.persistentKeepalive }),
  });
}

export interface StaticNodeSourceOptions {
  readonly config: AgentConfig;
  readonly runner: Runner;
  readonly logger: Logger;
}

/** Identity from flags; never changes; publishes nowhere. */
export function createStaticNodeSource(o: StaticNodeSourceOptions): NodeSource {
  return {
    async start(): Promise<NodeIdentity> {
      let addresses = o.config.privateAddresses;
      if (addresses.length === 0) {
        try {
          addresses = await detectPrivateAddresses(o.runner);
        } catch (err) {
          o.logger.warn({ err: errorMessage(err) }, 'cannot detect the private address; pass --private-address');
          addresses = [];
        }
        if (addresses.length === 0) o.logger.warn('no IPv4 default route: registering without a private address (same-VPC paths need --private-address)');
        else o.logger.info({ privateAddresses: addresses }, 'detected private address');
      }
      return identityFromConfig(o.config, addresses);
    },
    onChange(): void {
      // Flags don't change while we run.
    },
    publish(_state: PublishedState): Promise<void> {
      return Promise.resolve();
    },
    stop(): Promise<void> {
      return Promise.resolve();
    },
  };
}
