// Node keys: created once (0600 in a 0700 dir), reused, and refused when exposed or corrupted.
import test, { type ExecutionContext } from 'ava';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadOrCreateNodeKeys } from '../agent/control/keys.ts';
import { readCoordinatorKeyFile } from '../protocol/coordinator-key-file.ts';
import { SecretFileError } from '../lib/secret-file.ts';
import { signEnvelope, verifyEnvelope, wireguardPublicKeyOf } from '../protocol/signing.ts';
import * as z from 'zod';
import { tempDir as makeTempDir } from './helpers/temp-dir.ts';

const tempDir = (t: ExecutionContext): Promise<string> => makeTempDir(t, 'xl-keys-');

test('creates both keys once with private modes, then reuses them', async (t) => {
  const base = await tempDir(t);
  const dir = join(base, 'state');
  const first = await loadOrCreateNodeKeys(dir);
  t.is((await stat(dir)).mode & 0o777, 0o700);
  for (const f of ['wireguard.key', 'identity.key']) t.is((await stat(join(dir, f))).mode & 0o777, 0o600, f);
  t.is(await wireguardPublicKeyOf(first.wireguard.privateKey), first.wireguard.publicKey);
  t.is((await readFile(join(dir, 'wireguard.key'), 'utf8')).trim(), first.wireguard.privateKey);

  const second = await loadOrCreateNodeKeys(dir);
  t.deepEqual(second, first);
  // The identity key still signs verifiably after the reload.
  const env = await signEnvelope({ hello: 1 }, second.identity.secretKey);
  t.deepEqual(await verifyEnvelope(env, first.identity.publicKey, z.object({ hello: z.number() })), { hello: 1 });
});

test('tightens a state dir created too open (e.g. a hostPath)', async (t) => {
  const dir = await tempDir(t);
  await chmod(dir, 0o755);
  await loadOrCreateNodeKeys(dir);
  t.is((await stat(dir)).mode & 0o777, 0o700);
});

test('concurrent first starts agree on one key', async (t) => {
  const dir = await tempDir(t);
  const [a, b] = await Promise.all([loadOrCreateNodeKeys(dir), loadOrCreateNodeKeys(dir)]);
  t.deepEqual(a, b);
});

const refused: { name: string; file: string; content: string; mode: number; problem: RegExp }[] = [
  { name: 'world-readable wireguard key', file: 'wireguard.key', content: 'x', mode: 0o644, problem: /mode 0644.*chmod 600/ },
  { name: 'group-readable identity key', file: 'identity.key', content: 'x', mode: 0o640, problem: /mode 0640/ },
  { name: 'garbage wireguard key', file: 'wireguard.key', content: 'not a key\n', mode: 0o600, problem: /does not hold a WireGuard private key/ },
  { name: 'short identity key', file: 'identity.key', content: 'AAAA\n', mode: 0o600, problem: /does not hold an Ed25519 identity key/ },
  // 64 bytes whose second half is not the public key of the first half.
  { name: 'corrupted identity key', file: 'identity.key', content: `${Buffer.alloc(64, 7).toString('base64')}\n`, mode: 0o600, problem: /does not hold an Ed25519 identity key/ },
];

for (const row of refused) {
  test(`refuses a ${row.name}`, async (t) => {
    const dir = await tempDir(t);
    await loadOrCreateNodeKeys(dir);
    const path = join(dir, row.file);
    await writeFile(path, row.content);
    await chmod(path, row.mode);
    const err = await t.throwsAsync(loadOrCreateNodeKeys(dir), { instanceOf: SecretFileError });
    t.is(err.path, path);
    t.regex(err.message, row.problem);
    t.false(err.message.includes(row.content.trim()) && row.content.trim().length > 8, 'key material is not echoed');
  });
}

test('reads a coordinator key file, tolerating comments', async (t) => {
  const dir = await tempDir(t);
  const key = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
  const path = join(dir, 'coordinator.pub');
  await writeFile(path, `# crosslink coordinator\n${key}\n`);
  t.is(await readCoordinatorKeyFile(path), key);
  await writeFile(path, 'nope\n');
  await t.throwsAsync(readCoordinatorKeyFile(path), { instanceOf: SecretFileError, message: /coordinator public key/ });
  await t.throwsAsync(readCoordinatorKeyFile(join(dir, 'missing')), { instanceOf: SecretFileError, message: /cannot read/ });
});
