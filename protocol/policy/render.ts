// The policy as one nftables table, written for `nft -f` so it replaces the previous table in a
// single transaction (create-if-missing, delete, define: no moment without a table, and conntrack
// entries of established flows are untouched). Pure and deterministic: same input, same text.
//
// Only packets that come out of or go into the WireGuard interface are looked at, so traffic
// inside a cluster (CNI) and Crosslink's own underlay traffic (WireGuard UDP, relays) never are.
import { parseCidr } from '../cidr.ts';
import { rulePorts, type PolicyDocument, type PolicyRecord, type Selector } from './document.ts';
import { describeRule, type PolicyContext } from './evaluate.ts';

export const POLICY_TABLE_FAMILY = 'inet';
export const POLICY_TABLE_NAME = 'crosslink_policy';
export const POLICY_TABLE = `${POLICY_TABLE_FAMILY} ${POLICY_TABLE_NAME}`;
export const DEFAULT_COUNTER = 'default_verdict';

export const ruleCounterName = (index1: number): string => `rule_${index1}`;

export interface CounterValue {
  readonly packets: number;
  readonly bytes: number;
}

export interface RenderInput {
  readonly record: PolicyRecord;
  readonly context: PolicyContext;
  /** The WireGuard interface (name matched with iifname/oifname, so the table is valid before the interface exists). */
  readonly interfaceName: string;
  /** Counter values to start from (kept across re-renders of the same policy version). */
  readonly counters?: ReadonlyMap<string, CounterValue>;
}

/** The table comment: lets a restarted agent (and `policy explain`) see which version is in force. */
export function tableComment(record: Pick<PolicyRecord, 'version' | 'sourceSha256'>): string {
  return `crosslink policy v${record.version} ${record.sourceSha256.slice(0, 12)}`;
}

/** "crosslink policy v3 abcdef…" (also inside a longer comment) → 3. */
export function versionFromTableComment(comment: string | undefined): number | null {
  const m = /\bcrosslink policy v([0-9]+)\b/.exec(comment ?? '');
  return m?.[1] ? Number(m[1]) : null;
}

function cidrsOf(ctx: PolicyContext, sel: Selector, family: 4 | 6): string[] {
  const all = sel.cluster !== undefined ? (ctx.clusters.get(sel.cluster) ?? []) : sel.cidr !== undefined ? [sel.cidr] : [];
  return all.filter((c) => parseCidr(c)?.family === family);
}

const set = (items: readonly string[]): string => `{ ${items.join(', ')} }`;
const quote = (s: string): string => `"${s.replace(/["\\]/g, '')}"`;

/** The nft match parts for a rule's ports, per family ([''] for any protocol). */
function protoMatches(rule: PolicyDocument['rules'][number], family: 4 | 6): string[] {
  const ports = rulePorts(rule);
  if (ports.length === 0) return [''];
  const out: string[] = [];
  for (const proto of ['tcp', 'udp'] as const) {
    const ranges = ports.filter((p) => p.protocol === proto).map((p) => (p.first === p.last ? String(p.first) : `${p.first}-${p.last}`));
    if (ranges.length > 0) out.push(`${proto} dport ${set(ranges)}`);
  }
  if (ports.some((p) => p.protocol === 'icmp')) out.push(family === 4 ? 'meta l4proto icmp' : 'meta l4proto ipv6-icmp');
  return out;
}

/** The nft rule lines of policy rule i (1-based); empty when it can match nothing here. */
export function renderRule(rule: PolicyDocument['rules'][number], index1: number, ctx: PolicyContext): string[] {
  const lines: string[] = [];
  const verdict = rule.action === 'allow' ? 'accept' : 'drop';
  for (const family of [4, 6] as const) {
    const src = cidrsOf(ctx, rule.from, family);
    const dst = cidrsOf(ctx, rule.to, family);
    if (src.length === 0 || dst.length === 0) continue;
    const ip = family === 4 ? 'ip' : 'ip6';
    for (const proto of protoMatches(rule, family)) {
      const match = [`${ip} saddr ${set(src)}`, `${ip} daddr ${set(dst)}`, proto].filter((s) => s !== '').join(' ');
      lines.push(`${match} counter name ${quote(ruleCounterName(index1))} ${verdict} comment ${quote(`rule ${index1}`)}`);
    }
  }
  return lines;
}

/** Why a rule renders to nothing (e.g. a cluster that is not enrolled), or null. */
export function inertReason(rule: PolicyDocument['rules'][number], ctx: PolicyContext): string | null {
  for (const sel of [rule.from, rule.to]) {
    if (sel.cluster !== undefined && (ctx.clusters.get(sel.cluster)?.length ?? 0) === 0) return `cluster ${sel.cluster} is not enrolled`;
  }
  if (renderRule(rule, 1, ctx).length === 0) return 'its two sides share no IP family';
  return null;
}

function counterDecl(name: string, counters: ReadonlyMap<string, CounterValue> | undefined): string {
  const c = counters?.get(name);
  return `\tcounter ${name} { packets ${c?.packets ?? 0} bytes ${c?.bytes ?? 0} }`;
}

/** The whole `nft -f` input: make sure the table exists, delete it, define it anew, in one transaction. */
export function renderPolicyTable(input: RenderInput): string {
  const { record, context: ctx, interfaceName } = input;
  const policy = record.policy;
  const iface = quote(interfaceName);
  const lines: string[] = [];
  lines.push(`table ${POLICY_TABLE}`);
  lines.push(`delete table ${POLICY_TABLE}`);
  lines.push(`table ${POLICY_TABLE} {`);
  lines.push(`\tcomment ${quote(tableComment(record))}`);
  for (const i of policy.rules.keys()) lines.push(counterDecl(ruleCounterName(i + 1), input.counters));
  lines.push(counterDecl(DEFAULT_COUNTER, input.counters));
  for (const [hook, dir] of [
    ['forward', null],
    ['input', 'iifname'],
    ['output', 'oifname'],
  ] as const) {
    lines.push(`\tchain ${hook} {`);
    lines.push(`\t\ttype filter hook ${hook} priority filter; policy accept;`);
    if (dir === null) {
      lines.push(`\t\tiifname ${iface} jump tunnel`);
      lines.push(`\t\toifname ${iface} jump tunnel`);
    } else {
      lines.push(`\t\t${dir} ${iface} jump tunnel`);
    }
    lines.push('\t}');
  }
  lines.push('\tchain tunnel {');
  lines.push('\t\tct state established,related accept comment "replies of allowed connections"');
  for (const family of [4, 6] as const) {
    const nodes = ctx.nodeOverlayIps.filter((ip) => parseCidr(ip)?.family === family);
    if (nodes.length === 0) continue;
    const ip = family === 4 ? 'ip' : 'ip6';
    lines.push(`\t\t${ip} saddr ${set(nodes)} ${ip} daddr ${set(nodes)} accept comment "node-to-node overlay traffic"`);
  }
  for (const [i, rule] of policy.rules.entries()) {
    const rendered = renderRule(rule, i + 1, ctx);
    lines.push(`\t\t# rule ${i + 1}: ${describeRule(rule).replace(/\n/g, ' ')}${rendered.length === 0 ? ` (matches nothing here: ${inertReason(rule, ctx) ?? 'no addresses'})` : ''}`);
    for (const l of rendered) lines.push(`\t\t${l}`);
  }
  // The default rule's comment also names the version: `nft -j` shows rule comments, not the table's.
  lines.push(`\t\tcounter name ${quote(DEFAULT_COUNTER)} ${policy.default === 'allow' ? 'accept' : 'drop'} comment ${quote(`default (${tableComment(record)})`)}`);
  lines.push('\t}');
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

/** Removes the table (a node without policy, or --cleanup); a missing table is not an error for `nft -f`. */
export function renderPolicyTableRemoval(): string {
  return `table ${POLICY_TABLE}\ndelete table ${POLICY_TABLE}\n`;
}
