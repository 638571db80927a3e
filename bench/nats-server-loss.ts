// `npm run bench -- nats-server-loss[:trials[,nodes]]` (issue 10, "the distributed engine,
// exercised"): a real 3-server nats-server cluster on 127.0.0.1 (cluster routes, the bucket at R3),
// two coordinator processes with the shipped lease (a leader and a warm follower), N simulated nodes
// heartbeating and one agent-side MeshWatch per server. Per trial the server leading the bucket's
// stream is stopped and, per phase: a new stream leader elected, a node joining right after the
// loss registered, the heartbeats' gap, whether the leader lease moved (a lease shorter than the
// election would flap), each watch seeing the new node (resumed or re-read), and the server, started
// again, a current replica. Real packets: test/lab-nats-cluster.test.ts (namespaces, wireguard-go).
// XL_BENCH_NATS_STOP=SIGKILL: the server crashes instead of shutting down (no leadership hand-off).
// XL_BENCH_LEASE_TTL=<duration>: the coordinators' --lease-ttl instead of the shipped default.
// XL_BENCH_CATCH_UP=off: the watches wait for their watch to be re-created instead of following the
// bucket by catch-up requests meanwhile (MeshWatch catchUpAfterMs 0; the A/B of round 22).
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { MeshWatch } from '../agent/control/mesh-watch.ts';
import { parseCoordinatorConfig } from '../coordinator/config.ts';
import { systemClock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import { silentLogger } from '../lib/logger.ts';
import { NatsCluster } from '../lib/nats-cluster.ts';
import { waitFor } from '../lib/wait.ts';
import { AgentFleet, makeAgent, makeAgents } from './agent-fleet.ts';
import { ControlPlaneLab } from './control-plane-lab.ts';
import { parsePinoLog } from './failover-breakdown.ts';
import type { CoordinatorProcess } from './processes.ts';
import { median, ms, percentile, printTable, type Cell } from './report.ts';

const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));
const loadAverage = async (): Promise<string> => (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
/** Lease events in a coordinator's log (info level). */
const LEASE_LINES = new Set(['became leader', 'lost leadership']);

interface LeaseEvent {
  readonly replica: string;
  readonly msg: string;
  readonly at: number;
}

/** The bucket stream's leader and whether both other replicas are current, as a surviving server reports it. */
async function streamState(jsm: JetStreamManager, stream: string): Promise<{ leader: string | undefined; current: number }> {
  const info = await jsm.streams.info(stream);
  const replicas = info.cluster?.replicas ?? [];
  return { leader: info.cluster?.leader, current: replicas.filter((r) => r.current && !r.offline).length };
}

export async function runNatsServerLoss(trials = 5, nodes = 300): Promise<void> {
  const stopSignal = process.env['XL_BENCH_NATS_STOP'] === 'SIGKILL' ? 'SIGKILL' : 'SIGTERM';
  const leaseTtl = process.env['XL_BENCH_LEASE_TTL'];
  const catchUpOff = process.env['XL_BENCH_CATCH_UP'] === 'off';
  const leaseMs = parseCoordinatorConfig(leaseTtl === undefined ? {} : { leaseTtl }).leaseTtlMs;
  const cluster = await NatsCluster.start({ name: `xl-bench-natsc-${Math.random().toString(16).slice(2, 8)}` });
  const leaseEvents: LeaseEvent[] = [];
  const onLine = (replica: string) => (text: string): void => {
    if (!text.startsWith('{')) return;
    for (const l of parsePinoLog(text)) if (LEASE_LINES.has(l.msg)) leaseEvents.push({ replica, msg: l.msg, at: Date.now() });
  };
  const rows: Cell[][] = [];
  const phases = { leader: [] as number[], registered: [] as number[], caughtHeard: [] as number[], watches: [] as number[], rejoined: [] as number[] };
  const notes: string[] = [];
  const closers: (() => Promise<void>)[] = [];
  let follower: CoordinatorProcess | undefined;
  let lab: ControlPlaneLab | undefined;
  try {
    lab = await ControlPlaneLab.start(cluster.server(0), { nodeTtl: '60s', leaseTtl: leaseTtl ?? 'default', natsUrls: cluster.urls, replicas: 3 });
    const l = lab;
    // The lab's first coordinator logs at warn: replace it with one that logs lease events.
    await l.coordinator?.stop();
    await l.startCoordinator({ logLevel: 'info', onLine: onLine('c0') });
    follower = l.startReplica(`${l.podName}-f`, { logLevel: 'info', onLine: onLine('c1') });
    const fleet = new AgentFleet(l, await makeAgents(0, nodes), 5000);
    const first = await fleet.registerAll(50);
    if (first.failed > 0) throw new Error(`${first.failed} of ${nodes} registrations failed`);
    fleet.startHeartbeats(first.heartbeatIntervalMs);
    const names = fleet.agents.map((a) => a.name);
    // One agent-side watch per server (each prefers its own and fails over to the others).
    const watches: MeshWatch[] = [];
    for (let i = 0; i < 3; i++) {
      const nc: NatsConnection = await cluster.connectPreferring(i, `xl-bench-watch-${i}`);
      const w = new MeshWatch({ nc, bucket: l.bucket, coordinatorKey: l.key.publicKey, logger: silentLogger(), clock: systemClock, debounceMs: 20, auditIntervalMs: 0, ...(catchUpOff ? { catchUpAfterMs: 0 } : {}) });
      closers.push(async () => {
        await w.stop();
        await nc.close();
      });
      watches.push(w);
      w.start();
    }
    await waitFor(() => watches.every((w) => w.synced && w.snapshot().nodes.size >= nodes), { timeoutMs: 120_000, intervalMs: 100, what: `every watch has ${nodes} nodes` });
    // Stream info with a short timeout: a request to a stream without a leader fails fast and is polled again.
    const jsm = await jetstreamManager(l.nc, { timeout: 500 });
    const stream = `KV_${l.bucket}`;
    for (let trial = 1; trial <= trials; trial++) {
      // Steady: R3 with both followers current, heartbeats flowing, the follower past its first look.
      const before = await waitFor(
        async () => {
          const s = await streamState(jsm, stream).catch(() => undefined);
          return s?.leader !== undefined && s.current === 2 ? s : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 250, what: 'the bucket stream at R3 with two current replicas' },
      );
      await sleep(first.heartbeatIntervalMs + 1000);
      const lost = cluster.indexOf(before.leader ?? '');
      if (lost < 0) throw new Error(`stream leader ${before.leader ?? '?'} is not a member`);
      const stats0 = watches.map((w) => w.stats());
      const newNode = await makeAgent(nodes + trial);
      fleet.resetCounters();
      leaseEvents.length = 0;
      const t0Wall = Date.now();
      const t0 = performance.now();
      fleet.heardAgain.mark(t0);
      const since = (): number => performance.now() - t0;
      await cluster.server(lost).stopProcess(stopSignal);
      const stoppedMs = since();
      // A node joins right after the loss: registered with the agent's retries (1 s ×0.5–1.5 here: 250 ms).
      let attempts = 0;
      const registered = (async (): Promise<number> => {
        for (;;) {
          attempts++;
          try {
            if ((await fleet.registerOnce(newNode)).reply.ok) return since();
          } catch {
            // timeout or no responders: retried
          }
          if (since() > 60_000) return NaN;
          await sleep(250);
        }
      })();
      const newLeader = waitFor(
        async () => {
          const s = await streamState(jsm, stream).catch(() => undefined);
          return s?.leader !== undefined && s.leader !== before.leader ? since() : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 50, what: 'a new stream leader' },
      ).catch(() => NaN);
      const seen: number[] = watches.map(() => NaN);
      const watchesSee = waitFor(
        () => {
          for (const [i, w] of watches.entries()) if (Number.isNaN(seen[i]) && w.snapshot().nodes.has(newNode.name)) seen[i] = since();
          return seen.every((x) => !Number.isNaN(x));
        },
        { timeoutMs: 90_000, intervalMs: 20, what: 'every watch sees the new node' },
      ).catch(() => undefined);
      const [leaderMs, registeredMs] = await Promise.all([newLeader, registered, watchesSee]);
      await waitFor(() => fleet.heardAgain.allHeard(names), { timeoutMs: 60_000, intervalMs: 50, what: 'every node heard again' }).catch(() => undefined);
      const heard = fleet.heardAgain.summary(names);
      const hb = fleet.resetCounters();
      const stats1 = watches.map((w) => w.stats());
      const takes = leaseEvents.filter((e) => e.msg === 'became leader').map((e) => e.replica);
      // The server comes back with its store; a current replica again.
      const tBack = performance.now();
      await cluster.server(lost).restart();
      const rejoinedMs = await waitFor(
        async () => {
          const s = await streamState(jsm, stream).catch(() => undefined);
          return s?.leader !== undefined && s.current === 2 ? performance.now() - tBack : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 100, what: `${before.leader ?? '?'} a current replica again` },
      ).catch(() => NaN);
      const caughtHeard = heard.caught === 0 ? 0 : heard.caughtHeardMs;
      phases.leader.push(leaderMs);
      phases.registered.push(registeredMs);
      phases.caughtHeard.push(caughtHeard);
      phases.watches.push(Math.max(...seen));
      phases.rejoined.push(rejoinedMs);
      const reread = stats1.map((s, i) => s.totalEntries - (stats0[i]?.totalEntries ?? 0));
      const resumes = stats1.map((s, i) => s.resumes - (stats0[i]?.resumes ?? 0));
      const stalls = stats1.map((s, i) => s.stalls - (stats0[i]?.stalls ?? 0));
      const catchUps = stats1.map((s, i) => s.catchUpSessions - (stats0[i]?.catchUpSessions ?? 0));
      if (hb.reasons.size > 0) notes.push(`trial ${trial}: heartbeat failures: ${[...hb.reasons].map(([r, n]) => `${n} x ${r}`).join('; ')}`);
      if (leaseEvents.length > 0) notes.push(`trial ${trial}: lease events: ${leaseEvents.map((e) => `${e.replica} ${e.msg} +${e.at - t0Wall} ms`).join('; ')}`);
      rows.push([
        trial,
        before.leader ?? '?',
        ms(stoppedMs),
        ms(leaderMs),
        `${ms(registeredMs)} (${attempts})`,
        `${heard.caught} / ${ms(caughtHeard)}`,
        `${hb.failed}`,
        takes.length === 0 ? 'kept' : `taken by ${takes.join(', ')}`,
        seen.map((x) => ms(x)).join(' / '),
        `${resumes.join('/')} ; ${stalls.join('/')} ; ${catchUps.join('/')} ; ${reread.join('/')}`,
        ms(rejoinedMs),
      ]);
    }
    const p = (xs: number[]): string => `${ms(median(xs))} / ${ms(percentile(xs, 100))}`;
    rows.push(['p50 / max', '', '', p(phases.leader), p(phases.registered), p(phases.caughtHeard), '', '', p(phases.watches), '', p(phases.rejoined)]);
    await fleet.stopHeartbeats();
  } catch (err) {
    notes.push(`run aborted: ${errorMessage(err)}`);
  } finally {
    for (const c of closers) await c().catch(() => undefined);
    await follower?.stop();
    await lab?.close();
    await cluster.stop();
  }
  printTable({
    title: 'NATS server loss: the bucket stream\'s leader server stopped on a 3-server cluster (R3), two coordinators, N nodes heartbeating',
    params: { N: nodes, trials, stop: stopSignal, leaseTtl: `${leaseMs} ms${leaseTtl === undefined ? ' (shipped default)' : ''}`, catchUp: catchUpOff ? 'off' : 'on', load: await loadAverage() },
    header: ['trial', 'server', 'stopped', 'new stream leader', 'new node registered (attempts)', 'hb caught / all caught heard', 'hb failed', 'lease', 'each watch sees new node', 'watch resumes ; stalls ; catch-ups ; entries read', 'restarted → current'],
    rows,
    notes: [
      'ms after the stop began (SIGTERM: nats-server shuts down and hands its leaderships over; SIGKILL: a crash). new stream leader: a surviving server reports another leader.',
      'new node registered: a node made right after the loss, registered with retries every 250 ms; hb caught: nodes whose heartbeat failed after the loss, and until every one was heard again.',
      'lease: kept (no "became leader" line in either coordinator\'s log during the trial) or taken by which replica (c0 the first, c1 the second).',
      'each watch sees new node: the three agent-side watches (one per preferred server); entries read: entries delivered after the loss (a full re-read would be ≥ N).',
      'restarted → current: from starting the stopped server again until the stream has a leader and two current replicas.',
      ...notes,
    ],
  });
}
