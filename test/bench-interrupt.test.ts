// `npm run bench` interrupted (bench/interrupt.ts): a small piece of the bench — its signal handler, a
// real nats-server (lib/nats-server.ts, as main.ts starts it, its store removed by a registered
// cleanup), a plain child and one that ignores SIGTERM (a coordinator whose shutdown hangs on a
// nats-server that is stopping too) — runs in a child process; the test signals it and checks by pid,
// once it has exited, that nothing it started survives. The old handler exited at once and left the
// exit hook's SIGTERM unwaited: the stubborn child outlived the bench.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { findPidByArg } from '../bench/processes.ts';
import { packagePath } from '../lib/package-root.ts';
import { settlesWithin } from '../lib/child-process.ts';
import { waitFor } from '../lib/wait.ts';
import { alive } from './helpers/orphan-check.ts';

const BENCH_PIECE = `
import { onBenchInterrupt, stopOnInterrupt } from ${JSON.stringify(packagePath('bench/interrupt.ts'))};
import { Child } from ${JSON.stringify(packagePath('lib/child-process.ts'))};
import { NatsServer } from ${JSON.stringify(packagePath('lib/nats-server.ts'))};
stopOnInterrupt({ graceMs: 500 });
const server = await NatsServer.start({ name: 'xl-bench-interrupt' });
onBenchInterrupt(() => server.stop());
const plain = Child.start(['sleep', '60']);
const stubborn = Child.start([process.execPath, '-e', "process.on('SIGTERM', () => {}); console.log('armed'); setInterval(() => {}, 1000);"]);
await stubborn.waitForLine('armed', { timeoutMs: 10000 });
console.log('started ' + JSON.stringify({ pids: [plain.pid, stubborn.pid], store: server.storeDir }));
setInterval(() => {}, 1000);
`;

async function interrupted(t: ExecutionContext, signal: 'SIGINT' | 'SIGTERM', expectedCode: number): Promise<void> {
  const bench = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', BENCH_PIECE], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  bench.stdout.on('data', (d: Buffer) => (out += d.toString()));
  bench.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => bench.once('exit', (code) => resolve(code)));
  const pids: number[] = [];
  t.teardown(() => {
    for (const pid of [bench.pid ?? -1, ...pids]) if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
  });
  const started = await waitFor(
    () => {
      const m = /started (\{.*\})\n/.exec(out);
      return m?.[1] === undefined ? undefined : (JSON.parse(m[1]) as { pids: number[]; store: string });
    },
    { timeoutMs: 30_000, intervalMs: 20, what: `the bench piece started (stderr: ${err})` },
  );
  const nats = await findPidByArg(started.store);
  t.truthy(nats, 'the nats-server found by its store dir');
  pids.push(...started.pids, nats ?? -1);
  t.true(pids.every(alive), 'everything runs before the signal');

  bench.kill(signal);
  t.true(await settlesWithin(exited, 20_000), `the bench exits within 20 s of ${signal}`);
  t.is(await exited, expectedCode, err);
  // Checked as soon as the bench has exited: it must have waited for its children, not left them dying.
  t.deepEqual(pids.filter(alive), [], 'no process the bench started outlives it');
  t.false(existsSync(started.store), 'the registered cleanup ran (the store is removed)');
  t.regex(err, /stopping every process the bench started/);
}

test('SIGINT (Ctrl-C): every child the bench started is stopped — one ignoring SIGTERM SIGKILLed — before it exits 130', (t) => interrupted(t, 'SIGINT', 130));

test('SIGTERM: the same, exit 143', (t) => interrupted(t, 'SIGTERM', 143));
