// The operator's access policy between clusters: the YAML document, validated once at the edge
// (errors name the field, the value and what is allowed), and the signed record stored in the KV.
//
//   default: deny                      # or allow
//   rules:
//     - from: {cluster: c1}            # or cidr: 10.1.0.0/16
//       to: {cluster: c2, ports: ["tcp/8080", "udp/53", "icmp"]}
//       action: allow                  # default
import * as z from 'zod';
import { ValidationError } from '../../lib/errors.ts';
import { canonicalCidr } from '../cidr.ts';
import { ClusterName } from '../messages.ts';

export const POLICY_MAX_RULES = 256;

export type Protocol = 'tcp' | 'udp' | 'icmp';

/** One entry of `to.ports`: a protocol and, for tcp/udp, a port range (first = last for one port). */
export interface PortSpec {
  readonly protocol: Protocol;
  /** null for icmp (and never for tcp/udp). */
  readonly first: number | null;
  readonly last: number | null;
  /** As written, canonical: "tcp/8080", "tcp/8000-8100", "icmp". */
  readonly text: string;
}

const PORT_RE = /^(tcp|udp)\/([0-9]{1,5})(?:-([0-9]{1,5}))?$/;

/** "tcp/8080", "udp/53", "tcp/8000-8100" or "icmp"; undefined when invalid. */
export function parsePortSpec(text: string): PortSpec | undefined {
  const t = text.trim().toLowerCase();
  if (t === 'icmp') return { protocol: 'icmp', first: null, last: null, text: 'icmp' };
  const m = PORT_RE.exec(t);
  if (!m?.[1] || !m[2]) return undefined;
  const first = Number(m[2]);
  const last = m[3] === undefined ? first : Number(m[3]);
  if (first < 1 || last > 65535 || last < first) return undefined;
  const protocol = m[1] as 'tcp' | 'udp';
  return { protocol, first, last, text: first === last ? `${protocol}/${first}` : `${protocol}/${first}-${last}` };
}

const PORT_HELP = 'use "tcp/<port>", "udp/<port>", "tcp/<first>-<last>" (ports 1-65535) or "icmp"';

const Cidr = z.string().refine((s) => canonicalCidr(s) !== undefined, 'must be a CIDR like 10.1.0.0/16 with host bits zero (IPv4 or IPv6)').transform((s) => canonicalCidr(s) ?? s);

const PortText = z.string().refine((s) => parsePortSpec(s) !== undefined, PORT_HELP);

/** Exactly one of cluster | cidr. */
const selectorShape = { cluster: ClusterName.optional(), cidr: Cidr.optional() };
const exactlyOne = (s: { cluster?: string | undefined; cidr?: string | undefined }): boolean => (s.cluster === undefined) !== (s.cidr === undefined);
const ONE_OF = 'must name exactly one of "cluster" (a cluster name) or "cidr" (e.g. 10.1.0.0/16)';

const SELECTOR_HELP = 'must be a mapping like {cluster: c1} or {cidr: 10.1.0.0/16}';
const FromSelector = z.strictObject(selectorShape, { error: SELECTOR_HELP }).refine(exactlyOne, ONE_OF);
const ToSelector = z.strictObject({ ...selectorShape, ports: z.array(PortText).min(1, 'must list at least one port, or leave "ports" out for any port').max(64).optional() }, { error: SELECTOR_HELP }).refine(exactlyOne, ONE_OF);

const PolicyRuleSchema = z.strictObject({
  from: FromSelector,
  to: ToSelector,
  action: z.enum(['allow', 'deny'], 'must be "allow" or "deny"').default('allow'),
  /** Free text shown by `policy show` and `policy test`. */
  description: z.string().max(200).optional(),
});

export const PolicyDocument = z.strictObject({
  default: z.enum(['allow', 'deny'], 'must be "allow" or "deny" (what happens to traffic no rule matches)'),
  rules: z.array(PolicyRuleSchema).max(POLICY_MAX_RULES, `at most ${POLICY_MAX_RULES} rules`).default([]),
});
export type PolicyDocument = z.infer<typeof PolicyDocument>;
export type PolicyRule = PolicyDocument['rules'][number];
export type Selector = PolicyRule['from'];

/** The signed KV record (`policy.current`, `policy.history.<version>`), signed by the coordinator key. */
export const PolicyRecord = z.strictObject({
  kind: z.literal('policy'),
  v: z.literal(1),
  /** 1, 2, 3 …: each `policy set` takes the current version + 1. */
  version: z.number().int().positive(),
  policy: PolicyDocument,
  /** Who set it (operator text, e.g. user@host) and when (unix ms). */
  setBy: z.string().max(200),
  setAt: z.number().int().nonnegative(),
  /** sha256 of the YAML text applied (to match a file or ConfigMap against what is in force). */
  sourceSha256: z.string().regex(/^[0-9a-f]{64}$/),
});
export type PolicyRecord = z.infer<typeof PolicyRecord>;

/** The port specs of a rule's `to`, parsed (empty: any protocol, any port). */
export function rulePorts(rule: PolicyRule): PortSpec[] {
  return (rule.to.ports ?? []).map((p) => parsePortSpec(p)).filter((p): p is PortSpec => p !== undefined);
}

/** Validates a parsed policy document (YAML text: parsePolicyYaml, protocol/policy/yaml.ts); `source` names the file in errors. Returns a frozen document. */
export function parsePolicyDocument(raw: unknown, source = 'policy'): PolicyDocument {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ValidationError(source, raw, 'must be a mapping with "default: allow|deny" and a "rules" list');
  }
  const parsed = PolicyDocument.safeParse(raw);
  if (!parsed.success) throw zodToValidationError(parsed.error, raw, source);
  // Canonical port texts ("TCP/80" → "tcp/80"), so rendering and display agree.
  const doc: PolicyDocument = {
    default: parsed.data.default,
    rules: parsed.data.rules.map((r) => ({ ...r, to: r.to.ports === undefined ? r.to : { ...r.to, ports: r.to.ports.map((p) => parsePortSpec(p)?.text ?? p) } })),
  };
  return deepFreeze(doc);
}

function zodToValidationError(err: z.ZodError, input: unknown, source: string): ValidationError {
  // An unknown key explains a "missing" one next to it (a typo), so report it first.
  const issue = err.issues.find((i) => i.code === 'unrecognized_keys') ?? err.issues[0];
  const path = issue?.path ?? [];
  const field = path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('') || '(root)';
  let value: unknown = input;
  for (const p of path) value = value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[p] : undefined;
  const allowed = issue?.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}; allowed here: ${allowedKeys(path)}` : (issue?.message ?? 'invalid');
  return new ValidationError(`${source}: ${field}`, value, allowed, { cause: err });
}

function allowedKeys(path: readonly PropertyKey[]): string {
  const last = path.at(-1);
  if (path.length === 0) return 'default, rules';
  if (last === 'from') return 'cluster, cidr';
  if (last === 'to') return 'cluster, cidr, ports';
  return 'from, to, action, description';
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
