// Whether children die with their parent: a parent process (node + tsx) runs `start` — a module
// body that starts a child and prints `child <pid>` — then ends as `how` says; the child must be
// gone within a deadline (lib/exit-cleanup.ts). The parent does not stop the child itself.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { ExecutionContext } from 'ava';
import { waitFor } from '../../lib/wait.ts';

/** Whether a pid is still alive (a zombie of ours counts as gone). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

export type ParentEnd = 'exits' | 'killed by SIGTERM';

/** Runs `start` (ES module source) in a parent process, ends that parent as `how` says and waits until the printed child pid is gone. */
export async function orphanCheck(t: ExecutionContext, start: string, how: ParentEnd): Promise<void> {
  // The parent exits when told to (a line on its stdin), after the test has seen the child's pid.
  const script = `${start}
process.stdin.once('data', () => process.exit(0));`;
  const parent = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => {
    if (parent.exitCode === null && parent.signalCode === null) parent.kill('SIGKILL');
  });
  let out = '';
  parent.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const pid = await waitFor(
    () => {
      const m = /child (\d+)\n/.exec(out);
      return m ? Number(m[1]) : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 20, what: 'the child pid' },
  );
  t.teardown(() => {
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  if (how === 'killed by SIGTERM') parent.kill('SIGTERM');
  else parent.stdin.write('exit\n');
  await waitFor(() => (alive(pid) ? undefined : true), { timeoutMs: 20_000, intervalMs: 20, what: `child ${pid} gone after its parent ${how}` });
  t.pass();
}
