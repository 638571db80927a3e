// Imports only go down: lib ← protocol ← agent | coordinator ← cli ← lab ← bench (test/helpers/
// import-graph.ts). Every .ts file outside test/ is parsed; the fixtures show the check can fail.
// And test fakes (ManualClock, RecordingRunner, Fake*…) live under test/, not in the production tree.
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { importsOf, LAYERS, layerViolations, testFakesIn } from './helpers/import-graph.ts';

const ROOT = join(import.meta.dirname, '..');

test('no import of the tree goes up or sideways a layer', async (t) => {
  const listed = await execa('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.ts'], { cwd: ROOT });
  const paths = listed.stdout.split('\n').filter((p) => p !== '' && !p.startsWith('test/') && !p.endsWith('.d.ts') && p.includes('/'));
  t.true(paths.length > 100, `only ${paths.length} files found`);
  const files = new Map<string, string>();
  for (const p of paths) files.set(p, await readFile(join(ROOT, p), 'utf8'));
  const violations = layerViolations(files);
  t.deepEqual(violations.map((v) => `${v.file}:${v.line} ${v.specifier}: ${v.reason}`), []);
});

test('the check covers every layer, lab/ and bench/ included', async (t) => {
  const listed = await execa('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.ts'], { cwd: ROOT });
  const folders = new Set(listed.stdout.split('\n').filter((p) => p.includes('/') && !p.startsWith('test/')).map((p) => p.split('/')[0]));
  for (const layer of Object.keys(LAYERS)) t.true(folders.has(layer), `${layer}/ is among the files checked`);
});

test('no test fake lives in the production tree (fakes, manual clocks and recording runners belong under test/)', async (t) => {
  const listed = await execa('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.ts'], { cwd: ROOT });
  const paths = listed.stdout.split('\n').filter((p) => p !== '' && !p.startsWith('test/') && !p.endsWith('.d.ts') && p.includes('/'));
  const files = new Map<string, string>();
  for (const p of paths) files.set(p, await readFile(join(ROOT, p), 'utf8'));
  t.deepEqual(testFakesIn(files), []);
  t.deepEqual(testFakesIn(new Map([['lib/clock.ts', 'export class ManualClock implements Clock {}\nexport const systemClock = {};']])), ['lib/clock.ts:1 ManualClock'], 'the check can fail');
  t.deepEqual(
    testFakesIn(new Map([['coordinator/testing.ts', 'export async function fakeAgent() {}\nexport abstract class FakeStore {}\nexport default class MockNats {}\nexport function* stubEntries() {}']])),
    ['coordinator/testing.ts:1 fakeAgent', 'coordinator/testing.ts:2 FakeStore', 'coordinator/testing.ts:3 MockNats', 'coordinator/testing.ts:4 stubEntries'],
    'async, abstract, default and generator exports too',
  );
});

test('fixture: an upward, a sideways and an outside import are each reported; downward ones are not', (t) => {
  const files = new Map([
    ['lib/a.ts', "import { x } from '../protocol/x.ts';\nimport { y } from './y.ts';"],
    ['agent/b.ts', "import type { C } from '../coordinator/c.ts';\nimport { l } from '../lib/l.ts';"],
    ['lab/d.ts', "export { e } from '../bench/e.ts';\nimport { cli } from '../cli/main.ts';"],
    ['bench/f.ts', "const m = await import('../test/helpers/g.ts');\nimport '../agent/side-effect.ts';"],
    ['cli/h.ts', "import { agent } from '../agent/agent.ts';\nimport { execa } from 'execa';"],
  ]);
  const found = layerViolations(files).map((v) => `${v.file}:${v.line} ${v.reason}`);
  t.deepEqual(found, [
    'lib/a.ts:1 lib (layer 0) imports up into protocol (layer 1)',
    'agent/b.ts:1 agent imports sideways into its sibling coordinator',
    'lab/d.ts:1 lab (layer 4) imports up into bench (layer 5)',
    'bench/f.ts:1 imports outside the layered tree (test)',
  ]);
});

test('fixture: a folder without a layer is reported', (t) => {
  t.deepEqual(
    layerViolations(new Map([['tools/x.ts', '']])).map((v) => v.reason),
    ['folder "tools" has no layer (add it to LAYERS)'],
  );
});

test('importsOf finds multi-line and type-only imports, and require()', (t) => {
  const src = "import {\n  a,\n  type B,\n} from '../lib/a.ts';\nexport type { C } from './c.ts';\nimport type { D } from '../protocol/d.ts';\nconst e = require('../cli/e.cjs');";
  t.deepEqual(
    importsOf(src).map((i) => i.specifier),
    ['../lib/a.ts', './c.ts', '../protocol/d.ts', '../cli/e.cjs'],
  );
});
