import { symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { isEntryPoint } from '../lib/entry-point.ts';
import { tempDir } from './helpers/temp-dir.ts';

const self = fileURLToPath(import.meta.url);

test('isEntryPoint: the module node was started with, also through a symlink (bin/ → dist/); nothing else', async (t) => {
  t.true(isEntryPoint(import.meta.url, self));
  const link = join(await tempDir(t, 'xl-entry-'), 'main.ts');
  await symlink(self, link);
  t.true(isEntryPoint(import.meta.url, link));
  t.false(isEntryPoint(import.meta.url, fileURLToPath(new URL('./lib-clock.test.ts', import.meta.url))));
  t.false(isEntryPoint(import.meta.url, undefined));
  t.false(isEntryPoint(import.meta.url, '/nonexistent/main.js'));
  // Imported by a test (argv[1] is ava's worker), agent/main.ts does not start an agent.
  t.false(isEntryPoint(new URL('../agent/main.ts', import.meta.url).href));
});
