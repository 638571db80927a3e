// Heartbeats authenticated by a MAC instead of an Ed25519 signature: an asymmetric key agreement
// once per (node, coordinator key), then HMAC-SHA256 on the hot path — WireGuard's split of an
// asymmetric handshake and symmetric transport. Verifying a signature cost the coordinator ~80 µs of
// a 100–130 µs heartbeat (docs/benchmarks.md, round 23); an HMAC over ~200 bytes costs ~2 µs.
//
// The key agreement is static–static and sends nothing secret: both Ed25519 keys (the node's
// identity key, the coordinator's signing key) are converted to X25519 the way libsodium's
// crypto_sign_ed25519_{pk,sk}_to_curve25519 do, and
//   K = HKDF-SHA256(ikm = X25519(own scalar, peer u), salt = "crosslink heartbeat mac v1",
//                   info = node identity key (32 raw bytes) ‖ coordinator public key (32 raw bytes)).
// Only the node (its seed) and the coordinator (its seed) can compute K. docs/coordinator.md has the
// threat analysis.
import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { CrosslinkError } from '../lib/errors.ts';
import { setBounded } from '../lib/bounded-map.ts';
import type { ErrorBody, Heartbeat, MacEnvelope } from './messages.ts';
import type { HeartbeatAuth } from './status.ts';
import { signEnvelopeNow, x25519SharedSecret, type SigningKeyPair } from './signing.ts';

export class HeartbeatMacError extends CrosslinkError {
  override name = 'HeartbeatMacError';
}

const P = 2n ** 255n - 19n;
const SALT = Buffer.from('crosslink heartbeat mac v1', 'utf8');
/** Bytes of a MAC (HMAC-SHA256) and of a MAC key. */
export const MAC_BYTES = 32;

/** a⁻¹ mod P (extended Euclid: ~20 µs with BigInt, against ~150 µs for a^(P−2)). a ≠ 0 mod P. */
function invert(a: bigint): bigint {
  let [r0, r1] = [P, ((a % P) + P) % P];
  let [s0, s1] = [0n, 1n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return ((s0 % P) + P) % P;
}

function littleEndian(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i] ?? 0);
  return n;
}

function toLittleEndian32(n: bigint): Buffer {
  const out = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

/**
 * An Ed25519 public key (32 bytes, Edwards y little-endian, the top bit the sign of x) → the X25519
 * u-coordinate of the same point, u = (1 + y) / (1 − y) mod 2^255 − 19 (libsodium's
 * crypto_sign_ed25519_pk_to_curve25519). Throws HeartbeatMacError for a y that is not canonical
 * (≥ p) or is 1 (the neutral point, which has no u).
 */
export function edwardsToMontgomery(edPublic: Uint8Array): Buffer {
  if (edPublic.length !== 32) throw new HeartbeatMacError(`an Ed25519 public key is 32 bytes, not ${edPublic.length}`);
  const y = littleEndian(edPublic) & ((1n << 255n) - 1n);
  if (y >= P) throw new HeartbeatMacError('Ed25519 public key is not canonical (y ≥ 2^255 − 19)');
  if (y === 1n) throw new HeartbeatMacError('Ed25519 public key is the neutral point');
  return toLittleEndian32(((1n + y) * invert(1n - y)) % P);
}

/** An Ed25519 secret key (base64, seed ‖ public key) → its X25519 scalar: the first 32 bytes of SHA-512(seed), unclamped (X25519 clamps). */
export function montgomeryScalar(secretKey: string): Buffer {
  const sk = Buffer.from(secretKey, 'base64');
  if (sk.length !== 64) throw new HeartbeatMacError('an Ed25519 secret key is 64 bytes (seed ‖ public key)');
  return createHash('sha512').update(sk.subarray(0, 32)).digest().subarray(0, 32);
}

/**
 * K for heartbeats of node `nodeKey` to coordinator `coordinatorKey` (both base64 Ed25519 public
 * keys), from one side's secret key and the other side's public key. Throws HeartbeatMacError when no
 * secret can be agreed (a low-order or malformed public key).
 */
function agree(ownSecretKey: string, peerPublicKey: string, nodeKey: string, coordinatorKey: string): Buffer {
  const node = Buffer.from(nodeKey, 'base64');
  const coordinator = Buffer.from(coordinatorKey, 'base64');
  if (node.length !== 32 || coordinator.length !== 32) throw new HeartbeatMacError('heartbeat MAC keys are agreed between two 32-byte public keys');
  let shared: Buffer;
  try {
    shared = x25519SharedSecret(montgomeryScalar(ownSecretKey), edwardsToMontgomery(Buffer.from(peerPublicKey, 'base64')));
  } catch (err) {
    if (err instanceof HeartbeatMacError) throw err;
    throw new HeartbeatMacError(`no heartbeat MAC key can be agreed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return Buffer.from(hkdfSync('sha256', shared, SALT, Buffer.concat([node, coordinator]), MAC_BYTES));
}

/** The node's side: K from its identity key pair and the coordinator's public key (base64). */
export function nodeHeartbeatMacKey(identity: SigningKeyPair, coordinatorKey: string): Buffer {
  return agree(identity.secretKey, coordinatorKey, identity.publicKey, coordinatorKey);
}

/** The coordinator's side: K from its signing key pair and the node's identity key (base64). */
export function coordinatorHeartbeatMacKey(coordinator: SigningKeyPair, identityKey: string): Buffer {
  return agree(coordinator.secretKey, identityKey, identityKey, coordinator.publicKey);
}

/** HMAC-SHA256 of the exact payload bytes under K. */
export function macHeartbeat(payload: Uint8Array, key: Uint8Array): Buffer {
  return createHmac('sha256', key).update(payload).digest();
}

/** Does the base64 `mac` authenticate `payload` under K? Constant time in the MAC's bytes. */
export function heartbeatMacMatches(payload: Uint8Array, mac: string, key: Uint8Array): boolean {
  const given = Buffer.from(mac, 'base64');
  if (given.length !== MAC_BYTES) return false;
  return timingSafeEqual(given, macHeartbeat(payload, key));
}

/** What a node holds to MAC its heartbeats: K and the coordinator key it was agreed with. */
export interface HeartbeatMac {
  readonly coordinatorKey: string;
  readonly key: Buffer;
}

/** A heartbeat in a MacEnvelope: the payload is the heartbeat's JSON, as in a signed envelope. */
export function macEnvelope(heartbeat: Heartbeat, mac: HeartbeatMac): MacEnvelope {
  const payload = Buffer.from(JSON.stringify(heartbeat), 'utf8');
  return { payload: payload.toString('base64'), mac: macHeartbeat(payload, mac.key).toString('base64'), coordinatorKey: mac.coordinatorKey };
}

/**
 * The request body of a heartbeat, as every agent sends it (the real one and the bench's): a
 * MacEnvelope given a MAC key, else (none agreed yet, or fallen back: `macRefused`) an envelope
 * signed by the identity key. Throws SignatureError for a bad identity key.
 */
export function heartbeatBody(heartbeat: Heartbeat, identity: SigningKeyPair, mac: HeartbeatMac | undefined): string {
  return JSON.stringify(mac === undefined ? signEnvelopeNow(heartbeat, identity.secretKey) : macEnvelope(heartbeat, mac));
}

/**
 * Whether a refusal of a MAC heartbeat means "send signed ones instead": `invalid` (a coordinator
 * older than the MAC form refuses its shape) or `unauthorized` (a coordinator whose key rotated, or a
 * MAC it cannot check). The agent falls back until its next registration and sends again at once.
 */
export function macRefused(error: ErrorBody): boolean {
  return error.revoked !== true && (error.code === 'invalid' || error.code === 'unauthorized');
}

/**
 * An agent's side of heartbeat MACs across registrations — the real agent's control plane and the
 * bench's simulated agents keep the same state: K agreed once per coordinator key at a registration
 * (the key that verified the reply's record); a MAC heartbeat refused `invalid`/`unauthorized`
 * (macRefused) means signed heartbeats until the next registration.
 */
export class HeartbeatMacSession {
  private agreed: HeartbeatMac | undefined;
  private refusal: HeartbeatAuth['fallback'] = null;

  constructor(private readonly identity: SigningKeyPair) {}

  /**
   * A registration was answered, its record signed by `coordinatorKey` (undefined: sign heartbeats):
   * MACs from now on, a fallback ended. Throws HeartbeatMacError when no K can be agreed with that
   * key (heartbeats are then signed).
   */
  registered(coordinatorKey: string | undefined): void {
    this.refusal = null;
    if (this.agreed?.coordinatorKey === coordinatorKey) return;
    this.agreed = undefined;
    if (coordinatorKey !== undefined) this.agreed = { coordinatorKey, key: nodeHeartbeatMacKey(this.identity, coordinatorKey) };
  }

  /** What the next heartbeat is MAC'd with; undefined: it is signed. */
  get current(): HeartbeatMac | undefined {
    return this.refusal === null ? this.agreed : undefined;
  }

  /** A heartbeat made with `mac` was refused with `error`: true when that ends MACs until the next registration (send a signed one at once). */
  refused(mac: HeartbeatMac | undefined, error: ErrorBody): boolean {
    if (mac === undefined || !macRefused(error)) return false;
    this.refusal = { code: error.code, message: error.message };
    return true;
  }

  /** How heartbeats are authenticated now, for the agent's status. */
  auth(): HeartbeatAuth {
    const mac = this.current;
    return mac !== undefined ? { form: 'mac', coordinatorKey: mac.coordinatorKey, fallback: null } : { form: 'signed', coordinatorKey: null, fallback: this.refusal };
  }
}

/** Whose identity key a MAC key was agreed for: a node's, as far as the replica knows, or a key it does not know. */
export type MacKeyKind = 'node' | 'unknown';

export interface HeartbeatMacKeysOptions {
  /** How many K of nodes' identity keys are kept (the oldest goes first); default 20,000. */
  readonly max?: number;
  /** How many K of identity keys this replica does not know are kept, apart (the oldest goes first); default 1,024. */
  readonly unknownMax?: number;
  /**
   * Whether `identityKey` is the identity key of node `name` as far as this replica knows (the
   * leader: its node records; a follower: its warm copy of the bucket). One lookup, no scan; called
   * only when K is not kept for a node. Default: it knows no node (every key is kept apart, bounded).
   */
  readonly knows?: (name: string, identityKey: string) => boolean;
  /** Each key agreement (~0.1–0.2 ms), by whose key it was agreed for (the coordinator counts them). */
  readonly onAgreed?: (kind: MacKeyKind) => void;
}

/**
 * The coordinator's MAC keys by node identity key: agreed once per node (~0.1 ms), not per
 * heartbeat. K is kept in two bounded tables (the oldest entry of each goes first): one for identity
 * keys the replica knows belong to the node the heartbeat names (`knows`), one for any other key.
 * Anyone who may publish heartbeats can make key pairs and valid MACs for them; each made-up key
 * costs one agreement (as a signature check would) and lands in the second table, so a flood never
 * pushes a node's K out and real heartbeats keep costing one HMAC. A key first seen unknown (a
 * follower whose copy of the bucket has not got the node's record yet) moves to the nodes' table
 * once known, without a second agreement. null: a key no secret can be agreed with.
 */
export class HeartbeatMacKeys {
  private readonly nodes = new Map<string, Buffer | null>();
  private readonly unknown = new Map<string, Buffer | null>();
  private readonly max: number;
  private readonly unknownMax: number;
  private readonly knows: (name: string, identityKey: string) => boolean;
  private readonly onAgreed: ((kind: MacKeyKind) => void) | undefined;
  private agreed = 0;

  constructor(
    private readonly coordinator: SigningKeyPair,
    o: HeartbeatMacKeysOptions = {},
  ) {
    this.max = o.max ?? 20_000;
    this.unknownMax = o.unknownMax ?? 1024;
    this.knows = o.knows ?? (() => false);
    this.onAgreed = o.onAgreed;
  }

  /** The coordinator public key these MAC keys were agreed with. */
  get coordinatorKey(): string {
    return this.coordinator.publicKey;
  }

  /** How many keys were agreed so far (each ~0.1–0.2 ms of CPU). */
  get agreements(): number {
    return this.agreed;
  }

  /** K for `identityKey` (base64) of a heartbeat naming node `name`, or null when none can be agreed. */
  keyFor(identityKey: string, name: string): Buffer | null {
    const kept = this.nodes.get(identityKey);
    if (kept !== undefined) return kept;
    const known = this.knows(name, identityKey);
    let key = this.unknown.get(identityKey);
    if (key === undefined) {
      key = this.agree(identityKey);
      this.agreed++;
      this.onAgreed?.(known ? 'node' : 'unknown');
      if (!known) setBounded(this.unknown, identityKey, key, this.unknownMax);
    } else if (known) {
      this.unknown.delete(identityKey);
    }
    if (known) setBounded(this.nodes, identityKey, key, this.max);
    return key;
  }

  private agree(identityKey: string): Buffer | null {
    try {
      return coordinatorHeartbeatMacKey(this.coordinator, identityKey);
    } catch (err) {
      if (!(err instanceof HeartbeatMacError)) throw err;
      return null;
    }
  }
}
