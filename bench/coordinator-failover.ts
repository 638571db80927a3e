// `npm run bench -- failover-coordinator[:nodes[,trials]]`: the leader coordinator SIGKILLed while a
// second replica follows (its own POD_NAME, as two replicas of deploy/ run), N simulated nodes
// heartbeating. Per trial: when the dead leader's lease expired, when the follower took it, loaded the
// bucket and announced itself, and when every node was heard again (bench/heard-again.ts). After each
// trial a fresh follower is started, so the next trial kills the replica that took over.
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { NatsServer } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { parseCoordinatorConfig } from '../coordinator/config.ts';
import { AgentFleet, makeAgents } from './agent-fleet.ts';
import { ControlPlaneLab } from './control-plane-lab.ts';
import { coordinatorFailoverPhases } from './coordinator-failover-phases.ts';
import { parsePinoLog, type LogLine } from './failover-breakdown.ts';
import type { CoordinatorProcess } from './processes.ts';
import { median, ms, percentile, printTable, type Cell } from './report.ts';

/** The shipped default lease (no --lease-ttl is passed): what a deployment gets. */
const LEASE_TTL_MS = parseCoordinatorConfig({}).leaseTtlMs;
const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));
/** The most heartbeats answered within any `windowMs` (per second). */
function peakPerSecond(at: readonly number[], windowMs = 200): number {
  const xs = [...at].sort((a, b) => a - b);
  let best = 0;
  for (let i = 0, j = 0; i < xs.length; i++) {
    while ((xs[i] ?? 0) - (xs[j] ?? 0) >= windowMs) j++;
    best = Math.max(best, i - j + 1);
  }
  return (best * 1000) / windowMs;
}
const loadAverage = async (): Promise<string> => (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
/** The follower lines the breakdown reads (everything else is dropped: info level logs per heartbeat refusal). */
const KEPT = new Set(['became leader', 'state loaded from the bucket', 'announced the new leader: agents heartbeat within the spread', 'coordinator started']);

interface Replica {
  readonly process: CoordinatorProcess;
  readonly lines: LogLine[];
}

function startFollower(lab: ControlPlaneLab, k: number): Replica {
  const lines: LogLine[] = [];
  const process = lab.startReplica(`${lab.podName}-f${k}`, {
    logLevel: 'info',
    onLine: (text) => {
      if (!text.startsWith('{')) return;
      for (const l of parsePinoLog(text)) if (KEPT.has(l.msg)) lines.push(l);
    },
  });
  return { process, lines };
}

export async function runCoordinatorFailover(server: NatsServer, nodes = 1000, trials = 3): Promise<void> {
  const rows: Cell[][] = [];
  const allHeard: number[] = [];
  const notes: string[] = [];
  const lab = await ControlPlaneLab.start(server, { nodeTtl: '20s', leaseTtl: 'default' });
  let follower: Replica | undefined;
  try {
    const fleet = new AgentFleet(lab, await makeAgents(0, nodes), 5000);
    const first = await fleet.registerAll(100);
    fleet.startHeartbeats(first.heartbeatIntervalMs);
    const names = fleet.agents.map((a) => a.name);
    const kv = await lab.kv();
    for (let trial = 1; trial <= trials; trial++) {
      follower = startFollower(lab, trial);
      const f = follower;
      await waitFor(() => f.lines.some((l) => l.msg === 'coordinator started'), { timeoutMs: 60_000, intervalMs: 50, what: `follower ${trial} started (its log: ${f.process.recentLog().slice(-1500)})` });
      // Steady heartbeats again (and the follower's presence probe has seen the leader).
      await sleep(first.heartbeatIntervalMs + 1000);
      const leader = lab.coordinator;
      if (leader?.running !== true) throw new Error(`the leader exited before trial ${trial}; its last log lines:\n${leader?.recentLog() ?? '(none)'}`);
      fleet.resetCounters();
      const rev = await lab.revision();
      const cpu0 = await f.process.cpuMs();
      const t0 = Date.now();
      const p0 = performance.now();
      fleet.heardAgain.mark(p0);
      await leader.stop('SIGKILL');
      const entry = await kv.get(kvKeys.lease);
      // The dead leader's last renewal, unless the follower already wrote (then unknown).
      const lastRenewalAt = entry && entry.created.getTime() <= t0 ? entry.created.getTime() : NaN;
      lab.coordinator = f.process;
      await waitFor(() => fleet.heardAgain.allHeard(names), { timeoutMs: 60_000, intervalMs: 20, what: 'every node heard again' }).catch(() => undefined);
      const heard = fleet.heardAgain.summary(names);
      const cpu = (await f.process.cpuMs()) - cpu0;
      const hb = fleet.resetCounters();
      const writes = await lab.writesSince(rev);
      const phases = coordinatorFailoverPhases(f.lines, { t0, lastRenewalAt, leaseTtlMs: LEASE_TTL_MS });
      allHeard.push(heard.allHeardMs);
      const timeouts = [...hb.reasons].filter(([r]) => /timeout/i.test(r)).reduce((n, [, c]) => n + c, 0);
      if (hb.reasons.size > 0) notes.push(`trial ${trial}: heartbeat failures: ${[...hb.reasons].map(([r, n]) => `${n} x ${r}`).join('; ')}`);
      rows.push([
        trial,
        ms(phases.expires),
        ms(phases.took),
        `${ms(phases.loaded)} (${phases.loadedFrom})`,
        `${ms(phases.announced)} (${ms(phases.spreadMs)})`,
        `${heard.caught} / ${ms(heard.caughtHeardMs)}`,
        ms(heard.allHeardMs),
        `${ms(heard.addedDelayMs.p50)} / ${ms(heard.addedDelayMs.p99)} / ${ms(heard.addedDelayMs.max)}`,
        `${hb.failed} (${timeouts})`,
        ms(percentile(hb.latenciesMs, 99)),
        peakPerSecond(hb.answeredAtMs).toFixed(0),
        `${writes.nodes} / ${writes.nodeDeletes} / ${writes.ipam + writes.clusters}`,
        ms(cpu),
      ]);
    }
    rows.push(['median', '', '', '', '', '', ms(median(allHeard)), '', '', '', '', '', '']);
    await fleet.stopHeartbeats();
  } finally {
    await follower?.process.stop();
    await lab.close();
  }
  printTable({
    title: 'coordinator failover: the leader SIGKILLed, a running follower takes over; every node heard again',
    params: { N: nodes, trials, nodeTtl: '20s', leaseTtl: `${LEASE_TTL_MS} ms (default, no flag)`, load: await loadAverage() },
    header: ['trial', 'lease expires', 'took lease', 'registry loaded (from)', 'announced (spread)', 'caught / all caught heard', 'every node heard', 'added delay p50 / p99 / max', 'hb failed (timeouts)', 'hb reply p99', 'answered peak /s', 'node writes / deletes / ipam+cluster', 'new leader CPU'],
    rows,
    notes: [
      'ms after the SIGKILL. lease expires: the dead leader\'s last renewal (server time stamp) + the lease TTL, the earliest a follower may take over;',
      'took lease / registry loaded / announced: the follower\'s `became leader`, `state loaded from the bucket` (from its warm copy or a bucket read), `announced the new leader` log lines.',
      'caught: nodes whose heartbeat failed after the kill (retried at 1 s x0.5-1.5, like the agent); every node heard: until each node had a heartbeat answered.',
      'answered peak /s: the most heartbeats answered ok within any 200 ms, per second (the new leader\'s throughput while the fleet comes back).',
      `spread: the leader's announced one${process.env['XL_BENCH_SPREAD_MS'] === undefined ? '' : ` (the fleet used ${process.env['XL_BENCH_SPREAD_MS']} ms instead: XL_BENCH_SPREAD_MS)`}.`,
      'node writes / deletes / ipam+cluster: keys written from the kill until every node was heard (0 / 0 / 0: nothing expired, nothing rewritten).',
      'new leader CPU: utime+stime of the follower from the kill until every node was heard (10 ms ticks).',
      ...notes,
    ],
  });
}
