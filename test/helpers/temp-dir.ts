// A scratch directory per test, removed when the test ends (also when it fails).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';

/** Creates `<tmpdir>/<prefix><random>` (prefix e.g. 'xl-keys-') and registers its removal on `t`. */
export async function tempDir(t: Pick<ExecutionContext, 'teardown'>, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
