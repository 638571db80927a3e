// Coordinator configuration: one table of flags (with env equivalents and help), parsed once with zod
// into a frozen typed config. Errors name the flag (or env variable), the value and what is allowed.
import * as z from 'zod';
import { ValidationError } from '../lib/errors.ts';
import { checkDuration, formatDuration } from '../lib/duration.ts';
import { labelOf, parseBool, type FlagSpec } from '../lib/flags.ts';
import { parseNatsServers } from '../lib/nats-url.ts';
import { NATS_AUTH_FLAGS, describeNats, natsSettingsFrom, type NatsSettings } from '../lib/nats-connect.ts';
import { parseCidr, type Cidr } from '../protocol/cidr.ts';
import { parseListenAddr, type HostPort } from '../protocol/listen-addr.ts';
import { Key32 } from '../protocol/messages.ts';
import { DEFAULT_BUCKET, DEFAULT_SUBJECT_PREFIX } from '../protocol/subjects.ts';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface CoordinatorConfig {
  readonly natsServers: readonly string[];
  /** Path of a NATS .creds file, or null for no credentials. */
  readonly natsCreds: string | null;
  /** Everything the NATS connect needs (servers without credentials, auth, TLS): lib/nats-connect.ts. */
  readonly nats: NatsSettings;
  readonly overlayCidr: Cidr;
  readonly nodeTtlMs: number;
  readonly signingKeyFile: string;
  readonly bucket: string;
  readonly replicas: number;
  readonly subjectPrefix: string;
  readonly minPodCidrPrefixV4: number;
  readonly minPodCidrPrefixV6: number;
  readonly maxClockSkewMs: number;
  readonly leaseTtlMs: number;
  /** HTTP /healthz /readyz /metrics listener; null when off. */
  readonly healthAddr: HostPort | null;
  readonly logLevel: LogLevel;
  /** Previous public keys of ours (signing-key rotation): records they signed are trusted and re-signed. */
  readonly previousPublicKeys: readonly string[];
  /** Admitted registrations per second and cluster (token bucket refill), and the bucket size. */
  readonly registrationRate: number;
  readonly registrationBurst: number;
  /** A node that registered but never heartbeated loses its name binding and address after this. */
  readonly unusedAllocationGraceMs: number;
  /** Heartbeats without a coordinator epoch (agents older than the epoch) are refused `epoch-required` (coordinator/heartbeat-epoch.ts). */
  readonly requireHeartbeatEpoch: boolean;
}

/** Raw option values as commander hands them over (strings), keyed by commander's camelCase names. */
export interface RawRunOptions {
  natsUrl: string;
  natsCreds?: string | undefined;
  natsUser?: string | undefined;
  natsPassword?: string | undefined;
  natsPasswordFile?: string | undefined;
  natsNkeyFile?: string | undefined;
  natsTlsCa?: string | undefined;
  natsTlsCert?: string | undefined;
  natsTlsKey?: string | undefined;
  overlayCidr: string;
  nodeTtl: string;
  signingKeyFile: string;
  bucket: string;
  replicas: string;
  subjectPrefix: string;
  minPodCidrPrefix: string;
  minPodCidrPrefixV6: string;
  maxClockSkew: string;
  leaseTtl: string;
  healthAddr: string;
  logLevel: string;
  previousPublicKey?: string | readonly string[] | undefined;
  registrationRate: string;
  registrationBurst: string;
  unusedAllocationGrace: string;
  /** 'on'/'off' (true/false, yes/no, 1/0); a bare --require-heartbeat-epoch gives true. */
  requireHeartbeatEpoch: string | boolean;
}

/** The shared flag spec (lib/flags.ts); every coordinator flag has a CROSSLINK_* variable. */
export type RunFlagSpec = FlagSpec<keyof RawRunOptions> & { readonly env: string };

export const DEFAULT_SIGNING_KEY_FILE = '/var/lib/crosslink/coordinator.key';

export const RUN_FLAGS: readonly RunFlagSpec[] = [
  { key: 'natsUrl', flags: '--nats-url <urls>', env: 'CROSSLINK_NATS_URL', default: 'nats://127.0.0.1:4222', help: 'NATS servers, comma-separated (nats://host:port or tls://host:port)' },
  { key: 'natsCreds', flags: '--nats-creds <file>', env: 'CROSSLINK_NATS_CREDS', help: 'NATS credentials (.creds) file' },
  ...NATS_AUTH_FLAGS,
  { key: 'overlayCidr', flags: '--overlay-cidr <cidr>', env: 'CROSSLINK_OVERLAY_CIDR', default: '100.96.0.0/16', help: 'overlay range node IPs are allocated from (IPv4 up to /30 or IPv6 up to /126)' },
  { key: 'nodeTtl', flags: '--node-ttl <duration>', env: 'CROSSLINK_NODE_TTL', default: '60s', help: 'a node silent this long is removed (e.g. 1500ms, 10s, 1m; a unit is required; 1s-1h); agents heartbeat every ttl/4' },
  { key: 'signingKeyFile', flags: '--signing-key-file <file>', env: 'CROSSLINK_SIGNING_KEY_FILE', default: DEFAULT_SIGNING_KEY_FILE, help: 'Ed25519 key that signs records; created (mode 0600) if missing; refused if group/world readable' },
  { key: 'bucket', flags: '--bucket <name>', env: 'CROSSLINK_BUCKET', default: DEFAULT_BUCKET, help: 'JetStream KV bucket holding all state' },
  { key: 'replicas', flags: '--replicas <n>', env: 'CROSSLINK_REPLICAS', default: '1', help: 'bucket replicas when creating it (1-5; 3 for a 3-server NATS cluster)' },
  { key: 'subjectPrefix', flags: '--subject-prefix <prefix>', env: 'CROSSLINK_SUBJECT_PREFIX', default: DEFAULT_SUBJECT_PREFIX, help: 'NATS subject prefix for register/heartbeat/deregister' },
  { key: 'minPodCidrPrefix', flags: '--min-pod-cidr-prefix <n>', env: 'CROSSLINK_MIN_POD_CIDR_PREFIX', default: '16', help: 'shortest IPv4 pod CIDR prefix accepted (0-32)' },
  { key: 'minPodCidrPrefixV6', flags: '--min-pod-cidr-prefix-v6 <n>', env: 'CROSSLINK_MIN_POD_CIDR_PREFIX_V6', default: '48', help: 'shortest IPv6 pod CIDR prefix accepted (0-128)' },
  { key: 'maxClockSkew', flags: '--max-clock-skew <duration>', env: 'CROSSLINK_MAX_CLOCK_SKEW', default: '5m', help: 'signed requests older or newer than this are refused (replay protection; 1s-1h)' },
  { key: 'leaseTtl', flags: '--lease-ttl <duration>', env: 'CROSSLINK_LEASE_TTL', default: '3s', help: 'leader lease; a follower takes over after the lease goes unrenewed this long (1s-1h)' },
  { key: 'healthAddr', flags: '--health-addr <host:port>', env: 'CROSSLINK_HEALTH_ADDR', default: 'off', help: 'HTTP /healthz /readyz /metrics listener (e.g. 0.0.0.0:9472; "off" disables)' },
  { key: 'logLevel', flags: '--log-level <level>', env: 'CROSSLINK_LOG_LEVEL', default: 'info', help: `log level (${LOG_LEVELS.join(', ')})` },
  {
    key: 'previousPublicKey',
    flags: '--previous-public-key <key>',
    env: 'CROSSLINK_PREVIOUS_PUBLIC_KEY',
    repeatable: true,
    help: 'a previous signing public key (base64) still trusted during a signing-key rotation; its records are re-signed with the current key; repeatable or comma-separated',
  },
  { key: 'registrationRate', flags: '--registration-rate <n>', env: 'CROSSLINK_REGISTRATION_RATE', default: '50', help: 'admitted registrations per second and cluster (1-100000); more are answered "rate-limited"' },
  { key: 'registrationBurst', flags: '--registration-burst <n>', env: 'CROSSLINK_REGISTRATION_BURST', default: '500', help: 'registrations a cluster may make at once before --registration-rate applies (1-1000000)' },
  {
    key: 'unusedAllocationGrace',
    flags: '--unused-allocation-grace <duration>',
    env: 'CROSSLINK_UNUSED_ALLOCATION_GRACE',
    default: '10m',
    help: 'a node that registered but never heartbeated loses its name binding and overlay address this long after registering (1s-720h)',
  },
  {
    key: 'requireHeartbeatEpoch',
    flags: '--require-heartbeat-epoch [on|off]',
    env: 'CROSSLINK_REQUIRE_HEARTBEAT_EPOCH',
    default: 'on',
    help: 'refuse heartbeats that carry no coordinator epoch (reply code epoch-required): a captured heartbeat of an agent older than the epoch cannot be replayed; "off" only while upgrading such agents (docs/coordinator.md)',
  },
];

type Ctx = z.RefinementCtx;
const fail = (ctx: Ctx, allowed: string): never => {
  ctx.addIssue({ code: 'custom', message: allowed });
  return z.NEVER;
};

// A duration needs a unit; a bare number is refused with the readings it could have had (lib/duration.ts).
const duration = (minMs: number, maxMs: number) =>
  z.string().transform((s, ctx) => {
    const c = checkDuration(s, { minMs, maxMs });
    return 'allowed' in c ? fail(ctx, c.allowed) : c.ms;
  });

const intIn = (lo: number, hi: number) =>
  z.string().transform((s, ctx) => {
    const n = /^[0-9]+$/.test(s.trim()) ? Number(s.trim()) : NaN;
    return Number.isInteger(n) && n >= lo && n <= hi ? n : fail(ctx, `use an integer from ${lo} to ${hi}`);
  });

const RunSchema = z.object({
  natsUrl: z.string().transform((s, ctx) => parseNatsServers(s) ?? fail(ctx, 'use a comma-separated list like nats://nats-0:4222,nats://nats-1:4222')),
  natsCreds: z
    .string()
    .optional()
    .transform((s, ctx) => (s === undefined ? null : s.trim() === '' ? fail(ctx, 'use the path of a NATS .creds file') : s)),
  overlayCidr: z.string().transform((s, ctx) => {
    const c = parseCidr(s.trim());
    if (!c) return fail(ctx, 'use a CIDR with host bits zero, like 100.96.0.0/16 or fd7a:115c:a1e0::/48');
    if (c.prefix > (c.family === 4 ? 30 : 126)) return fail(ctx, `the range must hold at least 2 nodes: IPv4 up to /30, IPv6 up to /126`);
    return c;
  }),
  nodeTtl: duration(1000, 3_600_000),
  signingKeyFile: z.string().transform((s, ctx) => (s.trim() === '' ? fail(ctx, 'use a file path') : s)),
  bucket: z.string().transform((s, ctx) => (/^[A-Za-z0-9_-]+$/.test(s) ? s : fail(ctx, 'use letters, digits, "-" and "_"'))),
  replicas: intIn(1, 5),
  subjectPrefix: z
    .string()
    .transform((s, ctx) => (/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(s) ? s : fail(ctx, 'use dot-separated tokens of letters, digits, "-" and "_" (no wildcards)'))),
  minPodCidrPrefix: intIn(0, 32),
  minPodCidrPrefixV6: intIn(0, 128),
  maxClockSkew: duration(1000, 3_600_000),
  leaseTtl: duration(1000, 3_600_000),
  healthAddr: z.string().transform((s, ctx) => {
    try {
      return parseListenAddr('healthAddr', s.trim());
    } catch (err) {
      return fail(ctx, err instanceof ValidationError ? err.allowed : String(err));
    }
  }),
  logLevel: z.string().transform((s, ctx) => ((LOG_LEVELS as readonly string[]).includes(s) ? (s as LogLevel) : fail(ctx, `use one of ${LOG_LEVELS.join(', ')}`))),
  previousPublicKey: z
    .union([z.string(), z.array(z.string())])
    .optional()
    .transform((v, ctx) => {
      const keys = (v === undefined ? [] : typeof v === 'string' ? [v] : v).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '');
      const bad = keys.find((k) => !Key32.safeParse(k).success);
      return bad === undefined ? keys : fail(ctx, `${JSON.stringify(bad)} is not a public key: use the 32-byte base64 key \`crosslink-coordinator public-key\` printed for the old key file`);
    }),
  registrationRate: intIn(1, 100_000),
  registrationBurst: intIn(1, 1_000_000),
  unusedAllocationGrace: duration(1000, 30 * 86_400_000),
  requireHeartbeatEpoch: z.union([z.string(), z.boolean()]).transform((v, ctx) => (typeof v === 'boolean' ? v : (parseBool(v) ?? fail(ctx, 'use on or off (also true/false, yes/no, 1/0)')))),
});

/** Where a value came from, to name it in errors ("--node-ttl" or "CROSSLINK_NODE_TTL (--node-ttl)"). */
export type ValueSource = (key: keyof RawRunOptions) => 'cli' | 'env' | 'default' | undefined;

/** Defaults for every flag that has one. */
export function defaultRunOptions(): RawRunOptions {
  const out: Record<string, string> = {};
  for (const f of RUN_FLAGS) if (f.default !== undefined) out[f.key] = f.default;
  return out as unknown as RawRunOptions;
}

/**
 * Validates raw flag values (missing ones take their defaults) into a frozen config.
 * Throws ValidationError naming the first bad flag.
 */
export function parseCoordinatorConfig(raw: Partial<RawRunOptions>, sourceOf?: ValueSource): CoordinatorConfig {
  const input = { ...defaultRunOptions(), ...stripUndefined(raw) };
  const parsed = RunSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = (issue?.path[0] ?? 'natsUrl') as keyof RawRunOptions;
    const spec = RUN_FLAGS.find((f) => f.key === key);
    const label = spec ? labelOf(spec, sourceOf?.(key) === 'env' ? 'env' : 'cli') : key;
    throw new ValidationError(label, input[key], issue?.message ?? 'invalid', { cause: parsed.error });
  }
  const d = parsed.data;
  const label = (key: keyof RawRunOptions): string => {
    const spec = RUN_FLAGS.find((f) => f.key === key);
    return spec ? labelOf(spec, sourceOf?.(key) === 'env' ? 'env' : 'cli') : key;
  };
  const nats = natsSettingsFrom({ ...input, urls: d.natsUrl, creds: d.natsCreds ?? undefined }, (key) => label(key === 'creds' ? 'natsCreds' : key), label('natsUrl'));
  return Object.freeze({
    natsServers: Object.freeze(d.natsUrl),
    natsCreds: d.natsCreds,
    nats,
    overlayCidr: Object.freeze(d.overlayCidr),
    nodeTtlMs: d.nodeTtl,
    signingKeyFile: d.signingKeyFile,
    bucket: d.bucket,
    replicas: d.replicas,
    subjectPrefix: d.subjectPrefix,
    minPodCidrPrefixV4: d.minPodCidrPrefix,
    minPodCidrPrefixV6: d.minPodCidrPrefixV6,
    maxClockSkewMs: d.maxClockSkew,
    leaseTtlMs: d.leaseTtl,
    healthAddr: d.healthAddr === null ? null : Object.freeze(d.healthAddr),
    logLevel: d.logLevel,
    previousPublicKeys: Object.freeze(d.previousPublicKey),
    registrationRate: d.registrationRate,
    registrationBurst: d.registrationBurst,
    unusedAllocationGraceMs: d.unusedAllocationGrace,
    requireHeartbeatEpoch: d.requireHeartbeatEpoch,
  });
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Refused requests (registrations, heartbeats, deregistrations, service exports) are logged at info
 * once per this interval per kind and code; the repeats at debug, counted in the next line
 * (lib/rate-limited-log.ts). Anyone with an agent NATS user can make the coordinator refuse at will.
 */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;

/** Agents heartbeat at a quarter of the TTL, so three lost heartbeats are survivable. */
export function heartbeatIntervalMs(config: Pick<CoordinatorConfig, 'nodeTtlMs'>): number {
  return Math.max(200, Math.floor(config.nodeTtlMs / 4));
}

/** How often the leader looks for expired nodes; bounds failover at node TTL + this. */
export function expiryCheckIntervalMs(config: Pick<CoordinatorConfig, 'nodeTtlMs'>): number {
  return Math.max(100, Math.floor(config.nodeTtlMs / 10));
}

/** Human summary for the start-up log line. */
export function describeConfig(c: CoordinatorConfig): Record<string, unknown> {
  return {
    // Never the URLs as given: they may carry user:password@.
    nats: describeNats(c.nats),
    overlayCidr: c.overlayCidr.text,
    nodeTtl: formatDuration(c.nodeTtlMs),
    bucket: c.bucket,
    replicas: c.replicas,
    subjectPrefix: c.subjectPrefix,
    minPodCidrPrefix: { v4: c.minPodCidrPrefixV4, v6: c.minPodCidrPrefixV6 },
    maxClockSkew: formatDuration(c.maxClockSkewMs),
    leaseTtl: formatDuration(c.leaseTtlMs),
    healthAddr: c.healthAddr === null ? 'off' : `${c.healthAddr.host}:${c.healthAddr.port}`,
    previousPublicKeys: c.previousPublicKeys,
    registrationLimit: { perSecond: c.registrationRate, burst: c.registrationBurst },
    unusedAllocationGrace: formatDuration(c.unusedAllocationGraceMs),
    requireHeartbeatEpoch: c.requireHeartbeatEpoch,
  };
}
