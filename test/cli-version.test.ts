// `crosslink --version` prints the package version and exits 0.
import { readFileSync } from 'node:fs';
import test from 'ava';
import { runCli } from '../cli/main.ts';
import { captureIo } from './helpers/cli-io.ts';

test('crosslink --version prints the package version', async (t) => {
  const io = captureIo();
  t.is(await runCli(['--version'], io), 0);
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  t.is(io.out().trim(), pkg.version);
});
