// lib/load-commonjs.ts: the compiled agent's bundles are loaded by reading them in pieces (so
// glibc's mmap threshold is not raised by one big read buffer) and compiled as CommonJS modules.
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import test from 'ava';
import { BundleLoadError, READ_PIECE_BYTES, loadCommonJs, readTextInPieces } from '../lib/load-commonjs.ts';
import { tempDir } from './helpers/temp-dir.ts';

test('pieces are below glibc 128 KiB mmap threshold', (t) => {
  t.true(READ_PIECE_BYTES < 128 * 1024);
});

test('text read in pieces equals the file, also where a piece splits a multi-byte character', async (t) => {
  const dir = await tempDir(t, 'xl-load-cjs-');
  const file = join(dir, 'text.js');
  // 1-, 2-, 3- and 4-byte UTF-8 characters; with 3-byte pieces every kind is split somewhere.
  await writeFile(file, 'a é € 𝄞 '.repeat(50) + 'end');
  for (const piece of [1, 2, 3, 5, 64 * 1024]) t.is(readTextInPieces(file, piece), readFileSync(file, 'utf8'), `${piece}-byte pieces`);
});

test('loadCommonJs runs the file as a CommonJS module: exports, module.exports, __filename, __dirname, the require it is given', async (t) => {
  const dir = await tempDir(t, 'xl-load-cjs-');
  await writeFile(join(dir, 'dep.cjs'), 'module.exports = { answer: 42 };');
  await writeFile(
    join(dir, 'bundle.cjs'),
    'const { answer } = require("./dep.cjs"); const path = require("node:path");\n' +
      'module.exports = { answer, file: __filename, dir: __dirname, self: this === module.exports, joined: path.join("a", "b"), unicode: "\u00e9\u20ac" };',
  );
  t.deepEqual(loadCommonJs(join(dir, 'bundle.cjs'), createRequire(join(dir, 'bundle.cjs'))), { answer: 42, file: join(dir, 'bundle.cjs'), dir, self: true, joined: join('a', 'b'), unicode: 'é€' });
  await writeFile(join(dir, 'named.cjs'), 'exports.f = () => "f";');
  const named = loadCommonJs(join(dir, 'named.cjs'), createRequire(join(dir, 'named.cjs'))) as { f: () => string };
  t.is(named.f(), 'f');
});

test('a missing bundle is a BundleLoadError naming the file; a bundle that throws or does not parse fails the load', async (t) => {
  const dir = await tempDir(t, 'xl-load-cjs-');
  const missing = join(dir, 'missing.cjs');
  const err = t.throws(() => loadCommonJs(missing, createRequire(missing)), { instanceOf: BundleLoadError });
  t.true(err?.message.startsWith(`${missing}: cannot read the bundle`), err?.message);
  t.is((err?.cause as NodeJS.ErrnoException | undefined)?.code, 'ENOENT');
  await writeFile(join(dir, 'throws.cjs'), 'throw new RangeError("at load");');
  t.throws(() => loadCommonJs(join(dir, 'throws.cjs'), createRequire(join(dir, 'throws.cjs'))), { instanceOf: RangeError, message: 'at load' });
  await writeFile(join(dir, 'syntax.cjs'), 'module.exports = {');
  t.throws(() => loadCommonJs(join(dir, 'syntax.cjs'), createRequire(join(dir, 'syntax.cjs'))), { instanceOf: SyntaxError });
});
