// DeferredAgentMetrics (the agent's default): prom-client is loaded at the first scrape, and every
// scrape reports exactly what an AgentMetrics fed from the start reports.
import test from 'ava';
import { AgentMetrics, type AgentMetricsPort, type AgentScrapeSnapshot } from '../agent/metrics/agent-metrics.ts';
import { DeferredAgentMetrics } from '../agent/metrics/deferred-agent-metrics.ts';
import { bucketIndex, RECONCILE_BUCKETS } from '../agent/metrics/early-totals.ts';
import type { AgentStatus } from '../protocol/status.ts';

/** Every sample of a scrape body: series (with labels) → value. */
function samples(body: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** The same scrape, sample by sample (sums compared to 1e-9: the deferred histogram replays bucket means). */
function assertSameScrape(t: import('ava').ExecutionContext, actual: string, expected: string): void {
  const a = samples(actual);
  const e = samples(expected);
  t.deepEqual([...a.keys()].sort(), [...e.keys()].sort());
  for (const [series, value] of e) {
    const got = a.get(series) ?? NaN;
    t.true(Math.abs(got - value) <= 1e-9 * Math.max(1, Math.abs(value)), `${series}: ${got} (expected ${value})`);
  }
}

/** A minimal status snapshot: no peers, no policy. */
function snapshot(knownNodes: number): AgentScrapeSnapshot {
  const status = {
    version: '0.1.0',
    ready: true,
    node: { name: 'n1', cluster: 'c1', topology: 'mesh', isGateway: false, isRelay: false },
    controlPlane: { connected: true, registered: true, knownNodes, health: { answering: true } },
    peers: [],
  } as unknown as AgentStatus;
  return { status, probes: { requestsSent: 4, repliesReceived: 3, requestsAnswered: 2 }, watch: { live: true, stalls: 0, lagRevisions: 0, resumes: 0, catchUpSessions: 0, catchingUp: false, totalEntries: 0 }, now: 1_000 };
}

/** Feeds the same events to both. */
function feed(ms: readonly AgentMetricsPort[], events: (m: AgentMetricsPort) => void): void {
  for (const m of ms) events(m);
}

test('bucketIndex counts a duration where a Prometheus histogram does (value ≤ bound), +Inf last', (t) => {
  t.is(bucketIndex(0), 0);
  t.is(bucketIndex(0.005), 0);
  t.is(bucketIndex(0.0051), 1);
  t.is(bucketIndex(30), RECONCILE_BUCKETS.length - 1);
  t.is(bucketIndex(30.5), RECONCILE_BUCKETS.length);
});

test('events before the first scrape, and after it, read exactly as on an AgentMetrics fed from the start', async (t) => {
  const eager = new AgentMetrics({ processMetrics: false });
  let loads = 0;
  const deferred = new DeferredAgentMetrics(() => {
    loads++;
    return Promise.resolve(new AgentMetrics({ processMetrics: false }));
  });
  feed([eager, deferred], (m) => {
    // Several per bucket at different values, both results, one beyond the last bound (+Inf), changes and revisions.
    for (const [ok, durationMs, changes, revision] of [
      [true, 3, 2, 5], [true, 4.5, 0, 5], [true, 12, 1, 6], [true, 20, 0, 0], [true, 240, 3000, 7], [false, 700, 1, 7],
      [false, 900, 0, 7], [true, 31_000, 2, 8], [false, 45_000, 0, 9], [true, 1.25, 0, 9],
    ] as const) {
      m.reconciled({ ok, durationMs, changes, revision });
    }
    m.wireguardRestarted();
    m.wireguardRestarted();
    m.routesRepaired(3);
    m.routesRepaired(0);
    m.routesRepaired();
    m.observe(snapshot(1000));
  });
  t.is(loads, 0, 'prom-client is not loaded before a scrape');
  t.false(deferred.loaded);
  assertSameScrape(t, (await deferred.render()).body, (await eager.render()).body);
  t.true(deferred.loaded);
  t.regex((await deferred.render()).body, /crosslink_agent_reconcile_duration_seconds_bucket\{le="\+Inf",result="failed"\} 3/);

  // After the first scrape the events go straight to the real metrics.
  feed([eager, deferred], (m) => {
    m.reconciled({ ok: false, durationMs: 60, changes: 4, revision: 11 });
    m.wireguardRestarted();
    m.observe(snapshot(1001));
  });
  assertSameScrape(t, (await deferred.render()).body, (await eager.render()).body);
  t.is(loads, 1);
});

test('concurrent first scrapes load once; events that arrive while loading are kept; a failed load is retried', async (t) => {
  let loads = 0;
  let fail = true;
  let release: () => void = () => undefined;
  const deferred = new DeferredAgentMetrics(async () => {
    loads++;
    if (fail) throw new Error('injected: import failed');
    await new Promise<void>((r) => (release = r));
    return new AgentMetrics({ processMetrics: false });
  });
  deferred.reconciled({ ok: true, durationMs: 10, changes: 1, revision: 3 });
  await t.throwsAsync(deferred.render(), { message: 'injected: import failed' });
  t.false(deferred.loaded);
  fail = false;
  deferred.observe(snapshot(7));
  const first = deferred.render();
  const second = deferred.render();
  // While the import is under way: another reconcile and a restart.
  deferred.reconciled({ ok: false, durationMs: 2_000, changes: 0, revision: 4 });
  deferred.wireguardRestarted();
  await new Promise((r) => setImmediate(r));
  release();
  const [a, b] = await Promise.all([first, second]);
  t.is(loads, 2, 'one failed load, then one load for both scrapes');
  for (const body of [a.body, b.body]) {
    const s = samples(body);
    t.is(s.get('crosslink_agent_reconciles_total{result="ok"}'), 1);
    t.is(s.get('crosslink_agent_reconciles_total{result="failed"}'), 1, 'the reconcile during the load is not lost');
    t.is(s.get('crosslink_agent_wireguard_restarts_total'), 1);
    t.is(s.get('crosslink_agent_known_nodes'), 7);
    t.is(s.get('crosslink_agent_mesh_revision'), 4);
    t.is(s.get('crosslink_agent_last_reconcile_ok'), 0);
  }
});
