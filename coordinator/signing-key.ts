// The coordinator's Ed25519 signing key on disk. Created on first start (mode 0600, exclusive
// create so two replicas racing on a shared volume end up with one key); refused when other users
// could read it, or when it is malformed.
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import * as z from 'zod';
import { createSecretFileExclusive, readSecretFile, SecretFileError } from '../lib/secret-file.ts';
import { generateSigningKeyPair, signEnvelope, signingPublicKeyOf, verifyEnvelope, type SigningKeyPair } from '../protocol/signing.ts';

/** The coordinator's key often comes from a Kubernetes Secret, whose volume sets the mode. */
const READ_OPTIONS = { modeHint: 'for a Kubernetes Secret volume set defaultMode: 0400' } as const;
const EXPECTED = 'a coordinator signing key file holds {"secretKey": "<base64>", "publicKey": "<base64>"}';

const KeyFile = z.object({
  secretKey: z.string().regex(/^[A-Za-z0-9+/]{86}==$/, 'must be a 64-byte Ed25519 secret key in base64'),
  publicKey: z.string().optional(),
});

export async function loadOrCreateSigningKey(path: string): Promise<SigningKeyPair & { created: boolean }> {
  const existing = await readSecretFile(path, READ_OPTIONS);
  if (existing !== undefined) return { ...(await parseSigningKeyFile(path, existing)), created: false };
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const kp = await generateSigningKeyPair();
  const outcome = await createSecretFileExclusive(path, `${JSON.stringify({ publicKey: kp.publicKey, secretKey: kp.secretKey }, null, 2)}\n`);
  // 'exists': another replica created it first; use theirs.
  return outcome === 'created' ? { ...kp, created: true } : { ...(await loadSigningKey(path)), created: false };
}

export async function loadSigningKey(path: string): Promise<SigningKeyPair> {
  const text = await readSecretFile(path, READ_OPTIONS);
  if (text === undefined) throw new SecretFileError(path, 'the coordinator signing key file does not exist');
  return parseSigningKeyFile(path, text);
}

async function parseSigningKeyFile(path: string, text: string): Promise<SigningKeyPair> {
  let json: unknown;
  try {
    json = JSON.parse(text) as unknown;
  } catch (err) {
    throw new SecretFileError(path, `is not JSON; ${EXPECTED}`, { cause: err });
  }
  const parsed = KeyFile.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new SecretFileError(path, `field ${issue?.path.join('.') || '(root)'} ${issue?.message ?? 'is invalid'}; ${EXPECTED}`, {
      cause: parsed.error,
    });
  }
  const publicKey = await signingPublicKeyOf(parsed.data.secretKey);
  if (parsed.data.publicKey !== undefined && parsed.data.publicKey !== publicKey) {
    throw new SecretFileError(path, `publicKey ${JSON.stringify(parsed.data.publicKey)} does not belong to secretKey (derived ${publicKey})`);
  }
  // The 64-byte secret key embeds its public half; a damaged file would sign unverifiably.
  try {
    await verifyEnvelope(await signEnvelope('probe', parsed.data.secretKey), publicKey, z.literal('probe'));
  } catch (err) {
    throw new SecretFileError(path, 'secretKey is damaged: a test signature does not verify', { cause: err });
  }
  return { publicKey, secretKey: parsed.data.secretKey };
}
