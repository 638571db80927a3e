// Ed25519 signatures (libsodium) over exact payload bytes, and key generation for
// WireGuard (X25519) and identity/coordinator (Ed25519) keys.
import sodium from 'libsodium-wrappers';
import type { z } from 'zod';
import { CrosslinkError } from '../lib/errors.ts';
import { SignedEnvelope } from './messages.ts';

export class SignatureError extends CrosslinkError {
  override name = 'SignatureError';
}

let ready: Promise<void> | undefined;
/** libsodium initialises asynchronously once per process. */
export function sodiumReady(): Promise<void> {
  ready ??= sodium.ready;
  return ready;
}

const b64 = (u: Uint8Array): string => Buffer.from(u).toString('base64');
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));

export interface SigningKeyPair {
  /** base64, 32 bytes */
  readonly publicKey: string;
  /** base64, 64 bytes (libsodium secret key: seed ‖ public key). Never log. */
  readonly secretKey: string;
}

export async function generateSigningKeyPair(): Promise<SigningKeyPair> {
  await sodiumReady();
  const kp = sodium.crypto_sign_keypair();
  return { publicKey: b64(kp.publicKey), secretKey: b64(kp.privateKey) };
}

export async function signingPublicKeyOf(secretKey: string): Promise<string> {
  await sodiumReady();
  // Derived from the seed (first 32 bytes), not copied from the embedded public half, so a damaged
  // key is caught; crypto_sign_ed25519_sk_to_pk is missing from the libsodium-wrappers build.
  const sk = unb64(secretKey);
  if (sk.length !== 64) throw new SignatureError('Ed25519 secret key must be 64 bytes');
  return b64(sodium.crypto_sign_seed_keypair(sk.slice(0, 32)).publicKey);
}

export interface WireguardKeyPair {
  readonly publicKey: string;
  /** Never log, never send. */
  readonly privateKey: string;
}

/** A clamped Curve25519 private key, as `wg genkey` makes. */
export async function generateWireguardKeyPair(): Promise<WireguardKeyPair> {
  await sodiumReady();
  const priv = sodium.randombytes_buf(32);
  clamp(priv);
  return { privateKey: b64(priv), publicKey: b64(sodium.crypto_scalarmult_base(priv)) };
}

export async function wireguardPublicKeyOf(privateKey: string): Promise<string> {
  await sodiumReady();
  const priv = unb64(privateKey);
  if (priv.length !== 32) throw new SignatureError('WireGuard private key must be 32 bytes');
  clamp(priv);
  return b64(sodium.crypto_scalarmult_base(priv));
}

function clamp(k: Uint8Array): void {
  k[0] = (k[0] ?? 0) & 248;
  k[31] = ((k[31] ?? 0) & 127) | 64;
}

/** Signs `value` as JSON. The signature covers the exact payload bytes, so re-serialisation cannot change meaning. */
export async function signEnvelope(value: unknown, secretKey: string): Promise<SignedEnvelope> {
  await sodiumReady();
  const payload = Buffer.from(JSON.stringify(value), 'utf8');
  const sig = sodium.crypto_sign_detached(new Uint8Array(payload), unb64(secretKey));
  return { payload: payload.toString('base64'), sig: b64(sig) };
}

/** Decodes an envelope without checking its signature (to learn which key should have signed it). */
export function openEnvelopeUnverified(envelope: SignedEnvelope): unknown {
  try {
    return JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as unknown;
  } catch (err) {
    throw new SignatureError('envelope payload is not base64 JSON', { cause: err });
  }
}

/**
 * Verifies `raw` (bytes, JSON text or object) as a SignedEnvelope signed by `publicKey`, then parses
 * the payload with `schema`. Throws SignatureError (bad/forged/unsigned) or a zod error (bad shape).
 */
export async function verifyEnvelope<S extends z.ZodType>(raw: unknown, publicKey: string, schema: S): Promise<z.infer<S>> {
  await sodiumReady();
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
  const pk = unb64(publicKey);
  if (pk.length !== 32) throw new SignatureError('verification key must be 32 bytes');
  const ok = sodium.crypto_sign_verify_detached(unb64(env.data.sig), unb64(env.data.payload), pk);
  if (!ok) throw new SignatureError('signature does not verify (forged or signed by another key)');
  const value = openEnvelopeUnverified(env.data);
  return schema.parse(value);
}
