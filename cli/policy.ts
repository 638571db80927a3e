// `crosslink policy explain | check` on a node, and the answer ping/diagnose give when a flow is
// denied ("denied by policy rule N"). Uses the agent's GET /policy: the verified policy, the
// cluster → CIDR map it renders with, the live nftables table and its counters; the verdict comes
// from the same evaluation function the table is rendered from.
import type { Command } from 'commander';
import { Option } from 'commander';
import { ValidationError } from '../lib/errors.ts';
import { parseIp } from '../protocol/cidr.ts';
import { evaluatePolicy, parseFlowPort, type Decision, type FlowProtocol, type PolicyContext } from '../protocol/policy/evaluate.ts';
import { PolicyDocumentResponse } from '../protocol/policy/status.ts';
import { getFromAgent } from './client.ts';
import { renderTable } from '../lib/text-format.ts';
import { policyLine } from './policy-line.ts';

export function contextOf(doc: PolicyDocumentResponse): PolicyContext {
  return { clusters: new Map(Object.entries(doc.clusters)), nodeOverlayIps: doc.nodeOverlayIps };
}

/**
 * Would a new connection from `fromIp` to `toIp` be denied, and by which rule? For `crosslink ping`
 * and diagnose: null when the policy allows it (or none is set), else the decision.
 */
export function policyDenial(doc: PolicyDocumentResponse, fromIp: string, toIp: string, protocol: FlowProtocol = 'icmp', port: number | null = null): Decision | null {
  const d = evaluatePolicy(doc.record?.policy ?? null, contextOf(doc), { from: { ip: fromIp }, to: { ip: toIp }, protocol, port });
  return d.action === 'deny' ? d : null;
}

/** Reads /policy from the agent and answers policyDenial. */
export async function policyDenialFromAgent(socket: string, fromIp: string, toIp: string, protocol: FlowProtocol = 'icmp', port: number | null = null): Promise<Decision | null> {
  return policyDenial(await getFromAgent(socket, '/policy', PolicyDocumentResponse), fromIp, toIp, protocol, port);
}

/** `crosslink policy explain`: what is in force, the drops per rule, and the live table. */
export function formatExplain(doc: PolicyDocumentResponse): string {
  const out: string[] = [`Policy: ${policyLine(doc.status)}`, `Mode:   --policy-enforcement ${doc.status.mode}`];
  const r = doc.record;
  if (r) {
    out.push(`Source: version ${r.version}, set by ${r.setBy} at ${new Date(r.setAt).toISOString()}, default ${r.policy.default}`);
    const counters = new Map(doc.counters.map((c) => [c.name, c]));
    out.push(
      '',
      renderTable(
        ['RULE', 'ACTION', 'FROM', 'TO', 'PORTS', 'PACKETS'],
        [
          ...r.policy.rules.map((x, i) => [String(i + 1), x.action, sel(x.from), sel(x.to), x.to.ports?.join(',') ?? 'any', String(counters.get(`rule_${i + 1}`)?.packets ?? 0)]),
          ['default', r.policy.default, '*', '*', '*', String(counters.get('default_verdict')?.packets ?? 0)],
        ],
      ),
    );
    out.push('', 'Clusters as this node resolves them:');
    for (const [name, cidrs] of Object.entries(doc.clusters)) out.push(`  ${name}: ${cidrs.join(', ')}`);
  }
  out.push('', doc.liveTable === null ? `Live table: none${doc.liveTableError ? ` (${doc.liveTableError})` : ''}` : `Live table (nft list table inet crosslink_policy):\n${doc.liveTable.trimEnd()}`);
  return `${out.join('\n')}\n`;
}

const sel = (s: { cluster?: string | undefined; cidr?: string | undefined }): string => (s.cluster !== undefined ? `cluster ${s.cluster}` : `cidr ${s.cidr ?? '?'}`);

export function registerPolicyCommand(program: Command, socketOption: () => Option, out: (text: string) => void, setExit: (code: number) => void): void {
  const policy = program.command('policy').description('the access policy on this node: explain (the live nftables table) or check a flow');
  policy
    .command('explain')
    .description('the policy version in force, drops per rule, and the rendered nftables table')
    .addOption(socketOption())
    .option('--json', 'print the agent\'s /policy document')
    .action(async (o: { socket: string; json?: boolean }) => {
      const doc = await getFromAgent(o.socket, '/policy', PolicyDocumentResponse);
      out(o.json ? `${JSON.stringify(doc, null, 2)}\n` : formatExplain(doc));
      setExit(doc.status.nft === 'missing' || (doc.record !== null && !doc.status.enforcing) ? 1 : 0);
    });
  policy
    .command('check')
    .description('would a new connection be allowed, and by which rule (as this node enforces it); exit 0 allowed, 1 denied')
    .addOption(socketOption())
    .addOption(new Option('--from <ip>', 'source address').makeOptionMandatory())
    .addOption(new Option('--to <ip>', 'destination address').makeOptionMandatory())
    .addOption(new Option('--port <proto/port>', 'tcp/8080, udp/53 or icmp').default('icmp'))
    .action(async (o: { socket: string; from: string; to: string; port: string }) => {
      for (const [flag, v] of [['--from', o.from], ['--to', o.to]] as const) if (!parseIp(v)) throw new ValidationError(flag, v, 'use an IP address');
      const port = parseFlowPort(o.port);
      if (!port) throw new ValidationError('--port', o.port, 'use tcp/<port>, udp/<port> or icmp');
      const doc = await getFromAgent(o.socket, '/policy', PolicyDocumentResponse);
      const d = evaluatePolicy(doc.record?.policy ?? null, contextOf(doc), { from: { ip: o.from }, to: { ip: o.to }, protocol: port.protocol, port: port.port });
      out(`${d.action.toUpperCase()}: ${d.explanation}\n`);
      setExit(d.action === 'allow' ? 0 : 1);
    });
}

/** A diagnose line (same shape as cli/diagnose.ts Check). */
export interface PolicyCheck {
  readonly ok: boolean | null;
  readonly label: string;
  readonly detail: string;
  readonly hint?: string;
}

/** The first address inside a CIDR (a pod address to reason about), or null. */
function firstHost(cidr: string): string | null {
  const m = /^([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)\/([0-9]+)$/.exec(cidr);
  if (!m) return null;
  const prefix = Number(m[5]);
  const last = Number(m[4]) + (prefix >= 31 ? 0 : 1);
  return `${m[1]}.${m[2]}.${m[3]}.${last}`;
}

/**
 * diagnose's policy lines: is the policy enforced here, and for each remote node (or `target`),
 * would ICMP from our first pod address to theirs be denied, by which rule, so that a failing ping
 * reads "denied by policy rule N", not "tunnel broken".
 */
export function policyChecks(doc: PolicyDocumentResponse, self: { podCidrs: readonly string[] }, remotes: readonly { node: string; podCidrs: readonly string[] }[]): PolicyCheck[] {
  const s = doc.status;
  const checks: PolicyCheck[] = [];
  if (s.nft === 'missing') checks.push({ ok: false, label: 'access policy enforced', detail: s.nftError ?? 'nft missing', hint: s.blocksTraffic ? 'install nftables: --policy-enforcement required makes this node carry no overlay traffic meanwhile' : 'install nftables (or pass --nft <path>): traffic passes UNFILTERED meanwhile' });
  else if (doc.record === null) checks.push({ ok: true, label: 'access policy enforced', detail: 'no policy set: every cluster reaches every cluster' });
  else if (s.enforcing) checks.push({ ok: true, label: 'access policy enforced', detail: `version ${s.enforcedVersion ?? '?'}, ${s.drops.reduce((n, d) => n + d.packets, 0)} packets dropped so far (crosslink policy explain)` });
  else checks.push({ ok: false, label: 'access policy enforced', detail: `version ${s.desiredVersion ?? '?'} not applied${s.lastError ? `: ${s.lastError}` : ''}`, hint: 'see the agent log (component policy) and `crosslink policy explain`' });
  const from = self.podCidrs.map(firstHost).find((x) => x !== null);
  if (doc.record === null || from === undefined) return checks;
  for (const r of remotes) {
    const to = r.podCidrs.map(firstHost).find((x) => x !== null);
    if (to === undefined || to === null) continue;
    const d = policyDenial(doc, from, to, 'icmp');
    if (d) checks.push({ ok: null, label: `policy towards ${r.node}`, detail: `ping ${from} → ${to}: ${d.explanation}`, hint: 'a failing ping there is the policy, not a broken tunnel; `crosslink policy check --port tcp/<port>` tells for other ports' });
  }
  return checks;
}
