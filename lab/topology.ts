// The lab's declarative topology: clouds (VPC, edge kind, Crosslink topology), nodes and pods.
// Parsed once from YAML and validated with zod into a frozen value; errors name the field.
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import * as z from 'zod';
import { cidrsOverlap, parseCidr, type Cidr } from '../protocol/cidr.ts';
import { ValidationError, errorMessage } from '../lib/errors.ts';
import { parseDuration } from '../lib/duration.ts';
import { MAX_WG_INDEX } from './names.ts';

const MAX_CLOUDS = 20;
const MAX_NODES_PER_CLOUD = 9;
const MAX_PODS_PER_NODE = 8;

/** Short DNS labels: cloud names end up inside namespace names and node names. */
const CloudName = z
  .string()
  .regex(/^[a-z][a-z0-9]{0,11}$/, 'must be 1-12 lowercase letters or digits, starting with a letter');

const Cidr4 = z.string().refine((s) => parseCidr(s)?.family === 4, 'must be an IPv4 CIDR like 172.16.1.0/24 with host bits zero');

const DURATION_ALLOWED = 'must be a duration with a unit like "5s" or "500ms" (a bare number is refused)';
const DurationText = z
  .string({ error: DURATION_ALLOWED })
  .refine((s) => parseDuration(s) !== undefined, DURATION_ALLOWED);

const NodeSpec = z
  .object({
    /** Default `<cloud>-n<i>`. */
    name: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?$/, 'must be a DNS label of at most 22 characters')
      .optional(),
    pods: z.number().int().min(1).max(MAX_PODS_PER_NODE).default(2),
    /** Default: the agent's default (eligible). */
    gatewayEligible: z.boolean().optional(),
    /** Default 10.<cloud index>.<node index>.0/24. */
    podCidr: Cidr4.optional(),
  })
  .strict();

const CloudSpec = z
  .object({
    name: CloudName,
    /** Crosslink location label; default the cloud name. */
    location: z.string().regex(/^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$/, 'must be letters, digits, "-", "_" or "."').optional(),
    /** public: every node gets a 1:1 public address (elastic IP); nat: a NAT gateway, no inbound reachability. */
    edge: z.enum(['public', 'nat']),
    topology: z.enum(['mesh', 'gateway']).default('mesh'),
    /** Default 172.16.<cloud index>.0/24. */
    vpc: Cidr4.optional(),
    nodes: z.array(NodeSpec).min(1).max(MAX_NODES_PER_CLOUD),
  })
  .strict();

const TopologySpec = z
  .object({
    /** Shared "internet" segment: edges' WAN addresses and the control host. */
    internet: z
      .object({
        cidr: Cidr4.default('203.0.113.0/24'),
        /** Elastic IPs for nodes of public clouds. */
        publicPool: Cidr4.default('198.51.100.0/24'),
      })
      .strict()
      .default({ cidr: '203.0.113.0/24', publicPool: '198.51.100.0/24' }),
    overlayCidr: Cidr4.default('100.96.0.0/16'),
    /** Short timers for a snappy lab. */
    timers: z
      .object({
        nodeTtl: DurationText.default('5s'),
        resyncInterval: DurationText.default('10s'),
        natKeepaliveSec: z.number().int().min(1).max(300).default(5),
      })
      .strict()
      .default({ nodeTtl: '5s', resyncInterval: '10s', natKeepaliveSec: 5 }),
    clouds: z.array(CloudSpec).min(1).max(MAX_CLOUDS),
  })
  .strict();

export type Edge = 'public' | 'nat';

export interface NodeTopology {
  readonly name: string;
  readonly cloud: string;
  readonly pods: number;
  readonly gatewayEligible: boolean | undefined;
  readonly podCidr: string;
}

export interface CloudTopology {
  readonly name: string;
  readonly location: string;
  readonly edge: Edge;
  readonly topology: 'mesh' | 'gateway';
  readonly vpc: string;
  readonly nodes: readonly NodeTopology[];
}

export interface Topology {
  readonly internet: { readonly cidr: string; readonly publicPool: string };
  readonly overlayCidr: string;
  readonly timers: { readonly nodeTtlMs: number; readonly resyncIntervalMs: number; readonly natKeepaliveSec: number };
  readonly clouds: readonly CloudTopology[];
}

/** RFC 5737 documentation ranges: the lab's "public" addresses never collide with real ones. */
const DOCUMENTATION_RANGES = ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'];
const PRIVATE_RANGES = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'];

function within(inner: string, outers: readonly string[]): boolean {
  const c = parseCidr(inner);
  if (!c) return false;
  return outers.some((o) => {
    const oc = parseCidr(o);
    return oc !== undefined && oc.prefix <= c.prefix && cidrsOverlap(oc, c);
  });
}

/** Parses and validates topology YAML. `source` names the file in error messages. */
export function parseTopology(yamlText: string, source = 'topology'): Topology {
  let raw: unknown;
  try {
    raw = parseYaml(yamlText);
  } catch (err) {
    throw new ValidationError(source, '(YAML)', `must be valid YAML: ${errorMessage(err)}`, { cause: err });
  }
  const parsed = TopologySpec.safeParse(raw);
  if (!parsed.success) throw zodToValidationError(parsed.error, raw, source);
  const spec = parsed.data;

  const clouds: CloudTopology[] = spec.clouds.map((c, ci) => ({
    name: c.name,
    location: c.location ?? c.name,
    edge: c.edge,
    topology: c.topology,
    vpc: c.vpc ?? `172.16.${ci + 1}.0/24`,
    nodes: c.nodes.map((n, ni) => ({
      name: n.name ?? `${c.name}-n${ni + 1}`,
      cloud: c.name,
      pods: n.pods,
      gatewayEligible: n.gatewayEligible,
      podCidr: n.podCidr ?? `10.${ci + 1}.${ni + 1}.0/24`,
    })),
  }));
  const topology: Topology = {
    internet: spec.internet,
    overlayCidr: spec.overlayCidr,
    timers: {
      nodeTtlMs: parseDuration(spec.timers.nodeTtl) ?? 5000,
      resyncIntervalMs: parseDuration(spec.timers.resyncInterval) ?? 10_000,
      natKeepaliveSec: spec.timers.natKeepaliveSec,
    },
    clouds,
  };
  checkSemantics(topology, source);
  return deepFreeze(topology);
}

export async function loadTopology(file: string): Promise<Topology> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ValidationError('--topology', file, `must be a readable YAML file (${errorMessage(err)})`, { cause: err });
  }
  return parseTopology(text, file);
}

function checkSemantics(t: Topology, source: string): void {
  const fail = (field: string, value: unknown, allowed: string): never => {
    throw new ValidationError(`${source}: ${field}`, value, allowed);
  };
  if (!within(t.internet.cidr, DOCUMENTATION_RANGES)) {
    fail('internet.cidr', t.internet.cidr, `must lie in a documentation range (${DOCUMENTATION_RANGES.join(', ')})`);
  }
  if (!within(t.internet.publicPool, DOCUMENTATION_RANGES)) {
    fail('internet.publicPool', t.internet.publicPool, `must lie in a documentation range (${DOCUMENTATION_RANGES.join(', ')})`);
  }
  const cloudNames = new Set<string>();
  const nodeNames = new Set<string>();
  // Every range the lab routes must be distinct, or a route would shadow another.
  const ranges: { field: string; cidr: Cidr }[] = [];
  const claim = (field: string, text: string): void => {
    const c = parseCidr(text);
    if (!c) return fail(field, text, 'must be a CIDR');
    const clash = ranges.find((r) => cidrsOverlap(r.cidr, c));
    if (clash) fail(field, text, `must not overlap ${clash.field} (${clash.cidr.text})`);
    ranges.push({ field, cidr: c });
  };
  claim('internet.cidr', t.internet.cidr);
  claim('internet.publicPool', t.internet.publicPool);
  claim('overlayCidr', t.overlayCidr);
  let totalNodes = 0;
  t.clouds.forEach((c, ci) => {
    if (cloudNames.has(c.name)) fail(`clouds[${ci}].name`, c.name, 'cloud names must be unique');
    cloudNames.add(c.name);
    if (!within(c.vpc, PRIVATE_RANGES)) fail(`clouds[${ci}].vpc`, c.vpc, `must lie in a private range (${PRIVATE_RANGES.join(', ')})`);
    const vpc = parseCidr(c.vpc);
    if (vpc && vpc.prefix > 28) fail(`clouds[${ci}].vpc`, c.vpc, 'must be /28 or larger');
    claim(`clouds[${ci}].vpc`, c.vpc);
    if (c.topology === 'gateway' && !c.nodes.some((n) => n.gatewayEligible !== false)) {
      fail(`clouds[${ci}].nodes`, c.nodes.length, 'a gateway-topology cloud needs at least one gatewayEligible node');
    }
    c.nodes.forEach((n, ni) => {
      if (nodeNames.has(n.name)) fail(`clouds[${ci}].nodes[${ni}].name`, n.name, 'node names must be unique across the lab');
      nodeNames.add(n.name);
      if (!within(n.podCidr, PRIVATE_RANGES)) fail(`clouds[${ci}].nodes[${ni}].podCidr`, n.podCidr, 'must lie in a private range');
      const pc = parseCidr(n.podCidr);
      if (pc && pc.prefix > 28) fail(`clouds[${ci}].nodes[${ni}].podCidr`, n.podCidr, 'must be /28 or larger');
      claim(`clouds[${ci}].nodes[${ni}].podCidr`, n.podCidr);
      totalNodes++;
    });
  });
  if (totalNodes > MAX_WG_INDEX) fail('clouds', totalNodes, `at most ${MAX_WG_INDEX} nodes in a lab`);
  // Readable addresses: node i of cloud k gets public host 10k+i, edge k gets internet host 10+k.
  for (const field of ['cidr', 'publicPool'] as const) {
    const c = parseCidr(t.internet[field]);
    if (c && c.prefix > 24) fail(`internet.${field}`, t.internet[field], 'must be /24 or larger');
  }
}

function zodToValidationError(err: z.ZodError, input: unknown, source: string): ValidationError {
  const issue = err.issues[0];
  const path = issue?.path ?? [];
  const field = path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('') || '(root)';
  let value: unknown = input;
  for (const p of path) value = value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[p] : undefined;
  const allowed = issue?.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}` : (issue?.message ?? 'invalid');
  return new ValidationError(`${source}: ${field}`, value, allowed, { cause: err });
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
