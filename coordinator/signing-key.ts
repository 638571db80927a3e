// The coordinator's Ed25519 signing key on disk. Created on first start (mode 0600, exclusive
// create so two replicas racing on a shared volume end up with one key); refused when other users
// could read it, or when it is malformed.
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { CrosslinkError } from '../lib/errors.ts';
import { generateSigningKeyPair, signEnvelope, signingPublicKeyOf, verifyEnvelope, type SigningKeyPair } from '../protocol/signing.ts';

export class SigningKeyError extends CrosslinkError {
  override name = 'SigningKeyError';
  constructor(
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`signing key file ${path}: ${message}`, options);
  }
}

const KeyFile = z.object({
  secretKey: z.string().regex(/^[A-Za-z0-9+/]{86}==$/, 'must be a 64-byte Ed25519 secret key in base64'),
  publicKey: z.string().optional(),
});

export async function loadOrCreateSigningKey(path: string): Promise<SigningKeyPair & { created: boolean }> {
  try {
    return { ...(await loadSigningKey(path)), created: false };
  } catch (err) {
    if (!(err instanceof SigningKeyError) || !(err.cause instanceof Error) || (err.cause as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const kp = await generateSigningKeyPair();
  let handle;
  try {
    handle = await open(path, 'wx', 0o600);
  } catch (err) {
    // Another replica created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return { ...(await loadSigningKey(path)), created: false };
    throw new SigningKeyError(path, `cannot create: ${(err as Error).message}`, { cause: err });
  }
  try {
    await handle.writeFile(`${JSON.stringify({ publicKey: kp.publicKey, secretKey: kp.secretKey }, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return { ...kp, created: true };
}

export async function loadSigningKey(path: string): Promise<SigningKeyPair> {
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (err) {
    throw new SigningKeyError(path, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : (err as Error).message, { cause: err });
  }
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    throw new SigningKeyError(path, `mode ${octal} lets group/other users read the secret key; run chmod 600 ${path} (Kubernetes Secret: defaultMode: 0400)`);
  }
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new SigningKeyError(path, (err as Error).message, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text) as unknown;
  } catch (err) {
    throw new SigningKeyError(path, 'is not JSON; expected {"secretKey": "<base64>", "publicKey": "<base64>"}', { cause: err });
  }
  const parsed = KeyFile.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new SigningKeyError(path, `field ${issue?.path.join('.') || '(root)'} ${issue?.message ?? 'is invalid'}; expected {"secretKey": "<base64>", "publicKey": "<base64>"}`, {
      cause: parsed.error,
    });
  }
  const publicKey = await signingPublicKeyOf(parsed.data.secretKey);
  if (parsed.data.publicKey !== undefined && parsed.data.publicKey !== publicKey) {
    throw new SigningKeyError(path, `publicKey ${JSON.stringify(parsed.data.publicKey)} does not belong to secretKey (derived ${publicKey})`);
  }
  // The 64-byte secret key embeds its public half; a damaged file would sign unverifiably.
  try {
    await verifyEnvelope(await signEnvelope('probe', parsed.data.secretKey), publicKey, z.literal('probe'));
  } catch (err) {
    throw new SigningKeyError(path, 'secretKey is damaged: a test signature does not verify', { cause: err });
  }
  return { publicKey, secretKey: parsed.data.secretKey };
}
