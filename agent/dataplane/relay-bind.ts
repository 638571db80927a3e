// Which local address the relay forwarder binds. On a multi-homed relay, a socket bound to 0.0.0.0
// answers from whatever address routing picks; the NATed peers then see replies from an address they
// did not send to, WireGuard roams there and every reconcile sets it back. Binding the advertised
// endpoint's address (when it is one of ours; behind 1:1 NAT it is not) keeps replies on one address.
// The endpoints are the node's PUBLISHED ones (its verified record), so in Kubernetes mode — where
// they come from the Node object, not from flags — the right address is bound too.
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { Runner } from '../../lib/runner.ts';
import { parseEndpoint } from '../../protocol/cidr.ts';
import { parseIpJson } from './ip-json.ts';

const ADDR_ARGV = ['ip', '-j', '-4', 'addr', 'show'] as const;

/** The first IPv4 endpoint host that is a local address; undefined (bind any) if none is or the addresses cannot be read. */
export async function relayBindAddress(runner: Runner, endpoints: readonly string[], logger?: Logger): Promise<string | undefined> {
  const hosts = endpoints.map((e) => parseEndpoint(e)?.host).filter((h): h is string => h !== undefined && !h.includes(':'));
  if (hosts.length === 0) return undefined;
  const local = new Set<string>();
  try {
    const r = await runner.run(ADDR_ARGV, { allowFailure: true });
    if (r.exitCode !== 0) return undefined;
    for (const link of parseIpJson(r.stdout, ADDR_ARGV)) {
      const infos: unknown = typeof link === 'object' && link !== null ? (link as { addr_info?: unknown }).addr_info : undefined;
      if (!Array.isArray(infos)) continue;
      for (const info of infos as unknown[]) {
        const addr: unknown = typeof info === 'object' && info !== null ? (info as { local?: unknown }).local : undefined;
        if (typeof addr === 'string') local.add(addr);
      }
    }
  } catch (err) {
    logger?.warn({ err: errorMessage(err) }, 'cannot read the local addresses; relay ports bind any address');
    return undefined;
  }
  return hosts.find((h) => local.has(h));
}
