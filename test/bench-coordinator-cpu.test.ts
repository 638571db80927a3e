// The heartbeat/idle bench's plumbing (bench/coordinator-command.ts, bench/thread-cpu.ts): which
// coordinator it starts (this checkout's compiled one with its V8 flags, or another checkout's
// through that checkout's tsx, for an A/B against old code) and per-thread CPU from schedstat.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COORDINATOR_NODE_FLAGS, coordinatorCommand } from '../bench/coordinator-command.ts';
import { cpuBetween, threadCpu } from '../bench/thread-cpu.ts';

test('default: this checkout\'s dist/ coordinator with the V8 flags bin/run-compiled uses, profiling flags added', (t) => {
  const c = coordinatorCommand({ XL_BENCH_COORDINATOR_NODE_FLAGS: ' --cpu-prof  --cpu-prof-dir=/tmp/p ' });
  t.true(c.own);
  t.true(c.enrollment);
  t.deepEqual(c.argv.slice(1, -1), [...COORDINATOR_NODE_FLAGS, '--cpu-prof', '--cpu-prof-dir=/tmp/p']);
  t.regex(c.argv.at(-1) ?? '', /\/dist\/coordinator\/main\.js$/);
});

test('XL_BENCH_COORDINATOR_DIR: that checkout\'s coordinator through its own tsx, node defaults; enrollment only if it has join credentials', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'xl-bench-cmd-'));
  try {
    const missing = t.throws(() => coordinatorCommand({ XL_BENCH_COORDINATOR_DIR: dir }));
    t.regex(missing.message, /XL_BENCH_COORDINATOR_DIR=.*coordinator\/main\.ts not found/);
    await mkdir(join(dir, 'coordinator'));
    await mkdir(join(dir, 'node_modules', 'tsx', 'dist', 'esm'), { recursive: true });
    await writeFile(join(dir, 'coordinator', 'main.ts'), '');
    await writeFile(join(dir, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs'), '');
    const old = coordinatorCommand({ XL_BENCH_COORDINATOR_DIR: dir, XL_BENCH_COORDINATOR_NODE_FLAGS: '--cpu-prof' });
    t.false(old.own);
    t.false(old.enrollment, 'no protocol/join-credential.ts: registrations without joinSig, no clusters enrolled');
    t.deepEqual(old.argv.slice(1), ['--no-warnings=ExperimentalWarning', '--import', `file://${join(dir, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs')}`, '--cpu-prof', join(dir, 'coordinator', 'main.ts')]);
    for (const f of COORDINATOR_NODE_FLAGS) t.false(old.argv.includes(f), `${f}: the old checkout ran with node's defaults`);
    await mkdir(join(dir, 'protocol'));
    await writeFile(join(dir, 'protocol', 'join-credential.ts'), '');
    t.true(coordinatorCommand({ XL_BENCH_COORDINATOR_DIR: dir }).enrollment);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('threadCpu: the main thread\'s ns grow with work done on it; the others are counted apart', async (t) => {
  // An independent account of the same thread: its utime+stime in /proc/<pid>/task/<pid>/stat (10 ms
  // ticks). process.cpuUsage() will not do: it counts every thread, and other threads of this process
  // (tsx's loader, V8's workers) may run meanwhile.
  const mainTicksMs = (): number => {
    const fields = readFileSync(`/proc/${process.pid}/task/${process.pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime (fields 14, 15), USER_HZ 100
  };
  const a = await threadCpu(process.pid);
  const t0 = mainTicksMs();
  // Spin on this (the main) thread with small-integer arithmetic (nothing allocated) until its own
  // tick account has grown 100 ms.
  let x = 0;
  while (mainTicksMs() - t0 < 100) for (let i = 0; i < 100_000; i++) x = (x * 31 + i) | 0;
  const ticks = mainTicksMs() - t0;
  const b = await threadCpu(process.pid);
  t.true(a.threads >= 1);
  const d = cpuBetween(a, b);
  // Both accounts of the main thread agree within the ticks' resolution (a reading of another thread
  // would show ~0 here).
  t.true(d.mainMs >= ticks - 30, `main thread ${d.mainMs} ms by schedstat, ${ticks} ms by ticks (x=${x})`);
  t.is(d.totalMs, d.mainMs + d.othersMs);
  t.true(d.othersMs >= 0);
});
