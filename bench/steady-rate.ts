// The idle baseline of the heartbeat bench (bench/heartbeat-load.ts): what a process spends per
// second while nobody talks to it, as the MEDIAN of one-second slices of the idle window, not the
// window's average. A full GC (V8's workers mark and sweep on "other" threads) that lands in the
// idle window is a burst of tens of ms in one slice; averaged into the baseline it was subtracted
// from the loaded window's rate and could make "CPU per heartbeat (others)" negative at 200 nodes.
// The median of ten slices ignores one or two such bursts and moves with a steady cost. Pure.
import { cpuBetween, type ThreadCpu } from './thread-cpu.ts';

/** A reading: when (ms, monotonic) and the process's CPU by thread. */
export interface CpuReading {
  readonly at: number;
  readonly threads: ThreadCpu;
}

/** CPU ms per wall second: both, the main thread, the other threads. */
export interface CpuRate {
  readonly total: number;
  readonly main: number;
  readonly others: number;
}

/** The rate between two readings. */
export function rateBetween(a: CpuReading, b: CpuReading): CpuRate {
  const secs = (b.at - a.at) / 1000;
  const d = cpuBetween(a.threads, b.threads);
  return { total: d.totalMs / secs, main: d.mainMs / secs, others: d.othersMs / secs };
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
};

/** The steady rate over consecutive readings: each series' median over the slices between them (at least two readings). */
export function steadyRate(readings: readonly CpuReading[]): CpuRate {
  if (readings.length < 2) throw new RangeError(`steadyRate: ${readings.length} readings; at least 2 are needed`);
  const slices = readings.slice(1).map((r, i) => rateBetween(readings[i] as CpuReading, r));
  return { total: median(slices.map((s) => s.total)), main: median(slices.map((s) => s.main)), others: median(slices.map((s) => s.others)) };
}
