// lib/child-process.ts: the one way to run and stop a long-lived child. Real (tiny node) children;
// the escalation itself is also checked on a fake target that never dies.
import { join } from 'node:path';
import test from 'ava';
import { Child, ChildProcessError, ChildStopError, settlesWithin, stopEscalating } from '../lib/child-process.ts';
import { TimeoutError } from '../lib/errors.ts';
import { orphanCheck } from './helpers/orphan-check.ts';
import { backgroundGrandchild } from './helpers/grandchild.ts';

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

const childModule = JSON.stringify(join(import.meta.dirname, '..', 'lib', 'child-process.ts'));
const startChild = `import { Child } from ${childModule};
const c = Child.start(['sleep', '60']);
console.log('child ' + c.pid);`;

test('a child is SIGTERMed when its parent exits without stopping it', (t) => orphanCheck(t, startChild, 'exits'));
test('a child is SIGTERMed when its parent dies of an unhandled SIGTERM', (t) => orphanCheck(t, startChild, 'killed by SIGTERM'));

test('exited settles once the child has exited, even while a background grandchild holds its output pipes', async (t) => {
  const grandchild = await backgroundGrandchild(t, 'xl-child-');
  // sh prints and exits at once; `sleep` inherited stdout/stderr and holds them for 60 s.
  const c = Child.start(['sh', '-c', `${grandchild}; echo started`]);
  // A bound on settling at all (the grandchild holds the pipes for 60 s), not a performance figure.
  t.true(await settlesWithin(c.exited, 20_000), "'close' waits for the grandchild; the exit must not");
  const exit = await c.exited;
  t.is(exit.code, 0);
  t.deepEqual(c.tail(), ['started'], 'what it wrote before exiting is kept');
  t.deepEqual(await c.stop({ graceMs: 1000 }), exit);
});

test('stop: a child whose background grandchild holds its output pipes is gone at its exit, not reported as surviving SIGKILL', async (t) => {
  const grandchild = await backgroundGrandchild(t, 'xl-child-');
  const c = Child.start(['sh', '-c', `${grandchild}; echo started; exec sleep 60`]);
  await c.waitForLine('started', { timeoutMs: 10_000 });
  let escalated = false;
  const exit = await c.stop({ graceMs: 10_000, killWaitMs: 10_000, onEscalate: () => (escalated = true) });
  t.is(exit.signal, 'SIGTERM');
  t.false(escalated, 'SIGTERM was enough: the exit is what counts, not the pipes');
});
