// CPU time of a process split by thread, in nanoseconds, from /proc/<pid>/task/<tid>/schedstat (the
// scheduler's own run-time account: no 10 ms ticks as in /proc/<pid>/stat's utime+stime). The main
// thread (tid = pid) runs the event loop; the others are V8's platform workers (GC, compilation) and
// libuv's thread pool. Node 20 names them all "node", so they are told apart by tid only.
import { readFile, readdir } from 'node:fs/promises';

export interface ThreadCpu {
  /** The main thread's CPU time (ns). */
  readonly mainNs: number;
  /** Every other live thread's CPU time together (ns). */
  readonly othersNs: number;
  /** How many threads were read. */
  readonly threads: number;
  /** The other threads' CPU time (ns) by tid. */
  readonly others: ReadonlyMap<string, number>;
}

/** Field 1 of schedstat: time spent on the CPU, ns. A thread that exited meanwhile counts 0. */
async function runNs(pid: number, tid: string): Promise<number> {
  try {
    const text = await readFile(`/proc/${pid}/task/${tid}/schedstat`, 'utf8');
    return Number(text.split(' ')[0]);
  } catch {
    return 0;
  }
}

export async function threadCpu(pid: number): Promise<ThreadCpu> {
  const tids = await readdir(`/proc/${pid}/task`);
  const times = await Promise.all(tids.map(async (tid) => ({ main: tid === String(pid), ns: await runNs(pid, tid) })));
  let mainNs = 0;
  let othersNs = 0;
  for (const t of times) {
    if (t.main) mainNs += t.ns;
    else othersNs += t.ns;
  }
  const others = new Map(tids.map((tid, i) => [tid, times[i]?.ns ?? 0] as const).filter(([tid]) => tid !== String(pid)));
  return { mainNs, othersNs, threads: tids.length, others };
}

/**
 * CPU used between two readings, in ms: main thread, the other threads, and both. Summed per thread:
 * a thread that started meanwhile counts from 0, one that exited meanwhile counts 0 (its time since
 * `a` is gone with it). A difference of the two readings' sums would subtract an exited thread's
 * whole life, which made "others" negative.
 */
export function cpuBetween(a: ThreadCpu, b: ThreadCpu): { mainMs: number; othersMs: number; totalMs: number } {
  const mainMs = (b.mainNs - a.mainNs) / 1e6;
  let othersNs = 0;
  for (const [tid, ns] of b.others) othersNs += ns - (a.others.get(tid) ?? 0);
  const othersMs = othersNs / 1e6;
  return { mainMs, othersMs, totalMs: mainMs + othersMs };
}
