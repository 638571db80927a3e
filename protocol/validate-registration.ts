// Edge checks for what agents send the coordinator. `openSignedRequest` turns raw bytes into a
// shape-checked, signature-verified value (`openHeartbeat`: signature or MAC);
// `validateRegistration` is the pure policy check (addresses, overlaps, replay window, identity
// binding). Every rejection names the field and the offending value, and nothing is stored for a
// rejected request.
import type { z } from 'zod';
import {
  bitsOf,
  cidrsOverlap,
  cidrContainsIp,
  formatEndpoint,
  formatIp,
  parseCidr,
  parseEndpoint,
  parseIp,
  type Cidr,
} from './cidr.ts';
import { describeZodError, MacEnvelope, RequestEnvelope, type ErrorBody, type NodeRecord, type RegistrationRequest } from './messages.ts';
import { heartbeatMacMatches } from './heartbeat-mac.ts';
import { oversizedRequest, REQUEST_MAX_BYTES } from './request-size.ts';
import { SignatureError, checkPayloadSignature, decodeEnvelopePayload } from './signing.ts';
import { FORBIDDEN_POD_RANGES, forbiddenOverlap } from './special-purpose.ts';

export type Checked<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ErrorBody };

/** How a heartbeat was authenticated: an HMAC with the agreed key (protocol/heartbeat-mac.ts) or an Ed25519 signature. */
export type HeartbeatForm = 'mac' | 'signed';

/** An opened heartbeat and the form that authenticated it (the coordinator counts them by form). */
export type OpenedHeartbeat<T> = { readonly ok: true; readonly value: T; readonly form: HeartbeatForm } | { readonly ok: false; readonly error: ErrorBody };

/** A verified request and the envelope it came in (the payload bytes a join signature covers). */
export type Opened<T> = { readonly ok: true; readonly value: T; readonly envelope: RequestEnvelope } | { readonly ok: false; readonly error: ErrorBody };

const reject = (code: ErrorBody['code'], field: string, message: string): { ok: false; error: ErrorBody } => ({
  ok: false,
  error: { code, field, message },
});

const show = (v: unknown): string => {
  const s = typeof v === 'string' ? JSON.stringify(v) : (JSON.stringify(v) ?? String(v));
  return s.length > 100 ? `${s.slice(0, 97)}...` : s;
};

/**
 * Parses `raw` as a SignedEnvelope whose payload matches `schema` and is signed by the payload's own
 * `identityKey`. The key is learned from the unverified payload first; the signature then proves the
 * sender holds it. Whether that key may speak for the node name is the caller's (TOFU) decision.
 */
export function openSignedRequest<T extends { identityKey: string }>(
  raw: Uint8Array | string,
  schema: z.ZodType<T>,
): Promise<Opened<T>> {
  try {
    return Promise.resolve(openSignedRequestNow(raw, schema));
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

function openSignedRequestNow<T extends { identityKey: string }>(raw: Uint8Array | string, schema: z.ZodType<T>): Opened<T> {
  const json = parseJson(raw);
  return json.ok ? openSignedJson(json.value, schema) : json;
}

function parseJson(raw: Uint8Array | string): Checked<unknown> {
  const text = typeof raw === 'string' ? raw : Buffer.from(raw).toString('utf8');
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return reject('invalid', '(root)', `message is not JSON (got ${show(text)})`);
  }
}

/** An envelope's payload decoded and parsed with `schema` (the bytes kept: what a signature or MAC covers). */
function openPayload<T>(envelope: { readonly payload: string }, schema: z.ZodType<T>): Checked<{ readonly bytes: Buffer; readonly value: T }> {
  let decoded: ReturnType<typeof decodeEnvelopePayload>;
  try {
    decoded = decodeEnvelopePayload(envelope);
  } catch {
    return reject('invalid', 'payload', `payload is not base64 JSON (got ${show(envelope.payload)})`);
  }
  const parsed = schema.safeParse(decoded.value);
  if (!parsed.success) {
    const d = describeZodError(parsed.error, decoded.value);
    return reject('invalid', d.field, d.message);
  }
  return { ok: true, value: { bytes: decoded.bytes, value: parsed.data } };
}

function openSignedJson<T extends { identityKey: string }>(json: unknown, schema: z.ZodType<T>): Opened<T> {
  const env = RequestEnvelope.safeParse(json);
  if (!env.success) {
    const d = describeZodError(env.error, json);
    return reject('invalid', d.field, `not a signed envelope: ${d.message}`);
  }
  const opened = openPayload(env.data, schema);
  if (!opened.ok) return opened;
  try {
    checkPayloadSignature(opened.value.bytes, env.data.sig, opened.value.value.identityKey);
  } catch (err) {
    if (err instanceof SignatureError) {
      return reject('unauthorized', 'sig', `sig: signature ${show(env.data.sig)} does not verify with identityKey ${show(opened.value.value.identityKey)}`);
    }
    throw err;
  }
  return { ok: true, value: opened.value.value, envelope: env.data };
}

/** The coordinator's side of heartbeat MACs: its current public key, and K per node identity key (HeartbeatMacKeys). */
export interface HeartbeatMacVerifier {
  readonly coordinatorKey: string;
  /** K for the identity key (base64) of a heartbeat naming node `name`, or null when none can be agreed with it. */
  keyFor(identityKey: string, name: string): Buffer | null;
}

/**
 * The largest heartbeat opened, in bytes (protocol/request-size.ts): every replica opens every
 * heartbeat on its event loop, so anything larger is refused before it is parsed.
 */
export const HEARTBEAT_MAX_BYTES = REQUEST_MAX_BYTES.heartbeat;

/**
 * Opens a heartbeat in either form: a SignedEnvelope signed by the payload's `identityKey`
 * (openSignedRequest), or a MacEnvelope (protocol/heartbeat-mac.ts) whose MAC was made with the key
 * that identity key and this coordinator's current key agree on. Either way the value is the same
 * schema-checked payload, and every later check (identity binding, revocation, replay marks, skew,
 * epoch) is the caller's, unchanged. A MAC made for another coordinator key is refused
 * `unauthorized` naming both keys (the agent then falls back to signing).
 */
export function openHeartbeat<T extends { identityKey: string; name: string }>(raw: Uint8Array | string, schema: z.ZodType<T>, mac: HeartbeatMacVerifier): OpenedHeartbeat<T> {
  const oversized = oversizedRequest(raw, 'heartbeat');
  if (oversized) return { ok: false, error: oversized };
  const json = parseJson(raw);
  if (!json.ok) return json;
  const value = json.value;
  if (typeof value !== 'object' || value === null || !('mac' in value)) {
    const signed = openSignedJson(value, schema);
    return signed.ok ? { ok: true, value: signed.value, form: 'signed' } : signed;
  }
  const env = MacEnvelope.safeParse(value);
  if (!env.success) {
    const d = describeZodError(env.error, value);
    return reject('invalid', d.field, `not a MAC envelope: ${d.message}`);
  }
  if (env.data.coordinatorKey !== mac.coordinatorKey) {
    return reject(
      'unauthorized',
      'coordinatorKey',
      `coordinatorKey: the MAC was made for coordinator key ${show(env.data.coordinatorKey)}, but this coordinator's key is ${show(mac.coordinatorKey)}; send a signed heartbeat ({payload, sig}) or register again`,
    );
  }
  const opened = openPayload(env.data, schema);
  if (!opened.ok) return opened;
  const identityKey = opened.value.value.identityKey;
  const key = mac.keyFor(identityKey, opened.value.value.name);
  if (key === null) return reject('unauthorized', 'identityKey', `identityKey: ${show(identityKey)} cannot agree a MAC key (a low-order or malformed point); send a signed heartbeat`);
  if (!heartbeatMacMatches(opened.value.bytes, env.data.mac, key)) {
    return reject('unauthorized', 'mac', `mac: ${show(env.data.mac)} does not authenticate the payload for identityKey ${show(identityKey)} and coordinator key ${show(mac.coordinatorKey)}`);
  }
  return { ok: true, value: opened.value.value, form: 'mac' };
}

/** Replay window: a signed message is only accepted within `maxSkewMs` of the receiver's clock. */
export function checkSentAt(sentAt: number, now: number, maxSkewMs: number): Checked<number> {
  if (Math.abs(now - sentAt) <= maxSkewMs) return { ok: true, value: sentAt };
  const dir = sentAt < now ? 'in the past' : 'in the future';
  return reject(
    'stale',
    'sentAt',
    `sentAt: ${sentAt} is ${Math.abs(now - sentAt)} ms ${dir}; allowed skew is ${maxSkewMs} ms (check the node's clock)`,
  );
}

export interface RegistrationPolicy {
  /** The overlay range; pod CIDRs and endpoints must stay out of it. */
  readonly overlay: Cidr;
  /** Shortest IPv4 pod CIDR prefix accepted (e.g. 16: a /8 is too broad). */
  readonly minPodCidrPrefixV4: number;
  readonly minPodCidrPrefixV6: number;
  readonly maxClockSkewMs: number;
}

export interface RegistrationContext {
  readonly now: number;
  /**
   * Records of live nodes the request could conflict with (the requester's own record may be among
   * them; it is matched by name). Every live node is always correct; passing only the candidates —
   * the own record, nodes with the same WireGuard key, nodes whose pod CIDRs overlap the request's
   * (the coordinator finds them by index) — gives the same answer without a scan of the mesh.
   */
  readonly liveNodes: Iterable<NodeRecord>;
  /** sentAt of the last registration accepted for this name (replay protection within the skew window). */
  readonly lastAcceptedSentAt?: number;
}

/** Ranges that can never be pod CIDRs (RFC 6890 special-purpose space; see special-purpose.ts). */
export const RESERVED_RANGES: readonly Cidr[] = FORBIDDEN_POD_RANGES.map((r) => r.cidr);

function mustCidr(text: string): Cidr {
  const c = parseCidr(text);
  if (!c) throw new Error(`bad built-in CIDR ${text}`);
  return c;
}

/** Unroutable IPv4/IPv6 ranges, parsed once (this runs for every endpoint of every registration). */
const THIS_NETWORK_V4 = mustCidr('0.0.0.0/8');
const LOOPBACK_V4 = mustCidr('127.0.0.0/8');
const LINK_LOCAL_V4 = mustCidr('169.254.0.0/16');
const MULTICAST_V4 = mustCidr('224.0.0.0/4');
const LINK_LOCAL_V6 = mustCidr('fe80::/10');
const MULTICAST_V6 = mustCidr('ff00::/8');

/** Why an address cannot be a peer endpoint or VPC address, or undefined if it can. */
export function unroutableReason(family: 4 | 6, value: bigint): string | undefined {
  const inRange = (c: Cidr): boolean => cidrContainsIp(c, family, value);
  if (family === 4) {
    if (value === 0n) return 'unspecified';
    if (value === 0xffffffffn) return 'broadcast';
    if (inRange(THIS_NETWORK_V4)) return 'in "this network" 0.0.0.0/8';
    if (inRange(LOOPBACK_V4)) return 'loopback';
    if (inRange(LINK_LOCAL_V4)) return 'link-local';
    if (inRange(MULTICAST_V4)) return 'multicast';
    return undefined;
  }
  if (value === 0n) return 'unspecified';
  if (value === 1n) return 'loopback';
  if (inRange(LINK_LOCAL_V6)) return 'link-local';
  if (inRange(MULTICAST_V6)) return 'multicast';
  return undefined;
}

const ZERO_KEY = Buffer.alloc(32).toString('base64');

/**
 * Semantic checks on a signature-verified registration. Returns the request normalised (canonical
 * CIDR/IP/endpoint text, duplicate addresses dropped) or the first problem found.
 */
export function validateRegistration(
  req: RegistrationRequest,
  policy: RegistrationPolicy,
  ctx: RegistrationContext,
): Checked<RegistrationRequest> {
  const skew = checkSentAt(req.sentAt, ctx.now, policy.maxClockSkewMs);
  if (!skew.ok) return skew;
  if (ctx.lastAcceptedSentAt !== undefined && req.sentAt < ctx.lastAcceptedSentAt) {
    return reject(
      'stale',
      'sentAt',
      `sentAt: ${req.sentAt} is older than the last accepted registration of "${req.name}" (${ctx.lastAcceptedSentAt}); replayed request?`,
    );
  }

  const live = [...ctx.liveNodes];
  const others = live.filter((n) => n.name !== req.name);
  const self = live.find((n) => n.name === req.name);

  // TOFU: while a node is live, only its identity key may speak for its name.
  if (self && self.identityKey !== req.identityKey) {
    return reject(
      'unauthorized',
      'identityKey',
      `identityKey: ${show(req.identityKey)} does not match the identity key of live node "${req.name}"; the name is bound to its key until the node expires`,
    );
  }

  if (req.publicKey === ZERO_KEY) return reject('invalid', 'publicKey', `publicKey: ${show(req.publicKey)} is the all-zero key; generate one with wg genkey`);
  if (req.identityKey === ZERO_KEY) return reject('invalid', 'identityKey', `identityKey: ${show(req.identityKey)} is the all-zero key`);
  if (req.publicKey === req.identityKey) {
    return reject('invalid', 'publicKey', `publicKey: ${show(req.publicKey)} equals identityKey; the WireGuard key and the identity key must be different keys`);
  }
  const sameWgKey = others.find((n) => n.publicKey === req.publicKey);
  if (sameWgKey) {
    return reject('conflict', 'publicKey', `publicKey: ${show(req.publicKey)} is already used by live node "${sameWgKey.name}"; every node needs its own WireGuard key`);
  }

  const endpoints: string[] = [];
  for (const [i, text] of req.endpoints.entries()) {
    const ep = parseEndpoint(text);
    if (!ep) return reject('invalid', `endpoints[${i}]`, `endpoints[${i}]: ${show(text)} is not "ip:port"`);
    const ip = parseIp(ep.host);
    const why = ip ? unroutableReason(ip.family, ip.value) : 'not an IP';
    if (why) return reject('invalid', `endpoints[${i}]`, `endpoints[${i}]: ${show(text)} is ${why}; an endpoint must be reachable from other nodes`);
    if (ip && cidrContainsIp(policy.overlay, ip.family, ip.value)) {
      return reject('invalid', `endpoints[${i}]`, `endpoints[${i}]: ${show(text)} is inside the overlay range ${policy.overlay.text}`);
    }
    const canonical = formatEndpoint(ep.host, ep.port);
    if (!endpoints.includes(canonical)) endpoints.push(canonical);
  }

  const privateAddresses: string[] = [];
  for (const [i, text] of req.privateAddresses.entries()) {
    const ip = parseIp(text);
    const why = ip ? unroutableReason(ip.family, ip.value) : 'not an IP';
    if (!ip || why) return reject('invalid', `privateAddresses[${i}]`, `privateAddresses[${i}]: ${show(text)} is ${why ?? 'invalid'}`);
    if (cidrContainsIp(policy.overlay, ip.family, ip.value)) {
      return reject('invalid', `privateAddresses[${i}]`, `privateAddresses[${i}]: ${show(text)} is inside the overlay range ${policy.overlay.text}`);
    }
    const canonical = formatIp(ip.family, ip.value);
    if (!privateAddresses.includes(canonical)) privateAddresses.push(canonical);
  }

  const pods: Cidr[] = [];
  for (const [i, text] of req.podCidrs.entries()) {
    const field = `podCidrs[${i}]`;
    const c = parseCidr(text);
    if (!c) return reject('invalid', field, `${field}: ${show(text)} is not a CIDR with host bits zero`);
    const min = c.family === 4 ? policy.minPodCidrPrefixV4 : policy.minPodCidrPrefixV6;
    if (c.prefix < min) {
      return reject('invalid', field, `${field}: ${show(text)} is too broad; IPv${c.family} pod CIDRs must be /${min} to /${bitsOf(c.family)}`);
    }
    const reserved = forbiddenOverlap(c);
    if (reserved) return reject('invalid', field, `${field}: ${show(text)} overlaps the reserved range ${reserved.cidr.text} (${reserved.what})`);
    if (cidrsOverlap(c, policy.overlay)) {
      return reject('conflict', field, `${field}: ${show(text)} overlaps the overlay range ${policy.overlay.text}`);
    }
    const j = pods.findIndex((p) => cidrsOverlap(p, c));
    if (j >= 0) return reject('invalid', field, `${field}: ${show(text)} overlaps podCidrs[${j}] ${show(pods[j]?.text)} of the same request`);
    for (const n of others) {
      for (const theirs of n.podCidrs) {
        const t = parseCidr(theirs);
        if (t && cidrsOverlap(t, c)) {
          return reject(
            'conflict',
            field,
            `${field}: ${show(text)} overlaps pod CIDR ${show(theirs)} of live node "${n.name}" (cluster "${n.cluster}")`,
          );
        }
      }
    }
    pods.push(c);
  }

  return {
    ok: true,
    value: Object.freeze({
      ...req,
      endpoints,
      privateAddresses,
      // parseCidr's text is already canonical (network address, shortest form).
      podCidrs: pods.map((p) => p.text),
    }),
  };
}
