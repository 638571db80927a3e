// The package root is found the same way from the TypeScript sources and from the compiled dist/.
import test from 'ava';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findPackageRoot, PACKAGE_ROOT } from '../lib/package-root.ts';
import { tempDir } from './helpers/temp-dir.ts';

test('findPackageRoot walks up to the nearest package.json (lib/ and dist/lib/ give the same root)', async (t) => {
  t.true(existsSync(join(PACKAGE_ROOT, 'package.json')));
  t.true(existsSync(join(PACKAGE_ROOT, 'deploy', 'agent', 'daemonset.yaml')));
  const dir = await tempDir(t, 'xl-pkgroot-');
  writeFileSync(join(dir, 'package.json'), '{}');
  mkdirSync(join(dir, 'dist', 'lib'), { recursive: true });
  mkdirSync(join(dir, 'lib'), { recursive: true });
  t.is(findPackageRoot(join(dir, 'dist', 'lib')), dir);
  t.is(findPackageRoot(join(dir, 'lib')), dir);
});
