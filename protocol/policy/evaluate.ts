// Which rule decides a flow: first match wins, then `default`. Pure. The same function answers
// `crosslink-coordinator policy test`, `crosslink policy explain/check` and diagnose; the agents'
// nftables table (render.ts) is generated from the same rules in the same order.
import { cidrContainsIp, parseCidr, parseIp, type Cidr } from '../cidr.ts';
import { rulePorts, type PolicyDocument, type Selector } from './document.ts';

/** What the policy needs to know about the mesh: which addresses belong to which cluster. */
export interface PolicyContext {
  /** Cluster → its CIDRs (its ENROLLED pod ranges and the overlay /32 of each node), canonical, sorted: context.ts. */
  readonly clusters: ReadonlyMap<string, readonly string[]>;
  /** Overlay IPs of all nodes: node-to-node overlay traffic is Crosslink's own and never filtered. */
  readonly nodeOverlayIps: readonly string[];
}

export type FlowProtocol = 'tcp' | 'udp' | 'icmp' | 'other';

/** One side of a flow: an address, a cluster name, or both. */
export interface FlowEnd {
  readonly ip?: string;
  readonly cluster?: string;
}

export interface Flow {
  readonly from: FlowEnd;
  readonly to: FlowEnd;
  readonly protocol: FlowProtocol;
  /** Destination port for tcp/udp; null otherwise. */
  readonly port: number | null;
}

export interface Decision {
  readonly action: 'allow' | 'deny';
  /** 1-based index of the deciding rule; null when `default` (or an exemption) decided. */
  readonly rule: number | null;
  /** 'rule', 'default', or why the policy does not apply ('same-cluster', 'node-to-node', 'no-policy'). */
  readonly by: 'rule' | 'default' | 'same-cluster' | 'node-to-node' | 'no-policy';
  /** One line for humans: "denied by policy rule 2 (from cluster c3 to cidr 10.203.2.0/25, any port)". */
  readonly explanation: string;
}

/** The cluster an address belongs to, if any. */
export function clusterOfIp(ctx: PolicyContext, ip: string): string | undefined {
  const p = parseIp(ip);
  if (!p) return undefined;
  for (const [name, cidrs] of ctx.clusters) {
    for (const c of cidrs) {
      const cidr = parseCidr(c);
      if (cidr && cidrContainsIp(cidr, p.family, p.value)) return name;
    }
  }
  return undefined;
}

function resolve(ctx: PolicyContext, end: FlowEnd): FlowEnd {
  if (end.cluster !== undefined || end.ip === undefined) return end;
  const cluster = clusterOfIp(ctx, end.ip);
  return cluster === undefined ? end : { ...end, cluster };
}

function within(inner: Cidr, outer: Cidr): boolean {
  return inner.family === outer.family && inner.prefix >= outer.prefix && cidrContainsIp(outer, inner.family, inner.network);
}

/** Does `end` fall under `sel`? A cluster given without an address matches a cidr selector only when all its known CIDRs lie inside. */
export function selectorMatches(ctx: PolicyContext, sel: Selector, end: FlowEnd): boolean {
  if (sel.cluster !== undefined) return end.cluster === sel.cluster;
  const cidr = parseCidr(sel.cidr ?? '');
  if (!cidr) return false;
  if (end.ip !== undefined) {
    const ip = parseIp(end.ip);
    return ip !== undefined && cidrContainsIp(cidr, ip.family, ip.value);
  }
  if (end.cluster === undefined) return false;
  const own = (ctx.clusters.get(end.cluster) ?? []).map((c) => parseCidr(c)).filter((c): c is Cidr => c !== undefined);
  return own.length > 0 && own.every((c) => within(c, cidr));
}

function portMatches(rule: PolicyDocument['rules'][number], flow: Flow): boolean {
  const ports = rulePorts(rule);
  if (ports.length === 0) return true;
  return ports.some((p) => {
    if (p.protocol !== flow.protocol) return false;
    if (p.protocol === 'icmp') return true;
    return flow.port !== null && p.first !== null && p.last !== null && flow.port >= p.first && flow.port <= p.last;
  });
}

export function describeSelector(sel: Selector): string {
  return sel.cluster !== undefined ? `cluster ${sel.cluster}` : `cidr ${sel.cidr ?? '?'}`;
}

export function describeRule(rule: PolicyDocument['rules'][number]): string {
  const ports = rule.to.ports?.join(', ') ?? 'any port';
  return `${rule.action} from ${describeSelector(rule.from)} to ${describeSelector(rule.to)}, ${ports}`;
}

const verb = (a: 'allow' | 'deny'): string => (a === 'allow' ? 'allowed' : 'denied');

/**
 * Decides a new connection (replies of allowed connections always pass: the enforcement is
 * stateful). `policy` null: no policy is set, everything is allowed.
 */
export function evaluatePolicy(policy: PolicyDocument | null, ctx: PolicyContext, flow: Flow): Decision {
  if (policy === null) return { action: 'allow', rule: null, by: 'no-policy', explanation: 'allowed: no policy is set' };
  const from = resolve(ctx, flow.from);
  const to = resolve(ctx, flow.to);
  if (from.cluster !== undefined && from.cluster === to.cluster) {
    return { action: 'allow', rule: null, by: 'same-cluster', explanation: `allowed: inside cluster ${from.cluster} (the policy only covers traffic between clusters)` };
  }
  if (from.ip !== undefined && to.ip !== undefined && ctx.nodeOverlayIps.includes(from.ip) && ctx.nodeOverlayIps.includes(to.ip)) {
    return { action: 'allow', rule: null, by: 'node-to-node', explanation: 'allowed: node-to-node overlay traffic (Crosslink\'s own) is never filtered' };
  }
  for (const [i, rule] of policy.rules.entries()) {
    if (selectorMatches(ctx, rule.from, from) && selectorMatches(ctx, rule.to, to) && portMatches(rule, flow)) {
      return { action: rule.action, rule: i + 1, by: 'rule', explanation: `${verb(rule.action)} by policy rule ${i + 1} (${describeRule(rule)})` };
    }
  }
  return { action: policy.default, rule: null, by: 'default', explanation: `${verb(policy.default)} by the policy default (no rule matches)` };
}

/** "tcp/8080" → {tcp, 8080}; "icmp" → {icmp, null}; undefined when invalid. */
export function parseFlowPort(text: string): { protocol: FlowProtocol; port: number | null } | undefined {
  const t = text.trim().toLowerCase();
  if (t === 'icmp') return { protocol: 'icmp', port: null };
  const m = /^(tcp|udp)\/([0-9]{1,5})$/.exec(t);
  if (!m?.[1] || !m[2]) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { protocol: m[1] as 'tcp' | 'udp', port };
}
