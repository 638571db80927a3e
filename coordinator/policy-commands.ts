// `crosslink-coordinator policy set | show | history | test`: the operator's side of the access
// policy between clusters. Same NATS and signing-key flags as `revoke`; works on the bucket directly.
import { readFile } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import { Option, type Command } from 'commander';
import { stringify as toYaml } from 'yaml';
import { renderTable } from '../lib/text-format.ts';
import { systemClock } from '../lib/clock.ts';
import { ValidationError, errorMessage } from '../lib/errors.ts';
import { createLogger } from '../lib/logger.ts';
import { parseIp } from '../protocol/cidr.ts';
import { ClusterName } from '../protocol/messages.ts';
import type { PolicyDocument, PolicyRecord } from '../protocol/policy/document.ts';
import { parsePolicyYaml } from '../protocol/policy/yaml.ts';
import { policyContext } from '../protocol/policy/context.ts';
import { describeRule, evaluatePolicy, parseFlowPort, type Decision, type FlowEnd } from '../protocol/policy/evaluate.ts';
import { policyHistory, readCurrentPolicy, readNodes, setPolicy } from './policy-admin.ts';
import { addSharedOptions, sharedConfig, withAdmin, type SharedOptions } from './revocation-commands.ts';

const iso = (ms: number): string => new Date(ms).toISOString();

function defaultSetBy(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (containers)
  }
  return `${user}@${hostname()}`;
}

async function readPolicyFile(file: string): Promise<string> {
  try {
    return file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (err) {
    throw new ValidationError('--file', file, `must be a readable YAML file (or - for stdin): ${errorMessage(err)}`, { cause: err });
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The rules as a numbered table, as `policy show` prints them. */
export function formatPolicy(record: PolicyRecord): string {
  const p = record.policy;
  const lines = [`policy version ${record.version}, set by ${record.setBy} at ${iso(record.setAt)} (sha256 ${record.sourceSha256.slice(0, 12)})`, `default: ${p.default}`];
  if (p.rules.length === 0) lines.push('no rules');
  else lines.push(renderTable(['#', 'ACTION', 'FROM', 'TO', 'PORTS', 'DESCRIPTION'], p.rules.map((r, i) => [String(i + 1), r.action, sel(r.from), sel(r.to), r.to.ports?.join(',') ?? 'any', r.description ?? ''])));
  return `${lines.join('\n')}\n`;
}

const sel = (s: { cluster?: string | undefined; cidr?: string | undefined }): string => (s.cluster !== undefined ? `cluster ${s.cluster}` : `cidr ${s.cidr ?? '?'}`);

function parseEnd(flag: string, text: string): FlowEnd {
  if (parseIp(text)) return { ip: text };
  if (ClusterName.safeParse(text).success) return { cluster: text };
  throw new ValidationError(flag, text, 'use a cluster name or an IP address');
}

/** One line per decision, naming the rule (or default) that decides. */
export function formatDecision(d: Decision, doc: PolicyDocument | null): string {
  const rule = d.rule === null ? null : doc?.rules[d.rule - 1];
  return `${d.action.toUpperCase()}: ${d.explanation}${rule?.description ? ` — ${rule.description}` : ''}\n`;
}

export function addPolicyCommands(program: Command): void {
  const policy = program.command('policy').description('the access policy between clusters: set, show, history, test');

  addSharedOptions(policy.command('set').description('validate a policy YAML file and make it the policy in force (a new signed version); an invalid file changes nothing'))
    .addOption(new Option('--file <yaml>', 'the policy document (- reads stdin, e.g. from a ConfigMap)').makeOptionMandatory())
    .addOption(new Option('--by <who>', 'who sets it, kept in the history (default user@host)'))
    .action(async (opts: SharedOptions & { file: string; by?: string }, cmd: Command) => {
      const text = await readPolicyFile(opts.file);
      // Validate before connecting: an invalid file never reaches the bucket.
      parsePolicyYaml(text, opts.file);
      const config = sharedConfig(opts, cmd);
      const by = (opts.by ?? defaultSetBy()).slice(0, 200);
      const logger = createLogger('crosslink-coordinator', process.env['CROSSLINK_LOG_LEVEL'] ?? 'warn');
      const r = await withAdmin(config, ({ kv, signingKey }) => setPolicy({ kv, signingKey, clock: systemClock, logger }, text, opts.file, by));
      if (r.unchanged) process.stdout.write(`unchanged: policy version ${r.record.version} (set by ${r.record.setBy} at ${iso(r.record.setAt)}) already is this document; nothing written\n`);
      else process.stdout.write(`policy version ${r.record.version} is in force (was ${r.previous ? `version ${r.previous.version}` : 'no policy'}): default ${r.record.policy.default}, ${r.record.policy.rules.length} rule(s); every agent applies it within about a second (\`crosslink status\` shows the version a node enforces)\n`);
    });

  addSharedOptions(policy.command('show').description('the policy in force'))
    .addOption(new Option('--json', 'print the signed record\'s content as JSON'))
    .addOption(new Option('--yaml', 'print the document as YAML (feed it back to `policy set`)'))
    .action(async (opts: SharedOptions & { json?: boolean; yaml?: boolean }, cmd: Command) => {
      const cur = await withAdmin(sharedConfig(opts, cmd), ({ kv, signingKey }) => readCurrentPolicy({ kv, signingKey }));
      if (!cur) {
        process.stdout.write(opts.json ? 'null\n' : 'no policy is set: every cluster reaches every cluster\n');
        return;
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(cur.record, null, 2)}\n`);
      else if (opts.yaml) process.stdout.write(toYaml(cur.record.policy));
      else process.stdout.write(formatPolicy(cur.record));
    });

  addSharedOptions(policy.command('history').description('the last policy versions: who set them and when'))
    .addOption(new Option('--json', 'print JSON'))
    .addOption(new Option('--limit <n>', 'how many versions').default('20'))
    .action(async (opts: SharedOptions & { json?: boolean; limit: string }, cmd: Command) => {
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new ValidationError('--limit', opts.limit, 'use a whole number 1-1000');
      const rows = await withAdmin(sharedConfig(opts, cmd), ({ kv, signingKey }) => policyHistory({ kv, signingKey }, limit));
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(rows.map((r) => ({ ...r.record, verified: r.verified })), null, 2)}\n`);
        return;
      }
      if (rows.length === 0) {
        process.stdout.write('no policy has been set\n');
        return;
      }
      const table = renderTable(
        ['VERSION', 'SET AT', 'SET BY', 'DEFAULT', 'RULES', 'SHA256'],
        rows.map(({ record: r, verified }) => [verified ? String(r.version) : `${r.version} (signed by another key)`, iso(r.setAt), r.setBy, r.policy.default, String(r.policy.rules.length), r.sourceSha256.slice(0, 12)]),
      );
      process.stdout.write(`${table}\n`);
    });

  addSharedOptions(policy.command('test').description('which rule decides a flow, computed with the function every agent uses; exit 0 allowed, 1 denied'))
    .addOption(new Option('--from <cluster|ip>', 'source: a cluster name or an address').makeOptionMandatory())
    .addOption(new Option('--to <ip|cluster>', 'destination: an address or a cluster name').makeOptionMandatory())
    .addOption(new Option('--port <proto/port>', 'tcp/8080, udp/53 or icmp').makeOptionMandatory())
    .addOption(new Option('--file <yaml>', 'test this document instead of the policy in force (nothing is written)'))
    .action(async (opts: SharedOptions & { from: string; to: string; port: string; file?: string }, cmd: Command) => {
      const from = parseEnd('--from', opts.from);
      const to = parseEnd('--to', opts.to);
      const port = parseFlowPort(opts.port);
      if (!port) throw new ValidationError('--port', opts.port, 'use tcp/<port>, udp/<port> or icmp');
      const fileDoc = opts.file === undefined ? undefined : parsePolicyYaml(await readPolicyFile(opts.file), opts.file);
      const { doc, nodes, enrolled, version } = await withAdmin(sharedConfig(opts, cmd), async ({ store, kv, signingKey }) => {
        const cur = fileDoc === undefined ? await readCurrentPolicy({ kv, signingKey }) : null;
        const definitions = [...(await store.loadDefinitions()).values()].map((r) => r.value);
        return { doc: fileDoc ?? cur?.record.policy ?? null, version: cur?.record.version ?? null, nodes: await readNodes({ kv, signingKey }), enrolled: definitions };
      });
      // Cluster → CIDRs exactly as every agent maps them: the enrolled ranges (protocol/policy/context.ts).
      const ctx = policyContext(enrolled, nodes);
      for (const [flag, end] of [['--from', from], ['--to', to]] as const) {
        if (end.cluster !== undefined && !ctx.clusters.has(end.cluster)) process.stderr.write(`warning: ${flag}: cluster ${end.cluster} is not enrolled; it is matched by name only\n`);
      }
      const d = evaluatePolicy(doc, ctx, { from, to, protocol: port.protocol, port: port.port });
      const what = opts.file !== undefined ? `the file ${opts.file}` : version === null ? 'no policy' : `policy version ${version}`;
      process.stdout.write(`${opts.from} → ${opts.to} ${opts.port} under ${what}:\n${formatDecision(d, doc)}`);
      const rule = d.rule === null ? undefined : doc?.rules[d.rule - 1];
      if (rule) process.stdout.write(`  rule ${d.rule ?? '?'}: ${describeRule(rule)}\n`);
      process.exitCode = d.action === 'allow' ? 0 : 1;
    });
}

