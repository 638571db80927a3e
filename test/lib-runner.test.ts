import test from 'ava';
import { ProcessRunner } from '../lib/runner.ts';
import { RecordingRunner } from './helpers/recording-runner.ts';
import { CommandError } from '../lib/errors.ts';
import { settlesWithin } from '../lib/child-process.ts';
import { join } from 'node:path';
import { orphanCheck } from './helpers/orphan-check.ts';
import { tempDir } from './helpers/temp-dir.ts';
import { backgroundGrandchild } from './helpers/grandchild.ts';

test('ProcessRunner runs argv without a shell, with LC_ALL=C', async (t) => {
  const r = new ProcessRunner();
  const out = await r.run(['sh', '-c', 'echo "$LC_ALL" "$1"', 'sh', 'a b;c']);
  t.is(out.stdout.trim(), 'C a b;c');
  t.is(out.exitCode, 0);
});

test('ProcessRunner passes stdin input (keys are never put on argv)', async (t) => {
  const out = await new ProcessRunner().run(['cat'], { input: 'secret' });
  t.is(out.stdout, 'secret');
});

test('ProcessRunner failure keeps stderr and exit code in a CommandError', async (t) => {
  const err = await t.throwsAsync(new ProcessRunner().run(['sh', '-c', 'echo boom >&2; exit 3']), { instanceOf: CommandError });
  t.is(err?.exitCode, 3);
  t.is(err?.stderr.trim(), 'boom');
  t.is(err?.name, 'CommandError');
  t.regex(err?.message ?? '', /exited 3: boom/);
});

test('ProcessRunner allowFailure returns the exit code instead of throwing', async (t) => {
  const out = await new ProcessRunner().run(['sh', '-c', 'exit 2'], { allowFailure: true });
  t.is(out.exitCode, 2);
});

test('ProcessRunner times out', async (t) => {
  const err = await t.throwsAsync(new ProcessRunner().run(['sleep', '5'], { timeoutMs: 100 }), { instanceOf: CommandError });
  t.true(err?.timedOut);
});

test('ProcessRunner: a command that exited in time is not reported as timed out while a grandchild holds its pipes past the timeout', async (t) => {
  const grandchild = await backgroundGrandchild(t, 'xl-runner-');
  // sh exits 0 at once; `sleep` inherited stdout/stderr and holds them for 60 s, so the 300 ms
  // timer fires while the pipes drain (lib/pipe-drain.ts, 1 s after the exit).
  const run = new ProcessRunner().run(['sh', '-c', `${grandchild}; echo done`], { timeoutMs: 300 });
  const outcome = run.then(
    (r) => `exit ${r.exitCode}: ${r.stdout.trim()}`,
    (err: unknown) => (err instanceof CommandError && err.timedOut ? 'timed out' : 'failed'),
  );
  // A bound on settling at all (the grandchild holds the pipes for 60 s), not a performance figure.
  t.true(await settlesWithin(outcome, 20_000), 'the pipes are let go of');
  t.is(await outcome, 'exit 0: done');
});

test('ProcessRunner: a command that leaves a background grandchild holding its output pipes returns once it has exited', async (t) => {
  const grandchild = await backgroundGrandchild(t, 'xl-runner-');
  // sh exits 0 at once; `sleep` holds stdout/stderr for 60 s, far beyond the timeout.
  const run = new ProcessRunner().run(['sh', '-c', `${grandchild}; echo done`], { timeoutMs: 15_000 });
  const outcome = run.then(
    (r) => `exit ${r.exitCode}: ${r.stdout.trim()}`,
    (err: unknown) => (err instanceof CommandError && err.timedOut ? 'timed out' : 'failed'),
  );
  t.true(await settlesWithin(outcome, 20_000));
  t.is(await outcome, 'exit 0: done', 'not held until the timeout by the grandchild');
});

const runnerModule = JSON.stringify(join(import.meta.dirname, '..', 'lib', 'runner.ts'));
/** A parent that runs a 60 s command through the runner and prints its pid (the command writes it to a file first). */
const startCommand = (pidFile: string): string => `import { ProcessRunner } from ${runnerModule};
import { readFileSync } from 'node:fs';
void new ProcessRunner().run(['sh', '-c', 'echo $$ > ${pidFile}.tmp && mv ${pidFile}.tmp ${pidFile} && exec sleep 60'], { timeoutMs: 120000 }).catch(() => undefined);
const poll = setInterval(() => {
  try {
    const pid = readFileSync(${JSON.stringify(pidFile)}, 'utf8').trim();
    clearInterval(poll);
    console.log('child ' + pid);
  } catch {
    // not written yet
  }
}, 20);`;

for (const how of ['exits', 'killed by SIGTERM'] as const) {
  test(`ProcessRunner: a running command is SIGTERMed when its parent ${how}`, async (t) => {
    const dir = await tempDir(t, 'xl-runner-');
    await orphanCheck(t, startCommand(join(dir, 'pid')), how);
  });
}

test('ProcessRunner reports a missing binary', async (t) => {
  const err = await t.throwsAsync(new ProcessRunner().run(['/nonexistent/xl-binary']), { instanceOf: CommandError });
  t.is(err?.exitCode, undefined);
});

test('ProcessRunner prefix is prepended (e.g. ip netns exec)', async (t) => {
  const out = await new ProcessRunner(['env']).run(['sh', '-c', 'echo ok']);
  t.is(out.stdout.trim(), 'ok');
});

test('RecordingRunner records a transcript and answers by prefix', async (t) => {
  const r = new RecordingRunner().on(['wg', 'show'], 'dump').fail(['ip', 'route', 'del'], 'RTNETLINK answers: No such process');
  t.is((await r.run(['wg', 'show', 'x', 'dump'])).stdout, 'dump');
  await r.run(['ip', 'link', 'set', 'x', 'up'], { input: 'k' });
  await t.throwsAsync(r.run(['ip', 'route', 'del', '10.0.0.0/24']), { instanceOf: CommandError, message: /No such process/ });
  t.deepEqual(r.transcript(), ['wg show x dump', 'ip link set x up', 'ip route del 10.0.0.0/24']);
  t.is(r.calls[1]?.input, 'k');
});
