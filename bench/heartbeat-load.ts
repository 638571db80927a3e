// Section 3 of the control-plane bench: the coordinator's CPU per heartbeat and its idle CPU, per
// fleet size, each size on a fresh control plane (its own coordinator process and bucket).
//
// Method (docs/benchmarks.md, issue 7 round 20):
//  - N simulated agents register, then heartbeat at the advised interval (node TTL 20 s: every 5 s);
//  - the window starts once every node's first heartbeat has been answered (a node's first heartbeat
//    writes its identity binding once: issue 8) and one more second has passed: a steady state;
//  - the heartbeat window lasts `windowMs` (10 s: ~2,000 heartbeats at N = 1,000);
//  - heartbeats are MAC'd as the agent sends them (K agreed at registration, before the window), or
//    signed where the coordinator refuses MACs (an older one) or XL_BENCH_HEARTBEAT_FORM=signed;
//  - then the agents fall silent; after `settleMs` the idle window (`idleMs`) measures what the
//    coordinator spends with N live nodes and nobody talking (lease renewals, expiry rounds): the
//    median of its one-second slices (bench/steady-rate.ts), so a GC landing in it is not taken for
//    a steady cost and subtracted from the heartbeat window. The windows fit inside the TTL, so
//    nobody expires (the table shows node deletions: must be 0);
//  - CPU comes from /proc/<pid>/task/*/schedstat (ns, per thread: main thread vs the others, i.e.
//    V8's GC/compiler workers and libuv's pool), and for comparison with earlier rounds from
//    /proc/<pid>/stat's utime+stime (10 ms ticks).
// XL_BENCH_COORDINATOR_DIR=<checkout> measures another checkout's coordinator (bench/coordinator-command.ts).
import { performance } from 'node:perf_hooks';
import type { NatsServer } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { AgentFleet, makeAgents } from './agent-fleet.ts';
import { ControlPlaneLab } from './control-plane-lab.ts';
import { coordinatorCommand } from './coordinator-command.ts';
import { benchHeartbeatForm } from './simulated-agent.ts';
import { ms, percentile, printTable, type Cell } from './report.ts';
import { rateBetween, steadyRate } from './steady-rate.ts';
import type { ThreadCpu } from './thread-cpu.ts';

const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));

/** Registration requests in flight at once (as in the other control-plane sections). */
const STORM_CONCURRENCY = 100;

export interface HeartbeatLoadOptions {
  readonly sizes: readonly number[];
  readonly nodeTtl: string;
  readonly windowMs: number;
  readonly settleMs: number;
  readonly idleMs: number;
}

export const HEARTBEAT_LOAD_DEFAULTS: HeartbeatLoadOptions = { sizes: [200, 1000], nodeTtl: '20s', windowMs: 10_000, settleMs: 2_000, idleMs: 10_000 };

interface Reading {
  readonly at: number;
  /** CLOCK_MONOTONIC in µs, the clock of a --cpu-prof profile's timestamps (to cut a window out of it). */
  readonly monoUs: bigint;
  readonly threads: ThreadCpu;
  readonly tickMs: number;
}

async function read(lab: ControlPlaneLab): Promise<Reading> {
  const c = lab.coordinator!;
  const [threads, tickMs] = await Promise.all([c.threadCpu(), c.cpuMs()]);
  return { at: performance.now(), monoUs: process.hrtime.bigint() / 1000n, threads, tickMs };
}

/** ms of CPU per wall second between two readings: total, main thread, other threads, and from ticks. */
function rate(a: Reading, b: Reading): { total: number; main: number; others: number; ticks: number; secs: number } {
  const secs = (b.at - a.at) / 1000;
  return { ...rateBetween(a, b), ticks: (b.tickMs - a.tickMs) / secs, secs };
}

/** Readings every second over `ms` (the first one now). */
async function readEverySecond(lab: ControlPlaneLab, ms: number): Promise<Reading[]> {
  const readings = [await read(lab)];
  const end = readings[0]!.at + ms;
  while (performance.now() < end) {
    await sleep(Math.min(1000, end - performance.now()));
    readings.push(await read(lab));
  }
  return readings;
}

async function measureSize(server: NatsServer, n: number, o: HeartbeatLoadOptions, windows: string[]): Promise<Cell[]> {
  const lab = await ControlPlaneLab.start(server, { nodeTtl: o.nodeTtl });
  try {
    const fleet = new AgentFleet(lab, await makeAgents(0, n), 5000);
    const run = await fleet.registerAll(STORM_CONCURRENCY);
    const interval = run.heartbeatIntervalMs;
    fleet.startHeartbeats(interval);
    // Steady state: every node has had its first heartbeat answered (that one writes the binding).
    await waitFor(() => fleet.lastOkAt.size >= n - run.failed, { timeoutMs: 3 * interval + 30_000, intervalMs: 100, what: `every node's first heartbeat answered (${fleet.lastOkAt.size}/${n})` });
    await sleep(1000);
    fleet.resetCounters();
    const h0 = await read(lab);
    await sleep(o.windowMs);
    const h1 = await read(lab);
    const c = fleet.resetCounters();
    const forms = fleet.heartbeatForms();
    windows.push(`N ${n}: heartbeats sent ${forms.mac} MAC'd, ${forms.signed} signed at the window's end (${c.macRefused} MAC heartbeats refused in the window and sent again signed)`);
    await fleet.stopHeartbeats();
    const rev = await lab.revision();
    await sleep(o.settleMs);
    const idleReadings = await readEverySecond(lab, o.idleMs);
    const i0 = idleReadings[0]!;
    const i1 = idleReadings.at(-1)!;
    const deletes = (await lab.writesSince(rev)).nodeDeletes;
    windows.push(`N ${n}: heartbeat window ${h0.monoUs}-${h1.monoUs}, idle window ${i0.monoUs}-${i1.monoUs} (CLOCK_MONOTONIC us, as in a --cpu-prof profile)`);
    const loaded = rate(h0, h1);
    // The idle baseline: the median one-second slice (a GC in the idle window is no steady cost); ticks over the whole window (10 ms resolution).
    const idle = { ...steadyRate(idleReadings), ticks: rate(i0, i1).ticks };
    const perHb = (x: number, y: number): string => (c.ok > 0 ? (((x - y) * loaded.secs * 1000) / c.ok).toFixed(0) : '-');
    return [
      n,
      interval,
      c.ok,
      (c.ok / loaded.secs).toFixed(0),
      `${ms(idle.total)} (${ms(idle.main)} + ${ms(idle.others)})`,
      ms(idle.ticks),
      `${ms(loaded.total)} (${ms(loaded.main)} + ${ms(loaded.others)})`,
      `${perHb(loaded.total, idle.total)} (${perHb(loaded.main, idle.main)} + ${perHb(loaded.others, idle.others)})`,
      perHb(loaded.ticks, idle.ticks),
      ms(percentile(c.latenciesMs, 50)),
      ms(percentile(c.latenciesMs, 99)),
      c.failed + c.unknownNode,
      deletes,
      `${i1.threads.threads}`,
    ];
  } finally {
    await lab.close();
  }
}

export async function runHeartbeatLoad(server: NatsServer, o: HeartbeatLoadOptions = HEARTBEAT_LOAD_DEFAULTS): Promise<void> {
  const rows: Cell[][] = [];
  const windows: string[] = [];
  for (const n of o.sizes) rows.push(await measureSize(server, n, o, windows));
  printTable({
    title: '3. heartbeat load: N nodes heartbeating at the advised interval, then idle',
    params: {
      nodeTtl: o.nodeTtl,
      window: `${o.windowMs} ms from 1 s after every node's first heartbeat`,
      idle: `${o.idleMs} ms, ${o.settleMs} ms after the last heartbeat`,
      coordinator: coordinatorCommand().label,
      heartbeats: benchHeartbeatForm() === 'signed' ? 'signed (XL_BENCH_HEARTBEAT_FORM=signed)' : 'MAC (protocol/heartbeat-mac.ts), signed where the coordinator refuses MACs',
    },
    header: ['N', 'interval ms', 'heartbeats', 'per s', 'idle ms/s (main + others)', 'idle ms/s ticks', 'loaded ms/s (main + others)', 'CPU us/heartbeat (main + others)', 'us/hb ticks', 'reply p50 ms', 'p99 ms', 'failed', 'expired while idle', 'threads'],
    rows,
    notes: [
      'CPU from /proc/<pid>/task/*/schedstat (ns, per thread; "main" = the event loop, "others" = V8 workers and libuv pool); "ticks" from /proc/<pid>/stat utime+stime (10 ms ticks), as in earlier rounds.',
      'idle ms/s: the median of the idle window\'s one-second slices, each series on its own (a GC landing in the window is no steady cost); ticks: the whole window.',
      'CPU us/heartbeat = (loaded - idle) CPU per second x window / heartbeats answered ok in the window; per thread, a thread that exited counts 0, one that started counts from 0.',
      'each N on a fresh coordinator; "expired while idle" counts node deletions from the heartbeats\' stop to the idle window\'s end (must be 0).',
      ...windows,
    ],
  });
}
