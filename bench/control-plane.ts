// Control-plane figures from real processes on 127.0.0.1: a real nats-server with JetStream, the
// coordinator as its own process (bin/crosslink-coordinator), simulated agents sending signed
// registrations and heartbeats, and real MeshWatch instances as the agents' watchers.
// Sections: registration storm, fan-out, heartbeat load, restart storm. Measures; asserts nothing.
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { NatsServer } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { AgentFleet, makeAgents } from './agent-fleet.ts';
import { ControlPlaneLab } from './control-plane-lab.ts';
import { median, ms, percentile, printTable, type Cell } from './report.ts';
import { findPidByArg, processCpuMs } from './processes.ts';
import { cpuBetween } from './thread-cpu.ts';
import { coordinatorCommand } from './coordinator-command.ts';
import { WatcherFleet } from './watchers.ts';

const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));
const maxOf = (xs: readonly number[]): number => xs.reduce((a, b) => Math.max(a, b), -Infinity);
const kib = (bytes: number): string => (bytes / 1024).toFixed(1);
const loadAverage = async (): Promise<string> => (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');

/** Registration requests in flight at once during storms (agents do not coordinate with each other). */
const STORM_CONCURRENCY = 100;

async function withLab<T>(server: NatsServer, options: Parameters<typeof ControlPlaneLab.start>[1], fn: (lab: ControlPlaneLab) => Promise<T>): Promise<T> {
  const lab = await ControlPlaneLab.start(server, options);
  try {
    return await fn(lab);
  } finally {
    await lab.close();
  }
}

async function withWatchers<T>(lab: ControlPlaneLab, count: number, fn: (w: WatcherFleet) => Promise<T>): Promise<T> {
  // Through the coordinator's watch broker, as agents watch (XL_BENCH_WATCH=direct: the nats.js watch, for an A/B).
  const brokered = process.env['XL_BENCH_WATCH'] !== 'direct';
  const watchers = await WatcherFleet.start({ url: lab.server.url, bucket: lab.bucket, coordinatorKey: lab.key.publicKey, count, id: lab.id, ...(brokered ? { brokerPrefix: lab.prefix } : {}) });
  try {
    return await fn(watchers);
  } finally {
    await watchers.stop();
  }
}

// ---- 1. registration storm -------------------------------------------------------------------

/**
 * Storms per size: a small storm is short (100 registrations take ~0.25 s), so it runs several
 * times, each against a fresh coordinator, and the figures are over all of them.
 */
export const stormsFor = (n: number): number => Math.max(1, Math.round(500 / n));

export async function runRegistrationStorm(server: NatsServer, sizes: readonly number[] = [100, 500, 1000]): Promise<void> {
  const rows: Cell[][] = [];
  for (const n of sizes) {
    const storms = stormsFor(n);
    const walls: number[] = [];
    const seenMs: number[] = [];
    const latencies: number[] = [];
    const perStorm: number[] = [];
    let cpuTotal = 0;
    let tickTotal = 0;
    let keys = 0;
    let retries = 0;
    let failed = 0;
    for (let s = 0; s < storms; s++) {
      // Nobody heartbeats here: a long TTL keeps the first registrations from expiring in a long storm.
      await withLab(server, { nodeTtl: '10m' }, (lab) =>
        withWatchers(lab, 1, async (watchers) => {
          await watchers.timeUntil((w) => w.watch.synced, 30_000);
          const fleet = new AgentFleet(lab, await makeAgents(0, n), 15_000);
          const rev = await lab.revision();
          const coordinator = lab.coordinator!;
          const tick0 = await coordinator.cpuMs();
          const cpu0 = await coordinator.threadCpu();
          const t0 = performance.now();
          const seen = watchers.timeUntil((w) => w.watch.snapshot().nodes.size >= n, 180_000, 5);
          const run = await fleet.registerAll(STORM_CONCURRENCY);
          const cpu = cpuBetween(cpu0, await coordinator.threadCpu()).totalMs;
          const ticks = (await coordinator.cpuMs()) - tick0;
          const [seenAt = NaN] = await seen;
          const writes = await lab.writesSince(rev);
          walls.push(run.wallMs);
          seenMs.push(seenAt - t0);
          latencies.push(...run.latenciesMs);
          perStorm.push(cpu / n);
          cpuTotal += cpu;
          tickTotal += ticks;
          keys += writes.nodes + writes.ipam + writes.clusters;
          retries += run.retries;
          failed += run.failed;
        }),
      );
    }
    const regs = n * storms;
    rows.push([
      n,
      storms,
      ms(median(walls)),
      ms(percentile(latencies, 50)),
      ms(percentile(latencies, 99)),
      ms(maxOf(latencies)),
      ms(median(seenMs)),
      ms(cpuTotal / regs),
      storms > 1 ? `${ms(Math.min(...perStorm))}-${ms(maxOf(perStorm))}` : '-',
      ms(tickTotal / regs),
      (keys / regs).toFixed(2),
      retries,
      failed,
    ]);
  }
  printTable({
    title: '1. registration storm: N agents register at once',
    params: { concurrency: STORM_CONCURRENCY, clusters: 10, watchers: 1, nodeTtl: '10m (no heartbeats)', coordinator: `${coordinatorCommand().label}, own process, fresh per storm`, load: await loadAverage() },
    header: ['N', 'storms', 'all registered ms', 'reply p50 ms', 'p99 ms', 'max ms', 'watcher has all N ms', 'coord CPU ms/reg', 'per storm', 'ticks ms/reg', 'keys written/reg', 'retries', 'failed'],
    rows,
    notes: [
      'storms: how many times N agents registered, each storm against a fresh coordinator; times are medians over the storms, reply percentiles over all replies.',
      'coord CPU = on-CPU time of all the coordinator\'s threads (/proc/<pid>/task/*/schedstat, ns) over the storms / all registrations; "per storm" its range.',
      'ticks ms/reg = the same from utime+stime of /proc/<pid>/stat (10 ms ticks; what this column showed before round 20).',
      'keys written/reg counts bucket keys (node, ipam, cluster) changed during the storm, per registration.',
    ],
  });
}

// ---- 2. fan-out ------------------------------------------------------------------------------

export async function runFanOut(server: NatsServer, o: { watchers: number; joins: number; bases: readonly number[] } = { watchers: 50, joins: 30, bases: [100, 500] }): Promise<void> {
  const rows: Cell[][] = [];
  const stages: string[] = [];
  await withLab(server, { nodeTtl: '10m' }, async (lab) => {
    const base = new AgentFleet(lab, [], 15_000);
    // Stage timeline: when the node record's KV put passes the server (a plain subscription on the
    // bucket's stream subject, as the watchers' consumers see it), besides the reply and the watchers.
    const putSeen = new Map<string, number>();
    const putSub = lab.nc.subscribe(`$KV.${lab.bucket}.nodes.>`, {
      callback: (err, msg) => {
        if (!err) putSeen.set(msg.subject.slice(`$KV.${lab.bucket}.nodes.`.length), performance.now());
      },
    });
    await lab.nc.flush();
    let registered = 0;
    await withWatchers(lab, o.watchers, async (watchers) => {
      for (const b of o.bases) {
        // Grow the mesh to b nodes, then let every watcher catch up before timing joins.
        await base.registerAll(STORM_CONCURRENCY, await makeAgents(registered, b - registered));
        registered = b;
        await watchers.timeUntil((w) => w.watch.snapshot().nodes.size >= b, 120_000, 20);
        const joiners = await makeAgents(100_000 + b, o.joins);
        const rev = await lab.revision();
        const before = watchers.traffic();
        const perWatcher: number[] = [];
        const all: number[] = [];
        const replies: number[] = [];
        const puts: number[] = [];
        const cpu0 = await lab.coordinator!.threadCpu();
        const windowStartUs = process.hrtime.bigint() / 1000n;
        for (const j of joiners) {
          // Watch from before the request: the record may reach watchers before the reply reaches the agent.
          const tSend = performance.now();
          const seen = watchers.timeUntil((w) => w.watch.snapshot().nodes.has(j.name), 30_000, 1);
          const { reply, ms: replyMs } = await base.registerOnce(j);
          if (!reply.ok) throw new Error(`join of ${j.name} refused: ${reply.error.message}`);
          replies.push(replyMs);
          const lat = (await seen).map((t) => t - tSend);
          perWatcher.push(...lat);
          all.push(maxOf(lat));
          const put = putSeen.get(j.name);
          if (put !== undefined) puts.push(put - tSend);
        }
        const cpu = cpuBetween(cpu0, await lab.coordinator!.threadCpu());
        const windowEndUs = process.hrtime.bigint() / 1000n;
        stages.push(`mesh ${b}: p50 from the request: node record's KV put seen ${ms(percentile(puts, 50))} ms (${puts.length}/${o.joins}), reply ${ms(percentile(replies, 50))} ms, a watcher has it ${ms(percentile(perWatcher, 50))} ms; coordinator CPU per join ${ms(cpu.totalMs / o.joins)} ms (main thread ${ms(cpu.mainMs / o.joins)}); joins window ${windowStartUs}-${windowEndUs} (CLOCK_MONOTONIC us, as in a --cpu-prof profile)`);
        const after = watchers.traffic();
        const writes = await lab.writesSince(rev);
        const perJoinPerWatcher = o.joins * o.watchers;
        rows.push([
          b,
          o.watchers,
          o.joins,
          ms(percentile(replies, 50)),
          ms(percentile(perWatcher, 50)),
          ms(percentile(perWatcher, 99)),
          ms(percentile(all, 50)),
          ms(percentile(all, 99)),
          ((after.inMsgs - before.inMsgs) / perJoinPerWatcher).toFixed(2),
          kib((after.inBytes - before.inBytes) / perJoinPerWatcher),
          ((writes.nodes + writes.ipam + writes.clusters) / o.joins).toFixed(2),
        ]);
      }
    });
    putSub.unsubscribe();
  });
  printTable({
    title: '2. fan-out: nodes join one by one while M MeshWatch instances watch',
    params: { watchers: o.watchers, joins: o.joins, poll: '1 ms', nodeTtl: '10m (no heartbeats)' },
    header: ['mesh size', 'M', 'K', 'reply p50 ms', 'per watcher p50 ms', 'p99 ms', 'all M have it p50 ms', 'p99 ms', 'msgs/join/watcher', 'KiB/join/watcher', 'keys written/join'],
    rows,
    notes: [
      'latency = registration request sent -> record verified and in the watcher\'s map (before its 150 ms change debounce).',
      'msgs and bytes: what the watcher connections received during the joins (includes idle heartbeats of the push consumers).',
      'all M watchers share this process\'s event loop, so "all M" includes verifying M signatures one after another.',
      ...stages,
    ],
  });
}

// ---- 3. heartbeat load: bench/heartbeat-load.ts ----------------------------------------------

// ---- 4. restart storm ------------------------------------------------------------------------

export async function runRestartStorm(server: NatsServer, o: { nodes: number; watchers: number; nodeTtl: string } = { nodes: 500, watchers: 50, nodeTtl: '20s' }): Promise<void> {
  const rows: Cell[][] = [];
  const restarts: Cell[][] = [];
  const reregister: Cell[][] = [];
  const audits: Cell[][] = [];
  const failureNotes: string[] = [];
  const noteFailures = (event: string, reasons: ReadonlyMap<string, number>): void => {
    if (reasons.size > 0) failureNotes.push(`${event}: heartbeat failures: ${[...reasons].map(([r, n]) => `${n} x ${r}`).join('; ')}`);
  };
  let coldSync = '';
  let heartbeatMs = 0;
  await withLab(server, { nodeTtl: o.nodeTtl }, async (lab) => {
    const fleet = new AgentFleet(lab, await makeAgents(0, o.nodes), 5000);
    const first = await fleet.registerAll(STORM_CONCURRENCY);
    heartbeatMs = first.heartbeatIntervalMs;
    // Agents heartbeat from their registration on (else the early ones expire while the watchers load).
    fleet.startHeartbeats(first.heartbeatIntervalMs);
    const ts = performance.now();
    await withWatchers(lab, o.watchers, async (watchers) => {
      const cold = await watchers.timeUntil((w) => w.watch.synced && w.watch.snapshot().nodes.size >= o.nodes, 120_000, 10);
      coldSync = `cold start: ${o.watchers} watchers connected and loaded ${o.nodes} records in ${ms(maxOf(cold) - ts)} ms (connections opened one after another)`;
      await sleep(first.heartbeatIntervalMs);

      // a) nats-server restart: every connection drops, every watcher re-reads, agents heartbeat at once.
      {
        fleet.resetCounters();
        const rev = await lab.revision();
        const traffic0 = watchers.traffic();
        const sessions0 = watchers.members.map((w) => w.watch.stats().sessions);
        const t0 = performance.now();
        await server.restart();
        const tUp = performance.now();
        const natsPid = await findPidByArg(server.storeDir);
        const natsCpu0 = natsPid === undefined ? NaN : await processCpuMs(natsPid);
        const ownCpu0 = process.cpuUsage();
        const serving = waitFor(() => lab.serves(), { timeoutMs: 60_000, intervalMs: 20, what: 'coordinator serving after the NATS restart' }).then(() => performance.now());
        const resynced = await watchers.timeUntil(
          (w) => {
            const s = w.watch.stats();
            return s.sessions > (sessions0[watchers.members.indexOf(w)] ?? 0) && s.live && w.watch.snapshot().nodes.size >= o.nodes;
          },
          120_000,
          10,
        );
        const natsCpu = natsPid === undefined ? NaN : (await processCpuMs(natsPid)) - natsCpu0;
        const own = process.cpuUsage(ownCpu0);
        const ownCpu = (own.user + own.system) / 1000;
        const servesAt = await serving;
        const traffic1 = watchers.traffic();
        await sleep(first.heartbeatIntervalMs + 1000); // heartbeats after the outage come round
        const writes = await lab.writesSince(rev);
        const hb = fleet.resetCounters();
        noteFailures('nats-server restart', hb.reasons);
        rows.push([
          'nats-server restart',
          ms(tUp - t0),
          ms(servesAt - tUp),
          `${ms(percentile(resynced, 50) - tUp)} / ${ms(maxOf(resynced) - tUp)}`,
          ((traffic1.inMsgs - traffic0.inMsgs) / o.watchers).toFixed(0),
          ms(natsCpu),
          ms(ownCpu),
          writes.nodes,
          writes.nodeDeletes,
          writes.ipam + writes.clusters,
          `${hb.failed}/${hb.unknownNode}`,
          peakShare(hb.sentAtMs, 100),
        ]);
      }

      // b) coordinator restart, clean (SIGTERM: lease released) and crash (SIGKILL): with the stable
      // POD_NAME of deploy/ (the restarted process reclaims its own lease at once) and with a new
      // holder id (it waits the lease out: the "before").
      const names = fleet.agents.map((a) => a.name);
      const events = [
        { label: 'coordinator restart (SIGTERM)', signal: 'SIGTERM', newHolder: false },
        { label: 'coordinator SIGKILL, same POD_NAME', signal: 'SIGKILL', newHolder: false },
        { label: 'coordinator SIGKILL, new holder id', signal: 'SIGKILL', newHolder: true },
      ] as const;
      for (const e of events) {
        fleet.resetCounters();
        const rev = await lab.revision();
        const traffic0 = watchers.traffic();
        const t0 = performance.now();
        fleet.heardAgain.mark(t0);
        await lab.coordinator!.stop(e.signal);
        const tDown = performance.now();
        await lab.startCoordinator({ newHolder: e.newHolder });
        const tServes = performance.now();
        // Every node heard again (each at its own phase: about one interval), then what was written.
        await waitFor(() => fleet.heardAgain.allHeard(names), { timeoutMs: 120_000, intervalMs: 20, what: 'every node heard again' }).catch(() => undefined);
        const heard = fleet.heardAgain.summary(names);
        const traffic1 = watchers.traffic();
        const writes = await lab.writesSince(rev);
        const hb = fleet.resetCounters();
        noteFailures(e.label, hb.reasons);
        restarts.push([
          e.label,
          ms(tDown - t0),
          ms(tServes - t0),
          `${heard.caught} / ${ms(heard.caughtHeardMs)}`,
          ms(heard.allHeardMs),
          `${ms(heard.addedDelayMs.p99)} / ${ms(heard.addedDelayMs.max)}`,
          ((traffic1.inMsgs - traffic0.inMsgs) / o.watchers).toFixed(0),
          writes.nodes,
          writes.nodeDeletes,
          writes.ipam + writes.clusters,
          `${hb.failed}/${hb.unknownNode}`,
          peakShare(hb.sentAtMs, 100),
        ]);
        // The next event starts from steady heartbeats again.
        await sleep(first.heartbeatIntervalMs);
      }

      // c) the periodic audit of every watcher, nothing changed: the old one (a full re-read, what
      // refresh() still does) and the new one (the stream's revision and key count only).
      for (const kind of ['full re-read (before)', 'revision + key count (after)'] as const) {
        const sessions0 = watchers.members.map((w) => w.watch.stats().sessions);
        const traffic0 = watchers.traffic();
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        let inStep = 0;
        if (kind === 'full re-read (before)') {
          for (const w of watchers.members) w.watch.refresh('periodic audit');
          await watchers.timeUntil((w) => w.watch.stats().sessions > (sessions0[watchers.members.indexOf(w)] ?? 0) && w.watch.stats().live, 120_000, 10);
        } else {
          const results = await Promise.all(watchers.members.map((w) => w.watch.runAudit()));
          inStep = results.filter((r) => r.kind === 'in-step').length;
        }
        const wall = performance.now() - t0;
        const cpu = process.cpuUsage(cpu0);
        const traffic1 = watchers.traffic();
        audits.push([
          kind,
          ((traffic1.inMsgs - traffic0.inMsgs) / o.watchers).toFixed(0),
          ((traffic1.inBytes - traffic0.inBytes) / 1024 / o.watchers).toFixed(1),
          ms((cpu.user + cpu.system) / 1000),
          ms(wall),
          kind === 'full re-read (before)' ? '-' : `${inStep}/${o.watchers}`,
        ]);
      }

      // d) every agent restarts and re-registers unchanged (a fleet-wide rollout): nothing may be written.
      const coordinatorNow = lab.coordinator;
      if (coordinatorNow?.running !== true) throw new Error(`the coordinator exited during the run; its last log lines:\n${coordinatorNow?.recentLog() ?? '(none)'}`);
      {
        const rev = await lab.revision();
        const traffic0 = watchers.traffic();
        const cpu0 = await lab.coordinator!.cpuMs();
        const again = await fleet.registerAll(STORM_CONCURRENCY);
        const cpu = (await lab.coordinator!.cpuMs()) - cpu0;
        await sleep(500);
        const traffic1 = watchers.traffic();
        const writes = await lab.writesSince(rev);
        const bumped = [...again.generations].filter(([name, g]) => first.generations.get(name) !== g).length;
        reregister.push([
          o.nodes,
          ms(again.wallMs),
          ms(percentile(again.latenciesMs, 50)),
          ms(percentile(again.latenciesMs, 99)),
          ms(cpu / o.nodes),
          writes.nodes,
          writes.ipam + writes.clusters,
          bumped,
          ((traffic1.inMsgs - traffic0.inMsgs) / o.watchers).toFixed(0),
        ]);
      }
      await fleet.stopHeartbeats();
    });
  });
  printTable({
    title: '4. NATS restart: N registered nodes heartbeating, M watchers',
    params: { N: o.nodes, M: o.watchers, nodeTtl: o.nodeTtl, leaseTtl: '3s', load: await loadAverage() },
    header: ['event', 'down ms', 'coordinator serves again ms', 'watchers re-synced p50 / last ms', 'msgs/watcher', 'nats CPU ms', 'bench CPU ms', 'node writes', 'node deletes', 'ipam+cluster writes', 'hb failed/unknown', 'hb peak 100 ms'],
    rows,
    notes: [
      coldSync,
      '"serves again" and "re-synced" count from the moment the restarted process is up; "down" is the stop (and, for NATS, the start) itself.',
      'nats CPU = utime+stime of the restarted nats-server from start until the last watcher re-synced; bench CPU = this process',
      '(M watchers + N simulated agents) over the same time: M watchers re-reading N records each is M*N signature checks.',
      'msgs/watcher = messages each watcher connection received during the event (a full re-read is about N).',
      'hb peak 100 ms = most heartbeats sent within any 100 ms during the event, of all sent (evenly spread: about 100 ms / interval).',
      ...failureNotes,
    ],
  });
  printTable({
    title: '4a. coordinator restart: N heartbeating nodes, M watchers; every node heard again',
    params: { N: o.nodes, M: o.watchers, nodeTtl: o.nodeTtl, heartbeatInterval: `${heartbeatMs} ms`, leaseTtl: '3s', load: await loadAverage() },
    header: ['event', 'down ms', 'serves again ms (from stop)', 'nodes caught / all caught heard again ms', 'every node heard again ms', 'added delay p99 / max ms', 'msgs/watcher', 'node writes', 'node deletes', 'ipam+cluster writes', 'hb failed/unknown', 'hb peak 100 ms'],
    rows: restarts,
    notes: [
      'caught = nodes whose heartbeat failed during the outage (retried at 1 s x0.5-1.5 five times, then 2 s, 3 s, like the agent); "all caught heard again" counts from the stop.',
      `the new leader's "leader up" makes nodes it has not heard heartbeat within its spread${process.env['XL_BENCH_NO_LEADER_UP'] === '1' ? ' (OFF in this run: XL_BENCH_NO_LEADER_UP=1)' : ''}.`,
      '"every node heard again": from the stop until every node had a heartbeat answered; each node heartbeats at its own phase, so this is about one interval even without any outage.',
      'added delay: per node, its first heartbeat attempt after the stop -> its first answered one (0 for nodes whose turn came after the restart).',
    ],
  });
  printTable({
    title: '4b. fleet re-registration: every agent restarts and registers again, unchanged',
    params: { N: o.nodes, M: o.watchers, concurrency: STORM_CONCURRENCY },
    header: ['N', 'all replied ms', 'reply p50 ms', 'p99 ms', 'coord CPU ms/reg', 'node writes', 'ipam+cluster writes', 'generations bumped', 'msgs/watcher'],
    rows: reregister,
    notes: ['an unchanged re-registration must write nothing: watchers see no churn, generations stay.'],
  });
  printTable({
    title: '4c. periodic audit: every watcher audits once, nothing changed',
    params: { N: o.nodes, M: o.watchers },
    header: ['audit', 'msgs/watcher', 'KiB/watcher', 'bench CPU ms (all watchers)', 'wall ms', 'found in step'],
    rows: audits,
    notes: ['the audit runs every 5 min per agent: N agents x (msgs/watcher) every 300 s for the server.'],
  });
}

/** The most timestamps within any `windowMs`, as "count (share of all)". */
function peakShare(timesMs: readonly number[], windowMs: number): string {
  const sorted = [...timesMs].sort((a, b) => a - b);
  let peak = 0;
  for (let i = 0, j = 0; j < sorted.length; j++) {
    while ((sorted[j] ?? 0) - (sorted[i] ?? 0) >= windowMs) i++;
    peak = Math.max(peak, j - i + 1);
  }
  return sorted.length === 0 ? '-' : `${peak} (${((100 * peak) / sorted.length).toFixed(0)} %)`;
}

// ---- coordinator memory: after building the bucket vs after loading it at start ---------------

async function rssMiB(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(/^\S+:\s+(\d+)/m.exec(status.split('\n').find((l) => l.startsWith(name + ':')) ?? '')?.[1] ?? NaN) / 1024;
  return { rss: field('VmRSS'), peak: field('VmHWM') };
}

/**
 * XL_BENCH_COORDINATOR_HEAP_SNAPSHOT=<dir>: a V8 heap snapshot of the built coordinator, written to
 * <dir> (run with XL_BENCH_COORDINATOR_NODE_FLAGS="--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=<dir>").
 * Off by default: the measured process is unchanged.
 */
async function heapSnapshotOf(pid: number): Promise<void> {
  const dir = process.env['XL_BENCH_COORDINATOR_HEAP_SNAPSHOT'];
  if (dir === undefined || dir === '') return;
  const snapshots = async (): Promise<string[]> => (await readdir(dir)).filter((f) => f.endsWith('.heapsnapshot'));
  const before = new Set(await snapshots());
  process.kill(pid, 'SIGUSR2');
  let size = -1;
  const file = await waitFor(
    async () => {
      const f = (await snapshots()).find((x) => !before.has(x));
      if (f === undefined) return undefined;
      const now = (await stat(join(dir, f))).size;
      const done = now > 0 && now === size;
      size = now;
      return done ? f : undefined;
    },
    { timeoutMs: 180_000, intervalMs: 2000, what: `a heap snapshot of pid ${pid} in ${dir}` },
  );
  process.stdout.write(`heap snapshot of the built coordinator: ${join(dir, file)}\n`);
}

/** N nodes register (no heartbeats, long TTL), then a clean restart loads the same bucket: RSS of each. */
export async function runCoordinatorMemory(server: NatsServer, nodes = 10_000): Promise<void> {
  const rows: Cell[][] = [];
  await withLab(server, { nodeTtl: '30m' }, async (lab) => {
    const fleet = new AgentFleet(lab, await makeAgents(0, nodes), 15_000);
    const run = await fleet.registerAll(STORM_CONCURRENCY);
    // A few seconds for the registration burst's garbage to be collected; RSS is read, not asserted.
    await sleep(5_000);
    const built = await rssMiB(lab.coordinator!.pid);
    rows.push([`after registering ${nodes} nodes (failed ${run.failed})`, built.rss.toFixed(0), built.peak.toFixed(0), await loadAverage()]);
    await heapSnapshotOf(lab.coordinator!.pid);
    await lab.coordinator!.stop('SIGTERM');
    const servesMs = await lab.startCoordinator();
    const loaded0 = await rssMiB(lab.coordinator!.pid);
    rows.push([`restarted, serving (after ${ms(servesMs)} ms)`, loaded0.rss.toFixed(0), loaded0.peak.toFixed(0), await loadAverage()]);
    await sleep(5_000);
    const loaded = await rssMiB(lab.coordinator!.pid);
    rows.push(['restarted, 5 s later', loaded.rss.toFixed(0), loaded.peak.toFixed(0), await loadAverage()]);
  });
  printTable({
    title: `coordinator memory at ${nodes} nodes: built vs loaded from the bucket`,
    params: { concurrency: STORM_CONCURRENCY, nodeTtl: '30m (no heartbeats)', coordinator: 'own process, SIGTERM restart' },
    header: ['moment', 'RSS MiB', 'peak (VmHWM) MiB', 'load 1/5/15'],
    rows,
    notes: ['RSS from /proc/<pid>/status; one run, the machine shared (see the load).'],
  });
}
