// Ed25519 signatures over exact payload bytes, and key generation for WireGuard (X25519) and
// identity/coordinator (Ed25519) keys — with Node's built-in crypto (OpenSSL). Key formats are
// libsodium's, which earlier versions used and whose files and records stay valid: an Ed25519
// secret key is 64 bytes, seed ‖ public key; public keys and signatures are raw 32 / 64 bytes.
// (libsodium-wrappers cost the agent ~20 MiB of resident memory for its WebAssembly heap and
// module; node:crypto is already in the process. Same signatures, byte for byte: test/signing.test.ts.)
import { createPrivateKey, createPublicKey, diffieHellman, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import type { z } from 'zod';
import { CrosslinkError } from '../lib/errors.ts';
import { SignedEnvelope } from './messages.ts';

export class SignatureError extends CrosslinkError {
  override name = 'SignatureError';
}

const b64 = (u: Uint8Array): string => Buffer.from(u).toString('base64');
const unb64 = (s: string): Buffer => Buffer.from(s, 'base64');

// DER prefixes wrapping a raw 32-byte key as PKCS#8 for OpenSSL (key generation and X25519).
const ED25519_PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');

const rawPublicKey = (key: KeyObject): Buffer => Buffer.from(key.export({ format: 'jwk' }).x ?? '', 'base64url');
const ed25519Private = (seed: Uint8Array): KeyObject => createPrivateKey({ key: Buffer.concat([ED25519_PKCS8, seed]), format: 'der', type: 'pkcs8' });
// Raw keys go in as JWK: OpenSSL then takes the raw bytes directly, where a DER import runs its
// generic decoder chain — measured 535 → 47 µs per private key and 123 → 11 µs per public key
// (docs/benchmarks.md). OpenSSL derives the public point from the seed (`d`); `x` is not trusted.
const ed25519PrivateJwk = (seed: Uint8Array, claimedPublic: Uint8Array): KeyObject =>
  createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: Buffer.from(seed).toString('base64url'), x: Buffer.from(claimedPublic).toString('base64url') }, format: 'jwk' });

/**
 * Verification keys seen recently (the coordinator key, node identity keys): parsed once, not per
 * message. Keyed by base64 text, so a key that arrives as text (every signed request and record)
 * is found without decoding and re-encoding it; null: 32 bytes that are not a curve point.
 */
const publicKeys = new Map<string, KeyObject | null>();
function ed25519Public(raw: Buffer, id = raw.toString('base64')): KeyObject | null {
  let key = publicKeys.get(id);
  if (key === undefined) {
    try {
      key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
    } catch {
      key = null;
    }
    if (publicKeys.size >= 20_000) publicKeys.clear();
    publicKeys.set(id, key);
  }
  return key;
}

/** A base64 verification key → its key object (cached by the text). Throws SignatureError unless it is 32 bytes. */
function verificationKey(key: string): KeyObject | null {
  const known = publicKeys.get(key);
  return known !== undefined ? known : ed25519Public(Buffer.from(verificationKeyBytes(key)), key);
}

/** The promise API the libsodium version had (callers await): a throw becomes a rejection. */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new SignatureError(String(err)));
  }
}

export interface SigningKeyPair {
  /** base64, 32 bytes */
  readonly publicKey: string;
  /** base64, 64 bytes (seed ‖ public key, libsodium's layout). Never log. */
  readonly secretKey: string;
}

export function generateSigningKeyPair(): Promise<SigningKeyPair> {
  const seed = randomBytes(32);
  return settle(() => {
    const pub = rawPublicKey(createPublicKey(ed25519Private(seed)));
    return { publicKey: b64(pub), secretKey: b64(Buffer.concat([seed, pub])) };
  });
}

function secretKeyBytes(secretKey: string): Buffer {
  const sk = unb64(secretKey);
  if (sk.length !== 64) throw new SignatureError('Ed25519 secret key must be 64 bytes');
  return sk;
}
const seedOf = (secretKey: string): Buffer => secretKeyBytes(secretKey).subarray(0, 32);

export function signingPublicKeyOf(secretKey: string): Promise<string> {
  // Derived from the seed (first 32 bytes), not copied from the embedded public half, so a damaged key is caught.
  return settle(() => b64(rawPublicKey(createPublicKey(ed25519Private(seedOf(secretKey))))));
}

/**
 * Signing keys in use (the coordinator's, an agent's identity key), as OpenSSL key objects: building
 * one from the seed derives the public point, which cost more than the signature itself — ~0.7 ms of
 * the coordinator's CPU per record signed, two records per registration (profiled,
 * docs/benchmarks.md). Keyed by the secret key text; a process holds one or two, so the bound is
 * only a guard.
 */
const privateKeys = new Map<string, KeyObject>();
function signingKey(secretKey: string): KeyObject {
  let key = privateKeys.get(secretKey);
  if (key === undefined) {
    const sk = secretKeyBytes(secretKey);
    key = ed25519PrivateJwk(sk.subarray(0, 32), sk.subarray(32));
    if (privateKeys.size >= 16) privateKeys.clear();
    privateKeys.set(secretKey, key);
  }
  return key;
}

/** Ed25519 signature (64 bytes) of `message` with a 64-byte secret key (base64). */
export function ed25519Sign(message: Uint8Array, secretKey: string): Buffer {
  return sign(null, message, signingKey(secretKey));
}

/** Does `sig` verify `message` under the raw 32-byte public key? false for malformed keys or signatures. */
export function ed25519Verify(message: Uint8Array, sig: Uint8Array, publicKey: Uint8Array): boolean {
  if (publicKey.length !== 32) return false;
  return verifyWithKey(message, sig, ed25519Public(Buffer.from(publicKey)));
}

/** The one Ed25519 check (node:crypto, OpenSSL): false for a malformed signature or a key that is not a point. */
function verifyWithKey(message: Uint8Array, sig: Uint8Array, key: KeyObject | null): boolean {
  if (key === null || sig.length !== 64) return false;
  try {
    return verify(null, message, key, sig);
  } catch {
    return false;
  }
}

/**
 * ed25519Verify on libuv's thread pool: the event loop is free while it runs, and several run at
 * once (the KV read at start checks ~1,000 signatures: a quarter of its CPU). Same answers.
 */
export function ed25519VerifyAsync(message: Uint8Array, sig: Uint8Array, publicKey: Uint8Array): Promise<boolean> {
  if (publicKey.length !== 32 || sig.length !== 64) return Promise.resolve(false);
  const key = ed25519Public(Buffer.from(publicKey));
  if (key === null) return Promise.resolve(false);
  return new Promise((resolve) => {
    try {
      verify(null, message, key, sig, (err, ok) => resolve(err === null && ok));
    } catch {
      resolve(false);
    }
  });
}

export interface WireguardKeyPair {
  readonly publicKey: string;
  /** Never log, never send. */
  readonly privateKey: string;
}

function x25519PublicOf(priv: Uint8Array): Buffer {
  return rawPublicKey(createPublicKey(createPrivateKey({ key: Buffer.concat([X25519_PKCS8, priv]), format: 'der', type: 'pkcs8' })));
}

/**
 * X25519 private keys by scalar (the coordinator's and an agent's key agreement for heartbeat MACs,
 * protocol/heartbeat-mac.ts): a DER import costs ~0.5 ms, and the coordinator agrees a key with every
 * node it hears from. A process holds one or two; the bound is only a guard.
 */
const x25519PrivateKeys = new Map<string, KeyObject>();
function x25519Private(scalar: Uint8Array): KeyObject {
  const id = Buffer.from(scalar).toString('base64');
  let key = x25519PrivateKeys.get(id);
  if (key === undefined) {
    key = createPrivateKey({ key: Buffer.concat([X25519_PKCS8, scalar]), format: 'der', type: 'pkcs8' });
    if (x25519PrivateKeys.size >= 16) x25519PrivateKeys.clear();
    x25519PrivateKeys.set(id, key);
  }
  return key;
}

/**
 * X25519(scalar, u): the shared secret of a 32-byte private scalar (clamped by OpenSSL) and a peer's
 * 32-byte Montgomery u-coordinate. Throws SignatureError when the result is all zero (a low-order
 * point: no secret at all) or the point is refused.
 */
export function x25519SharedSecret(scalar: Uint8Array, peerU: Uint8Array): Buffer {
  if (scalar.length !== 32 || peerU.length !== 32) throw new SignatureError('X25519 keys must be 32 bytes');
  let shared: Buffer;
  try {
    const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(peerU).toString('base64url') }, format: 'jwk' });
    shared = diffieHellman({ privateKey: x25519Private(scalar), publicKey });
  } catch (err) {
    throw new SignatureError('X25519 key agreement failed (a low-order or malformed public key)', { cause: err });
  }
  if (shared.length !== 32 || shared.every((b) => b === 0)) throw new SignatureError('X25519 key agreement gave the all-zero secret (a low-order public key)');
  return shared;
}

/** A clamped Curve25519 private key, as `wg genkey` makes. */
export function generateWireguardKeyPair(): Promise<WireguardKeyPair> {
  const priv = randomBytes(32);
  clamp(priv);
  return Promise.resolve({ privateKey: b64(priv), publicKey: b64(x25519PublicOf(priv)) });
}

export function wireguardPublicKeyOf(privateKey: string): Promise<string> {
  return settle(() => {
    const priv = unb64(privateKey);
    if (priv.length !== 32) throw new SignatureError('WireGuard private key must be 32 bytes');
    clamp(priv);
    return b64(x25519PublicOf(priv));
  });
}

function clamp(k: Uint8Array): void {
  k[0] = (k[0] ?? 0) & 248;
  k[31] = ((k[31] ?? 0) & 127) | 64;
}

/** Signs `value` as JSON. The signature covers the exact payload bytes, so re-serialisation cannot change meaning. */
export function signEnvelope(value: unknown, secretKey: string): Promise<SignedEnvelope> {
  return settle(() => signEnvelopeNow(value, secretKey));
}

/** signEnvelope, synchronously (fire-and-forget publishers); throws SignatureError for a bad key. */
export function signEnvelopeNow(value: unknown, secretKey: string): SignedEnvelope {
  const payload = Buffer.from(JSON.stringify(value), 'utf8');
  return { payload: payload.toString('base64'), sig: b64(ed25519Sign(payload, secretKey)) };
}

/** Decodes an envelope without checking its signature (to learn which key should have signed it). */
export function openEnvelopeUnverified(envelope: SignedEnvelope): unknown {
  return decodeEnvelopePayload(envelope).value;
}

/**
 * An envelope's payload decoded once: its bytes (what the signature covers; checkPayloadSignature)
 * and the JSON value of exactly those bytes. Throws SignatureError.
 */
export function decodeEnvelopePayload(envelope: { readonly payload: string }): { readonly bytes: Buffer; readonly value: unknown } {
  const bytes = unb64(envelope.payload);
  try {
    return { bytes, value: JSON.parse(bytes.toString('utf8')) as unknown };
  } catch (err) {
    throw new SignatureError('envelope payload is not base64 JSON', { cause: err });
  }
}

/** One verification key, or a key set (rotation: the current key and previous ones); any one may verify. */
export type VerifyKeys = string | readonly string[];

/**
 * Verifies `raw` (bytes, JSON text or object) as a SignedEnvelope signed by `publicKey`, then parses
 * the payload with `schema`. Throws SignatureError (bad/forged/unsigned) or a zod error (bad shape).
 */
export function verifyEnvelope<S extends z.ZodType>(raw: unknown, publicKey: VerifyKeys, schema: S): Promise<z.infer<S>> {
  return settle(() => verifyEnvelopeNow(raw, publicKey, schema));
}

/**
 * verifyEnvelope, also saying which of `publicKey`'s keys verified it (during a rotation the agent
 * holds several coordinator keys; its heartbeat MAC is made for the one that signed its record).
 */
export function verifyEnvelopeWithKey<S extends z.ZodType>(raw: unknown, publicKey: VerifyKeys, schema: S): Promise<{ readonly value: z.infer<S>; readonly key: string }> {
  return settle(() => {
    const env = parseEnvelope(raw);
    const payload = decodeEnvelopePayload(env);
    const key = checkPayloadSignature(payload.bytes, env.sig, publicKey);
    return { value: schema.parse(payload.value), key };
  });
}

function verifyEnvelopeNow<S extends z.ZodType>(raw: unknown, publicKey: VerifyKeys, schema: S): z.infer<S> {
  const env = parseEnvelope(raw);
  const payload = decodeEnvelopePayload(env);
  checkPayloadSignature(payload.bytes, env.sig, publicKey);
  return schema.parse(payload.value);
}

/** Bytes, JSON text or an object → a SignedEnvelope's shape (signature not checked). Throws SignatureError. */
function parseEnvelope(raw: unknown): SignedEnvelope {
  let obj: unknown = raw;
  if (raw instanceof Uint8Array) obj = Buffer.from(raw).toString('utf8');
  if (typeof obj === 'string') {
    try {
      obj = JSON.parse(obj) as unknown;
    } catch (err) {
      throw new SignatureError('not a signed envelope: not JSON', { cause: err });
    }
  }
  const env = SignedEnvelope.safeParse(obj);
  if (!env.success) throw new SignatureError('not a signed envelope (unsigned record?)', { cause: env.error });
  return env.data;
}

/**
 * verifyEnvelope with the signature checked on libuv's thread pool (ed25519VerifyAsync): for bulk
 * reads (the KV watch's initial load) whose entries are verified side by side. Same checks, same errors.
 */
export async function verifyEnvelopeAsync<S extends z.ZodType>(raw: unknown, publicKey: VerifyKeys, schema: S): Promise<z.infer<S>> {
  const env = parseEnvelope(raw);
  const keys = typeof publicKey === 'string' ? [publicKey] : publicKey;
  const payload = unb64(env.payload);
  const sig = unb64(env.sig);
  const pks = keys.map(verificationKeyBytes);
  let verified = false;
  for (const pk of pks) if ((verified = await ed25519VerifyAsync(payload, sig, pk))) break;
  if (!verified) throw notVerified(keys.length);
  return schema.parse(openEnvelopeUnverified(env));
}

/** A base64 Ed25519 public key → its 32 bytes. Throws SignatureError. */
function verificationKeyBytes(key: string): Uint8Array {
  const pk = unb64(key);
  if (pk.length !== 32) throw new SignatureError('verification key must be 32 bytes');
  return pk;
}

const notVerified = (keys: number): SignatureError =>
  new SignatureError(keys > 1 ? `signature does not verify with any of the ${keys} keys (forged or signed by another key)` : 'signature does not verify (forged or signed by another key)');

/**
 * The signature check alone, for an envelope whose shape the caller has already checked
 * (`openSignedRequest` parses the payload once, then checks the signature over the same bytes —
 * before, it decoded and schema-parsed the payload a second time through verifyEnvelope and
 * dropped the result). Throws SignatureError.
 */
export function checkEnvelopeSignature(envelope: SignedEnvelope, publicKey: VerifyKeys): void {
  checkPayloadSignature(unb64(envelope.payload), envelope.sig, publicKey);
}

/**
 * The signature check over payload bytes already decoded (decodeEnvelopePayload: a request's
 * payload is decoded once, and the value parsed is the one the signature covers). `sig` is base64.
 * Returns the key that verified it. Throws SignatureError.
 */
export function checkPayloadSignature(payload: Uint8Array, sig: string, publicKey: VerifyKeys): string {
  const keys = typeof publicKey === 'string' ? [publicKey] : publicKey;
  const sigBytes = unb64(sig);
  const verified = keys.find((k) => verifyWithKey(payload, sigBytes, verificationKey(k)));
  if (verified === undefined) throw notVerified(keys.length);
  return verified;
}
