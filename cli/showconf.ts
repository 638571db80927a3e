// `crosslink showconf`: the desired WireGuard config as wg-quick-style INI. Pure; the input is the
// DesiredState from the same computeDesiredState the agent runs, so what you read is what it applies.
import type { DesiredState } from '../agent/plan/model.ts';

export interface ShowconfHeader {
  readonly node: string;
  readonly cluster: string;
  /** Where the view came from, e.g. "the agent at /var/lib/crosslink/agent.sock". */
  readonly source: string;
  /** Comment lines under the header (settings assumed or overridden: cli/showconf-settings.ts). */
  readonly notes?: readonly string[];
}

export function renderWgConf(desired: DesiredState, header: ShowconfHeader): string {
  const i = desired.interface;
  const out: string[] = [
    `# crosslink showconf: ${header.node} (cluster ${header.cluster}), computed from the verified view of ${header.source}`,
    ...(header.notes ?? []).map((n) => `# NOTE: ${n}`),
    '[Interface]',
    '# PrivateKey = <not shown: it stays in the node\'s state dir (wireguard.key)>',
    ...i.addresses.map((a) => `Address = ${a}`),
    `ListenPort = ${i.listenPort}`,
    `MTU = ${i.mtu}`,
  ];
  if (desired.isGateway) out.push('# This node is its cluster\'s active gateway.');
  for (const p of desired.peers) {
    const via = p.path === 'relay' ? ` via relay ${p.via ?? '?'}` : '';
    const carries = p.carries.length > 1 || (p.carries[0] !== undefined && p.carries[0] !== p.node) ? `, carries ${p.carries.join(', ')}` : '';
    out.push('', '[Peer]', `# ${p.node} (cluster ${p.cluster}), path ${p.path}${via}${carries}`, `PublicKey = ${p.publicKey}`, `AllowedIPs = ${p.allowedIps.join(', ')}`);
    if (p.endpoint !== null) out.push(`Endpoint = ${p.endpoint}`);
    else out.push('# Endpoint: none (peer is behind NAT; learned from its handshakes)');
    if (p.persistentKeepalive > 0) out.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
  }
  // wg-quick would derive routes from AllowedIPs; ours are explicit (and may go via the VPC gateway).
  if (desired.routes.length > 0) {
    out.push('', '# Routes the agent maintains (ip route … proto 149):');
    for (const r of desired.routes) out.push(`#   ${r.dst}${r.dev !== undefined ? ` dev ${r.dev}` : ''}${r.via !== undefined ? ` via ${r.via}` : ''}`);
  }
  if (desired.relays.length > 0) {
    out.push('', '# Relay ports this node forwards for NATed pairs:');
    for (const r of desired.relays) out.push(`#   udp ${r.port}: ${r.a.node} <-> ${r.b.node}`);
  }
  const none = desired.remotes.filter((r) => r.path === 'none');
  if (none.length > 0) {
    out.push('', '# Unreachable remote nodes:');
    for (const r of none) out.push(`#   ${r.node} (cluster ${r.cluster}): ${r.reason ?? 'no path'}`);
  }
  return `${out.join('\n')}\n`;
}
