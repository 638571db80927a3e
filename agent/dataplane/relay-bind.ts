// Which local address the relay forwarder binds. On a multi-homed relay, a socket bound to 0.0.0.0
// answers from whatever address routing picks; the NATed peers then see replies from an address they
// did not send to, WireGuard roams there and every reconcile sets it back. Binding the advertised
// endpoint's address (when it is one of ours; behind 1:1 NAT it is not) keeps replies on one address.
import type { Runner } from '../../lib/runner.ts';
import { parseEndpoint } from '../../protocol/cidr.ts';

interface JsonAddr {
  readonly addr_info?: readonly { readonly local?: unknown }[];
}

export async function relayBindAddress(runner: Runner, endpoints: readonly string[]): Promise<string | undefined> {
  const hosts = endpoints.map((e) => parseEndpoint(e)?.host).filter((h): h is string => h !== undefined && !h.includes(':'));
  if (hosts.length === 0) return undefined;
  const r = await runner.run(['ip', '-j', '-4', 'addr', 'show'], { allowFailure: true });
  if (r.exitCode !== 0 || r.stdout.trim() === '') return undefined;
  const local = new Set<string>();
  for (const link of JSON.parse(r.stdout) as JsonAddr[]) {
    for (const info of link.addr_info ?? []) if (typeof info.local === 'string') local.add(info.local);
  }
  return hosts.find((h) => local.has(h));
}
