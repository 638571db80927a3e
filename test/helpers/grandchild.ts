// A background grandchild that inherits a command's output pipes (`sleep 60 &`), for the tests of
// lib/runner.ts and lib/child-process.ts that must not wait for it; SIGKILLed at the test's end.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { tempDir } from './temp-dir.ts';

/** A shell fragment starting `sleep 60` in the background and writing its pid down; killed at teardown. */
export async function backgroundGrandchild(t: ExecutionContext, prefix: string): Promise<string> {
  const pidFile = join(await tempDir(t, prefix), 'pid');
  t.teardown(() => {
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
    } catch {
      // never started, or already gone
    }
  });
  return `sleep 60 & echo $! > ${pidFile}`;
}
