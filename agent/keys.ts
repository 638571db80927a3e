// The node's long-lived keys, created once in the state dir and reused across restarts so the
// node keeps its WireGuard identity (peers need not be reconfigured) and its registration identity.
import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CrosslinkError } from '../lib/errors.ts';
import { Key32 } from '../protocol/messages.ts';
import {
  generateSigningKeyPair,
  generateWireguardKeyPair,
  signingPublicKeyOf,
  wireguardPublicKeyOf,
  type SigningKeyPair,
  type WireguardKeyPair,
} from '../protocol/signing.ts';

export class KeyFileError extends CrosslinkError {
  override name = 'KeyFileError';
  constructor(
    readonly path: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: ${problem}`, options);
  }
}

export const WIREGUARD_KEY_FILE = 'wireguard.key';
export const IDENTITY_KEY_FILE = 'identity.key';

export interface NodeKeys {
  readonly wireguard: WireguardKeyPair;
  readonly identity: SigningKeyPair;
}

/** Creates the state dir (0700) if needed and tightens an existing one (e.g. a hostPath made 0755). */
export async function ensureStateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  if (!st.isDirectory()) throw new KeyFileError(dir, 'state dir exists but is not a directory');
  if ((st.mode & 0o077) !== 0) await chmod(dir, 0o700);
}

export async function loadOrCreateNodeKeys(stateDir: string): Promise<NodeKeys> {
  await ensureStateDir(stateDir);
  return {
    wireguard: await loadOrCreateWireguardKey(join(stateDir, WIREGUARD_KEY_FILE)),
    identity: await loadOrCreateIdentityKey(join(stateDir, IDENTITY_KEY_FILE)),
  };
}

/** `wg genkey` format: one base64 line holding a 32-byte Curve25519 private key. */
export async function loadOrCreateWireguardKey(path: string): Promise<WireguardKeyPair> {
  const existing = await readSecretFile(path);
  if (existing !== undefined) {
    if (!Key32.safeParse(existing).success) {
      throw new KeyFileError(path, 'does not hold a WireGuard private key (expected one base64 line of 32 bytes, as `wg genkey` writes); fix or remove it (the node then gets a new key)');
    }
    return { privateKey: existing, publicKey: await wireguardPublicKeyOf(existing) };
  }
  const kp = await generateWireguardKeyPair();
  return (await writeSecretFileOnce(path, kp.privateKey)) ? kp : loadOrCreateWireguardKey(path);
}

/** One base64 line holding libsodium's 64-byte Ed25519 secret key (seed ‖ public key). */
export async function loadOrCreateIdentityKey(path: string): Promise<SigningKeyPair> {
  const existing = await readSecretFile(path);
  if (existing !== undefined) {
    const bytes = /^[A-Za-z0-9+/]+={0,2}$/.test(existing) ? Buffer.from(existing, 'base64') : Buffer.alloc(0);
    const bad = (): KeyFileError =>
      new KeyFileError(path, 'does not hold an Ed25519 identity key (expected one base64 line of 64 bytes); fix or remove it (the node then gets a new identity and must be re-admitted if the coordinator pins identities)');
    if (bytes.length !== 64) throw bad();
    const publicKey = await signingPublicKeyOf(existing);
    // libsodium keeps the public key in the second half; a mismatch means the file was corrupted.
    if (bytes.subarray(32).toString('base64') !== publicKey) throw bad();
    return { publicKey, secretKey: existing };
  }
  const kp = await generateSigningKeyPair();
  return (await writeSecretFileOnce(path, kp.secretKey)) ? kp : loadOrCreateIdentityKey(path);
}

/** Reads a private file's single line; undefined if absent. Refuses group/world permissions. */
async function readSecretFile(path: string): Promise<string | undefined> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new KeyFileError(path, `cannot read: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isFile()) throw new KeyFileError(path, 'is not a regular file');
  if ((st.mode & 0o077) !== 0) {
    throw new KeyFileError(path, `has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}; a private key must not be readable by group or others (run: chmod 600 ${path})`);
  }
  return (await readFile(path, 'utf8')).trim();
}

/**
 * Writes `content` to a temp file created 0600 and renames it into place only if `path` still
 * doesn't exist, so two processes starting at once cannot end up with different keys.
 * Returns false if someone else created the file first.
 */
async function writeSecretFileOnce(path: string, content: string): Promise<boolean> {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(`${content}\n`, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    // link() fails if the target exists, unlike rename(): first writer wins.
    await link(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    if ((err as NodeJS.ErrnoException).code === 'EPERM' || (err as NodeJS.ErrnoException).code === 'ENOTSUP') {
      // Filesystems without hard links: fall back to rename (still atomic, last writer wins).
      await rename(tmp, path);
      return true;
    }
    throw new KeyFileError(path, `cannot create: ${(err as Error).message}`, { cause: err });
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/** The coordinator's public key from a file (the output of `crosslink-coordinator public-key`). */
export async function readCoordinatorKeyFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new KeyFileError(path, `cannot read the coordinator key: ${(err as Error).message}`, { cause: err });
  }
  // Tolerate comments and blank lines around the key.
  const line = text
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l !== '' && !l.startsWith('#'));
  if (line === undefined || !Key32.safeParse(line).success) {
    throw new KeyFileError(path, `does not hold a coordinator public key (expected a base64 Ed25519 public key, 44 characters, as \`crosslink-coordinator public-key\` prints); got ${JSON.stringify((line ?? '').slice(0, 60))}`);
  }
  return line;
}
