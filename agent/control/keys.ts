// The node's long-lived keys, created once in the state dir and reused across restarts so the
// node keeps its WireGuard identity (peers need not be reconfigured) and its registration identity.
import { chmod, mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../../lib/errors.ts';
import { Key32 } from '../../protocol/messages.ts';
import { createSecretFileExclusive, readSecretFile, SecretFileError } from '../../lib/secret-file.ts';
import { parseJoinCredential, type JoinCredential } from '../../protocol/join-credential.ts';
import {
  generateSigningKeyPair,
  generateWireguardKeyPair,
  signingPublicKeyOf,
  wireguardPublicKeyOf,
  type SigningKeyPair,
  type WireguardKeyPair,
} from '../../protocol/signing.ts';

export const WIREGUARD_KEY_FILE = 'wireguard.key';
export const IDENTITY_KEY_FILE = 'identity.key';
/** A rotation's new WireGuard key, fully written before it replaces WIREGUARD_KEY_FILE. */
export const WIREGUARD_KEY_NEXT_FILE = 'wireguard.key.next';

export interface NodeKeys {
  readonly wireguard: WireguardKeyPair;
  readonly identity: SigningKeyPair;
}

/** Creates the state dir (0700) if needed and tightens an existing one (e.g. a hostPath made 0755). */
export async function ensureStateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  if (!st.isDirectory()) throw new SecretFileError(dir, 'state dir exists but is not a directory');
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
  const existing = (await readSecretFile(path))?.trim();
  if (existing !== undefined) {
    if (!Key32.safeParse(existing).success) {
      throw new SecretFileError(path, 'does not hold a WireGuard private key (expected one base64 line of 32 bytes, as `wg genkey` writes); fix or remove it (the node then gets a new key)');
    }
    return { privateKey: existing, publicKey: await wireguardPublicKeyOf(existing) };
  }
  const kp = await generateWireguardKeyPair();
  // 'exists': another process won the race; use its key.
  return (await createSecretFileExclusive(path, `${kp.privateKey}\n`)) === 'created' ? kp : loadOrCreateWireguardKey(path);
}

/** A new WireGuard key pair already on disk next to the current key, not yet in force. */
export interface StagedWireguardKey {
  readonly keys: WireguardKeyPair;
  /** Atomically replaces the current key file with the staged one (rename, then the dir is synced). */
  commit(): Promise<void>;
  /** Removes the staged file; the current key stays. Never throws. */
  discard(): Promise<void>;
}

/**
 * Key rotation, step one: generates a key pair and writes it (`wg genkey` format, mode 0600,
 * synced) to WIREGUARD_KEY_NEXT_FILE. The current key file is only touched by commit(), so a crash
 * at any point leaves either the old or the new key in wireguard.key, never half of one. A leftover
 * from an interrupted rotation is replaced. Callers serialise rotations of one state dir.
 */
export async function stageWireguardKey(stateDir: string): Promise<StagedWireguardKey> {
  const next = join(stateDir, WIREGUARD_KEY_NEXT_FILE);
  const current = join(stateDir, WIREGUARD_KEY_FILE);
  await unlink(next).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new SecretFileError(next, `cannot remove a leftover: ${errorMessage(err)}`, { cause: err });
  });
  const keys = await generateWireguardKeyPair();
  if ((await createSecretFileExclusive(next, `${keys.privateKey}\n`)) === 'exists') {
    throw new SecretFileError(next, 'appeared while staging a new key (is another process rotating keys in this state dir?)');
  }
  return {
    keys,
    async commit(): Promise<void> {
      try {
        await rename(next, current);
      } catch (err) {
        throw new SecretFileError(current, `cannot replace it with the new key: ${errorMessage(err)}`, { cause: err });
      }
      await syncDir(stateDir);
    },
    async discard(): Promise<void> {
      await unlink(next).catch(() => undefined);
    },
  };
}

/** Makes a rename in `dir` durable; best effort (some filesystems refuse fsync on directories). */
async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // The rename itself is atomic; only its durability across a power loss is at stake.
  }
}

/** One base64 line holding a 64-byte Ed25519 secret key (seed ‖ public key, libsodium's layout). */
export async function loadOrCreateIdentityKey(path: string): Promise<SigningKeyPair> {
  const existing = (await readSecretFile(path))?.trim();
  if (existing !== undefined) {
    const bytes = /^[A-Za-z0-9+/]+={0,2}$/.test(existing) ? Buffer.from(existing, 'base64') : Buffer.alloc(0);
    const bad = (): SecretFileError =>
      new SecretFileError(path, 'does not hold an Ed25519 identity key (expected one base64 line of 64 bytes); fix or remove it (the node then gets a new identity and must be re-admitted if the coordinator pins identities)');
    if (bytes.length !== 64) throw bad();
    const publicKey = await signingPublicKeyOf(existing);
    // The second half holds the public key; a mismatch means the file was corrupted.
    if (bytes.subarray(32).toString('base64') !== publicKey) throw bad();
    return { publicKey, secretKey: existing };
  }
  const kp = await generateSigningKeyPair();
  return (await createSecretFileExclusive(path, `${kp.secretKey}\n`)) === 'created' ? kp : loadOrCreateIdentityKey(path);
}

/**
 * The cluster's join credential (`crosslink-coordinator cluster add --credential-out`), read as a
 * secret (refused when group/world readable; a Kubernetes Secret volume needs defaultMode 0400).
 */
export async function readJoinCredentialFile(path: string, cluster: string): Promise<JoinCredential> {
  const text = await readSecretFile(path, { modeHint: 'for a Kubernetes Secret volume set defaultMode: 0400' });
  if (text === undefined) throw new SecretFileError(path, 'the join credential file does not exist (`crosslink-coordinator cluster add --credential-out` writes it)');
  let credential: JoinCredential;
  try {
    credential = await parseJoinCredential(text);
  } catch (err) {
    throw new SecretFileError(path, (err as Error).message, { cause: err });
  }
  if (credential.cluster !== cluster) {
    throw new SecretFileError(path, `is the join credential of cluster "${credential.cluster}", but this node is in cluster "${cluster}" (--cluster)`);
  }
  return credential;
}
