// Secret files: absent → undefined, refused when exposed or not a file, created once (0600) by
// racing creators, contents written verbatim.
import test, { type ExecutionContext } from 'ava';
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createSecretFileExclusive, readSecretFile, SecretFileError } from '../lib/secret-file.ts';
import { tempDir as makeTempDir } from './helpers/temp-dir.ts';

const tempDir = (t: ExecutionContext): Promise<string> => makeTempDir(t, 'xl-secret-');

test('an absent file reads as undefined', async (t) => {
  t.is(await readSecretFile(join(await tempDir(t), 'missing')), undefined);
});

test('created 0600 with the contents verbatim; a second creator gets "exists" and leaves it alone', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'k');
  t.is(await createSecretFileExclusive(path, 'one\n'), 'created');
  t.is(await createSecretFileExclusive(path, 'two\n'), 'exists');
  t.is((await stat(path)).mode & 0o777, 0o600);
  t.is(await readSecretFile(path), 'one\n');
  t.deepEqual(await readdir(dir), ['k'], 'no temp files left behind');
});

test('racing creators: exactly one wins and everyone reads its contents', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'k');
  const outcomes = await Promise.all(Array.from({ length: 8 }, (_, i) => createSecretFileExclusive(path, `key ${i}\n`)));
  t.is(outcomes.filter((o) => o === 'created').length, 1);
  const winner = outcomes.indexOf('created');
  t.is(await readFile(path, 'utf8'), `key ${winner}\n`);
});

const refused: { name: string; mode: number; hint?: string; problem: RegExp }[] = [
  { name: 'world-readable', mode: 0o644, problem: /has mode 0644; .*\(run: chmod 600 .*\/k\)$/ },
  { name: 'group-readable (with a hint)', mode: 0o640, hint: 'check the volume', problem: /has mode 0640; .*chmod 600 .*; check the volume$/ },
];

for (const row of refused) {
  test(`refuses a ${row.name} file, naming the path and the fix`, async (t) => {
    const path = join(await tempDir(t), 'k');
    await writeFile(path, 'hunter2-contents');
    await chmod(path, row.mode);
    const err = await t.throwsAsync(readSecretFile(path, row.hint === undefined ? {} : { modeHint: row.hint }), { instanceOf: SecretFileError });
    t.is(err.path, path);
    t.true(err.message.startsWith(`${path}: `), err.message);
    t.regex(err.message, row.problem);
    t.false(err.message.includes('hunter2'), 'contents are not echoed');
  });
}

test('refuses a directory', async (t) => {
  const path = join(await tempDir(t), 'k');
  await mkdir(path);
  await t.throwsAsync(readSecretFile(path), { instanceOf: SecretFileError, message: /is not a regular file/ });
});

test('a creation that cannot happen names the path', async (t) => {
  const path = join(await tempDir(t), 'no-such-dir', 'k');
  const err = await t.throwsAsync(createSecretFileExclusive(path, 'x'), { instanceOf: SecretFileError, message: /cannot create/ });
  t.is(err.path, path);
});
