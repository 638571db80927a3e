// Wire types (zod schemas) shared by agent, coordinator and CLI. Shape checks only; semantic
// checks (overlaps, reserved ranges, policy) live in protocol/validate-registration.ts.
import * as z from 'zod';
import { EffectiveSettings } from './agent-settings.ts';
import { canonicalCidr, parseEndpoint, parseIp } from './cidr.ts';
import { CoordinatorEpoch } from './coordinator-epoch.ts';

const KEY_BASE64 = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** A 32-byte key in standard base64 (WireGuard keys, Ed25519 public keys). */
export const Key32 = z.string().regex(KEY_BASE64, 'must be a 32-byte key in base64 (44 characters ending in "=")');

/** Kubernetes node names are DNS-1123 subdomains. */
export const NodeName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, 'must be a DNS subdomain: lowercase letters, digits, "-" and "."');

export const ClusterName = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label: lowercase letters, digits and "-"');

export const LocationName = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/, 'must be letters, digits, "-", "_" or "."');

export const EndpointText = z
  .string()
  .refine((s) => parseEndpoint(s) !== undefined, 'must be "ip:port" or "[ipv6]:port" with an IP literal and a port 1-65535');

export const IpText = z.string().refine((s) => parseIp(s) !== undefined, 'must be an IPv4 or IPv6 address');

export const CidrText = z
  .string()
  .refine((s) => canonicalCidr(s) !== undefined, 'must be a CIDR like 10.1.0.0/24 with host bits zero');

export const Topology = z.enum(['mesh', 'gateway']);
export type Topology = z.infer<typeof Topology>;

/**
 * What a node says about itself: sent in a RegistrationRequest, kept as-is in its NodeRecord.
 * One shape for both, so a field added to registration cannot be forgotten in the record.
 */
const nodeDescription = {
  name: NodeName,
  cluster: ClusterName,
  location: LocationName,
  zone: LocationName.optional(),
  /** WireGuard public key (Curve25519). */
  publicKey: Key32,
  /** The node's Ed25519 identity key; it signs registrations and heartbeats. */
  identityKey: Key32,
  /** Advertised public endpoints; empty means "behind NAT, no inbound reachability". */
  endpoints: z.array(EndpointText).max(4),
  /** Addresses reachable from the same VPC/cloud (used for same-cloud paths, e.g. to the gateway). */
  privateAddresses: z.array(IpText).max(4),
  podCidrs: z.array(CidrText).min(1).max(8),
  listenPort: z.number().int().min(1).max(65535),
  topology: Topology,
  gatewayEligible: z.boolean(),
  /** Seconds; 0 disables; undefined lets the agent decide (on when behind NAT). */
  persistentKeepalive: z.number().int().min(0).max(3600).optional(),
  /** The data-plane settings the agent applies (interface, MTU, NAT keepalive, relay ports); absent from older agents. */
  settings: EffectiveSettings.optional(),
};

/** What an agent asks to be registered as. Sent inside a SignedEnvelope signed by `identityKey`. */
export const RegistrationRequest = z
  .object({
    v: z.literal(1),
    ...nodeDescription,
    agentVersion: z.string().max(64),
    /** Sender's clock (ms); the coordinator rejects stale or far-future requests (replay protection). */
    sentAt: z.number().int().nonnegative(),
  })
  .strict();
export type RegistrationRequest = z.infer<typeof RegistrationRequest>;

/** Signed by the node identity key. */
export const Heartbeat = z
  .object({
    v: z.literal(1),
    name: NodeName,
    identityKey: Key32,
    /** Generation of the node record the agent currently holds; lets the coordinator spot stale agents. */
    generation: z.number().int().nonnegative(),
    sentAt: z.number().int().nonnegative(),
    /**
     * The coordinator epoch the agent last learned (protocol/coordinator-epoch.ts); a leader accepts
     * only its own. Absent from agents older than the epoch (accepted with the older replay rules).
     */
    epoch: CoordinatorEpoch.optional(),
  })
  .strict();
export type Heartbeat = z.infer<typeof Heartbeat>;

export const Deregister = z
  .object({ v: z.literal(1), name: NodeName, identityKey: Key32, sentAt: z.number().int().nonnegative() })
  .strict();
export type Deregister = z.infer<typeof Deregister>;

/** The coordinator's view of a node, signed by the coordinator and stored at kvKeys.node(name). */
export const NodeRecord = z
  .object({
    kind: z.literal('node'),
    v: z.literal(1),
    ...nodeDescription,
    /** Allocated by the coordinator from --overlay-cidr; stable per node name. */
    overlayIp: IpText,
    /** Monotonic per node name; agents ignore a record older than one they hold (replay protection). */
    generation: z.number().int().nonnegative(),
    registeredAt: z.number().int().nonnegative(),
    updatedAt: z.number().int().nonnegative(),
  })
  .strict();
export type NodeRecord = z.infer<typeof NodeRecord>;

/** Per-cluster state decided by the coordinator, stored at kvKeys.cluster(name). */
export const ClusterRecord = z
  .object({
    kind: z.literal('cluster'),
    v: z.literal(1),
    name: ClusterName,
    topology: Topology,
    /** Active gateway node name (gateway topology), or null. */
    gateway: NodeName.nullable(),
    /** Increments on every gateway change; lets agents and the CLI see failovers. */
    gatewayEpoch: z.number().int().nonnegative(),
    generation: z.number().int().nonnegative(),
    updatedAt: z.number().int().nonnegative(),
  })
  .strict();
export type ClusterRecord = z.infer<typeof ClusterRecord>;

/**
 * An operator's revocation of a node, signed by the coordinator and stored at kvKeys.revoked(name).
 * While it exists the name may not register or heartbeat, and the recorded keys may not register
 * under any name. `identityKey`/`publicKey` are null when the node was not registered at revocation.
 */
export const Revocation = z
  .object({
    kind: z.literal('revocation'),
    v: z.literal(1),
    name: NodeName,
    identityKey: Key32.nullable(),
    /** The node's WireGuard public key at revocation. */
    publicKey: Key32.nullable(),
    reason: z.string().max(512),
    revokedAt: z.number().int().nonnegative(),
  })
  .strict();
export type Revocation = z.infer<typeof Revocation>;

/**
 * An operator's enrollment of a cluster, signed by the coordinator key and stored at
 * kvKeys.enrollment(name): the pod ranges its nodes may claim, its topology, and the public half of
 * its join credential (every registration into the cluster must be signed with the secret half).
 */
/** The largest per-cluster limit a definition may carry (nodes or service exports). */
export const CLUSTER_LIMIT_MAX = 1_000_000;

export const ClusterDefinition = z
  .object({
    kind: z.literal('cluster-definition'),
    v: z.literal(1),
    name: ClusterName,
    /** Pod CIDRs of the cluster's nodes must lie inside these; pairwise disjoint across clusters. */
    podCidrs: z.array(CidrText).min(1).max(32),
    topology: Topology,
    /** Ranges outside private space (public or CGNAT) were enrolled on purpose (`--allow-public`). */
    allowPublic: z.boolean(),
    /** Ed25519 public key of the cluster's join credential. */
    joinKey: Key32,
    /** Increments on every credential rotation. */
    credentialGeneration: z.number().int().positive(),
    createdAt: z.number().int().nonnegative(),
    updatedAt: z.number().int().nonnegative(),
    /**
     * At most this many live nodes (`cluster add|set --max-nodes`); a registration of a new node
     * beyond it is refused, a live node's re-registration never. Absent: no limit (definitions
     * written before the field existed keep verifying and admitting as before).
     */
    maxNodes: z.number().int().min(1).max(CLUSTER_LIMIT_MAX).optional(),
    /** At most this many service exports of the cluster (`--max-exports`); absent: no limit. */
    maxExports: z.number().int().min(1).max(CLUSTER_LIMIT_MAX).optional(),
  })
  .strict();
export type ClusterDefinition = z.infer<typeof ClusterDefinition>;

const SIG64 = z.string().regex(/^[A-Za-z0-9+/]{86}==$/, 'must be a 64-byte signature in base64');

/** Detached Ed25519 signature over the exact payload bytes (base64 of UTF-8 JSON). */
export const SignedEnvelope = z
  .object({
    payload: z.string().min(1).max(65536),
    sig: SIG64,
  })
  .strict();
export type SignedEnvelope = z.infer<typeof SignedEnvelope>;

/**
 * A heartbeat authenticated by a MAC instead of a signature (protocol/heartbeat-mac.ts): HMAC-SHA256
 * over the exact payload bytes, keyed by the secret the node's identity key and the coordinator key
 * `coordinatorKey` agree on (X25519 of both Ed25519 keys). The payload is the same Heartbeat.
 */
export const MacEnvelope = z
  .object({
    payload: z.string().min(1).max(65536),
    mac: z.string().regex(KEY_BASE64, 'must be a 32-byte MAC in base64 (44 characters ending in "=")'),
    coordinatorKey: Key32,
  })
  .strict();
export type MacEnvelope = z.infer<typeof MacEnvelope>;

/**
 * What agents send: a SignedEnvelope (signed by the node identity key) which, for a registration,
 * also carries `joinSig`: a signature over the same payload bytes by the cluster's join credential.
 */
export const RequestEnvelope = z
  .object({
    payload: z.string().min(1).max(65536),
    sig: SIG64,
    joinSig: SIG64.optional(),
  })
  .strict();
export type RequestEnvelope = z.infer<typeof RequestEnvelope>;

export const ErrorBody = z.object({
  code: z.enum(['invalid', 'conflict', 'unauthorized', 'unavailable', 'internal', 'unknown-node', 'stale', 'rate-limited', 'stale-epoch', 'epoch-required']),
  /** The offending field, dotted (e.g. "podCidrs[1]"). */
  field: z.string().optional(),
  message: z.string(),
  /** Set on refusals because an operator revoked the node (or its keys): the agent stops for good. */
  revoked: z.boolean().optional(),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

export const RegisterReply = z.discriminatedUnion('ok', [
  z.object({
    ok: z.literal(true),
    /** The signed record as stored, so the agent can verify it like any other. */
    record: SignedEnvelope,
    heartbeatIntervalMs: z.number().int().positive(),
    nodeTtlMs: z.number().int().positive(),
    /** The leader's epoch: the agent signs it into its heartbeats. */
    epoch: CoordinatorEpoch.optional(),
  }),
  z.object({ ok: z.literal(false), error: ErrorBody, epoch: CoordinatorEpoch.optional() }),
]);
export type RegisterReply = z.infer<typeof RegisterReply>;

/** `epoch`: the answering leader's epoch (a `stale-epoch` refusal always carries it). */
export const HeartbeatReply = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), epoch: CoordinatorEpoch.optional() }),
  z.object({ ok: z.literal(false), error: ErrorBody, epoch: CoordinatorEpoch.optional() }),
]);
export type HeartbeatReply = z.infer<typeof HeartbeatReply>;

export const DeregisterReply = HeartbeatReply;
export type DeregisterReply = HeartbeatReply;

/** Formats the first zod issue as "field: message (got value)". */
export function describeZodError(err: z.ZodError, input?: unknown): { field: string; message: string } {
  const issue = err.issues[0];
  if (!issue) return { field: '(root)', message: 'invalid' };
  const field = issue.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('') || '(root)';
  let got: unknown = input;
  for (const p of issue.path) {
    if (got !== null && typeof got === 'object') got = (got as Record<PropertyKey, unknown>)[p];
    else got = undefined;
  }
  const shown = got === undefined ? '' : ` (got ${JSON.stringify(got)?.slice(0, 80)})`;
  return { field, message: `${field}: ${issue.message}${shown}` };
}
