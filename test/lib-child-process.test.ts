// lib/child-process.ts: the one way to run and stop a long-lived child. Real (tiny node) children;
// the escalation itself is also checked on a fake target that never dies.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { Child, ChildProcessError, ChildStopError, stopEscalating } from '../lib/child-process.ts';
import { TimeoutError } from '../lib/errors.ts';
import { waitFor } from '../lib/wait.ts';

const node = (script: string): Child => Child.start([process.execPath, '-e', script]);

test('output is read line by line; waitForLine resolves on the readiness line; stop = SIGTERM and the exit', async (t) => {
  const c = node("console.log('starting'); setTimeout(() => console.error('Server is ready'), 20); setInterval(() => {}, 1000);");
  t.teardown(() => c.kill('SIGKILL'));
  await c.waitForLine('is ready', { timeoutMs: 10_000 });
  t.true(c.running);
  t.deepEqual(c.tail(), ['starting', 'Server is ready']);
  const exit = await c.stop({ graceMs: 10_000 });
  t.is(exit.signal, 'SIGTERM');
  t.false(c.running);
  t.deepEqual(c.exit, exit);
});

test('a child that ignores SIGTERM is SIGKILLed after the grace period, and the escalation is reported', async (t) => {
  const c = node("process.on('SIGTERM', () => {}); console.log('armed'); setInterval(() => {}, 1000);");
  t.teardown(() => c.kill('SIGKILL'));
  await c.waitForLine('armed', { timeoutMs: 10_000 });
  let escalated = false;
  const exit = await c.stop({ graceMs: 200, onEscalate: () => (escalated = true) });
  t.true(escalated);
  t.is(exit.signal, 'SIGKILL');
});

test('a child exiting before its readiness line rejects waitForLine with its exit and output', async (t) => {
  const c = node("console.error('listen error: boom'); process.exit(3);");
  const err = await t.throwsAsync(c.waitForLine('is ready', { timeoutMs: 10_000 }), { instanceOf: ChildProcessError });
  t.regex(err.message, /exited \(3\) before printing "is ready": listen error: boom/);
  t.is((await c.stop({ graceMs: 100 })).code, 3);
});

test('waitForLine has a deadline', async (t) => {
  const c = node('setInterval(() => {}, 1000);');
  t.teardown(() => c.kill('SIGKILL'));
  await t.throwsAsync(c.waitForLine('never', { timeoutMs: 100 }), { instanceOf: TimeoutError });
  t.true(c.running);
  await c.stop({ graceMs: 10_000 });
});

test('a missing binary does not throw at start: exited carries the start error', async (t) => {
  const c = Child.start(['/nonexistent/xl-no-such-binary']);
  const exit = await c.exited;
  t.is(exit.code, undefined);
  t.regex(exit.startError ?? '', /ENOENT|xl-no-such-binary/);
  t.false(c.running);
});

test('stopEscalating: SIGTERM, then SIGKILL, and false when the process survives both deadlines', async (t) => {
  const sent: string[] = [];
  const gone = await stopEscalating({ signal: (s) => sent.push(s), waitExit: () => Promise.resolve(false) }, { graceMs: 1, killWaitMs: 1 });
  t.false(gone);
  t.deepEqual(sent, ['SIGTERM', 'SIGKILL']);
  const polite: string[] = [];
  t.true(await stopEscalating({ signal: (s) => polite.push(s), waitExit: () => Promise.resolve(true) }, { graceMs: 1 }));
  t.deepEqual(polite, ['SIGTERM']);
});

test('ChildStopError names the command and the pid', (t) => {
  const e = new ChildStopError(['wireguard-go', '-f', 'xl0'], 42, 25_000);
  t.is(e.name, 'ChildStopError');
  t.regex(e.message, /wireguard-go -f xl0 \(pid 42\) is still running 25000 ms after SIGTERM and SIGKILL/);
});

/** Whether a pid is still alive (a zombie of ours counts as gone). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
}

/** A parent process that starts a long-lived Child, prints its pid, then ends as `how` says. */
async function orphanCheck(t: ExecutionContext, how: 'exits' | 'killed by SIGTERM'): Promise<void> {
  const script = `import { Child } from ${JSON.stringify(join(import.meta.dirname, '..', 'lib', 'child-process.ts'))};
const c = Child.start(['sleep', '60']);
console.log('child ' + c.pid);
${how === 'exits' ? 'setTimeout(() => process.exit(0), 100);' : 'setInterval(() => {}, 1000);'}`;
  const parent = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  parent.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const pid = await waitFor(
    () => {
      const m = /child (\d+)/.exec(out);
      return m ? Number(m[1]) : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 20, what: 'the child pid' },
  );
  t.teardown(() => {
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  if (how === 'killed by SIGTERM') parent.kill('SIGTERM');
  await waitFor(() => (alive(pid) ? undefined : true), { timeoutMs: 30_000, intervalMs: 20, what: `child ${pid} gone after its parent ${how}` });
  t.pass();
}

test('a child is SIGTERMed when its parent exits without stopping it', (t) => orphanCheck(t, 'exits'));
test('a child is SIGTERMed when its parent dies of an unhandled SIGTERM', (t) => orphanCheck(t, 'killed by SIGTERM'));
