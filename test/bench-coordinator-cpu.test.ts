// The heartbeat/idle bench's plumbing (bench/coordinator-command.ts, bench/thread-cpu.ts): which
// coordinator it starts (this checkout's compiled one with its V8 flags, or another checkout's
// through that checkout's tsx, for an A/B against old code) and per-thread CPU from schedstat.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COORDINATOR_NODE_FLAGS, coordinatorCommand } from '../bench/coordinator-command.ts';
import { cpuBetween, threadCpu, type ThreadCpu } from '../bench/thread-cpu.ts';
import { steadyRate, type CpuReading } from '../bench/steady-rate.ts';

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

/** A reading of main-thread and other-thread ns (by tid), `at` ms. */
const reading = (at: number, mainMs: number, others: Record<string, number>): CpuReading => {
  const map = new Map(Object.entries(others).map(([tid, ms]) => [tid, ms * 1e6] as const));
  const threads: ThreadCpu = { mainNs: mainMs * 1e6, othersNs: [...map.values()].reduce((x, y) => x + y, 0), threads: map.size + 1, others: map };
  return { at, threads };
};

test('cpuBetween sums per thread: a thread that exited counts 0 (not minus its life), one that started counts from 0', (t) => {
  const a = reading(0, 100, { '11': 50, '12': 400 });
  const b = reading(1000, 110, { '11': 53, '13': 2 }); // 12 exited (400 ms of life), 13 started
  const d = cpuBetween(a.threads, b.threads);
  t.is(d.mainMs, 10);
  t.is(d.othersMs, 5, '3 ms of 11 and 2 ms of 13; nothing of 12');
  t.is(d.totalMs, 15);
});

test('steadyRate: the idle baseline is the median one-second slice, so a GC burst in the idle window is not subtracted as a steady cost', (t) => {
  // Idle: main 1 ms/s, others 0.5 ms/s, and one 40 ms GC on another thread in the 4th second.
  const idle: CpuReading[] = [];
  let main = 0;
  let gc = 0;
  for (let s = 0; s <= 10; s++) {
    idle.push(reading(s * 1000, main, { '21': gc }));
    main += 1;
    gc += s === 3 ? 40.5 : 0.5;
  }
  const base = steadyRate(idle);
  t.deepEqual(base, { total: 1.5, main: 1, others: 0.5 });
  // The loaded window: others 2 ms/s (the heartbeats' garbage). Against the window's average (4.5 ms/s
  // of others) the heartbeats' share would be negative; against the median it is 1.5 ms/s.
  const whole = cpuBetween(idle[0]!.threads, idle.at(-1)!.threads).othersMs / 10;
  t.is(whole, 4.5);
  t.true(2 - whole < 0, 'the old accounting');
  t.is(2 - base.others, 1.5);
  t.throws(() => steadyRate(idle.slice(0, 1)), { instanceOf: RangeError, message: /1 readings; at least 2/ });
});
