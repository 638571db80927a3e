// The event-loop delay behind nodejs_eventloop_lag_* (lib/event-loop-delay.ts, lib/metrics.ts): prom-client's
// own monitor is started dormant (Node's monitorEventLoopDelay at a fixed 10 ms, or the 100 ms of round 19,
// woke an idle coordinator or agent 100 or 10 times a second: docs/benchmarks.md issue 7 rounds 19-20); a
// sampler that wakes every 100 ms while the loop is busy and every second while it is idle feeds the same series.
import perfHooks, { type EventLoopMonitorOptions, type IntervalHistogram } from 'node:perf_hooks';
import test from 'ava';
import { BUSY_PERIOD_MS, BUSY_UTILIZATION, EventLoopDelaySampler, IDLE_PERIOD_MS, type EventLoopDelayDeps } from '../lib/event-loop-delay.ts';
import { DORMANT_MONITOR_MS, newRegistry, scrape } from '../lib/metrics.ts';
import { AgentMetrics } from '../agent/metrics/agent-metrics.ts';
import { DeferredAgentMetrics } from '../agent/metrics/deferred-agent-metrics.ts';
import { CoordinatorMetrics } from '../coordinator/metrics.ts';

/** A manual clock and timer queue, and the utilization the next sample will read. */
function manual(): { deps: EventLoopDelayDeps; advance: (ms: number) => void; pending: () => number[]; setUtilization: (u: number) => void } {
  let now = 0;
  let utilization = 0;
  let timers: { at: number; fn: () => void; id: number }[] = [];
  let ids = 0;
  const deps: EventLoopDelayDeps = {
    now: () => now,
    utilization: () => utilization,
    schedule: (fn, ms) => {
      const id = ++ids;
      timers.push({ at: now + ms, fn, id });
      return () => (timers = timers.filter((t) => t.id !== id)) && undefined;
    },
  };
  // `advance` moves the clock by ms at once (a blocked loop): every timer due meanwhile fires late.
  const advance = (ms: number): void => {
    now += ms;
    for (;;) {
      const due = timers.filter((t) => t.at <= now).sort((a, b) => a.at - b.at)[0];
      if (!due) return;
      timers = timers.filter((t) => t !== due);
      due.fn();
    }
  };
  return { deps, advance, pending: () => timers.map((t) => t.at - now), setUtilization: (u) => (utilization = u) };
}

test('samples every BUSY_PERIOD_MS while the loop is busy, every IDLE_PERIOD_MS while idle, and records how late each sample fired', (t) => {
  t.true(IDLE_PERIOD_MS >= 10 * BUSY_PERIOD_MS && BUSY_PERIOD_MS <= 100, 'busy: as often as before (100 ms); idle: at most once a second');
  const m = manual();
  const s = new EventLoopDelaySampler(m.deps).start();
  t.deepEqual(m.pending(), [BUSY_PERIOD_MS]);
  m.advance(BUSY_PERIOD_MS); // on time, loop idle
  t.is(s.histogram.count, 1);
  t.is(s.histogram.max, 1, 'a sample on time records 1 ns');
  t.deepEqual(m.pending(), [IDLE_PERIOD_MS], 'idle: next sample a second later');
  m.setUtilization(BUSY_UTILIZATION);
  m.advance(IDLE_PERIOD_MS + 250); // a 250 ms stall past the due moment
  const near = (x: number, want: number): boolean => Math.abs(x - want) <= want * 0.01; // HDR histogram precision
  t.true(near(s.histogram.max, 250e6), `the stall is recorded in full (ns): ${s.histogram.max}`);
  t.deepEqual(m.pending(), [BUSY_PERIOD_MS], 'busy: back to 100 ms at once');
  m.advance(BUSY_PERIOD_MS + 40);
  t.is(s.histogram.count, 3);
  t.true(near(s.histogram.percentile(90), 250e6), 'samples: on time, 250 ms late, 40 ms late');
  t.true(near(s.histogram.percentile(50), 40e6), `p50 ${s.histogram.percentile(50)}`);
  t.is(s.histogram.min, 1);
  s.stop();
  t.deepEqual(m.pending(), [], 'stop cancels the pending sample');
});

test('prom-client\'s own monitor is started dormant, and the lag series report a real stall from the sampler', async (t) => {
  const real = perfHooks.monitorEventLoopDelay;
  const asked: (number | undefined)[] = [];
  // prom-client reads perf_hooks.monitorEventLoopDelay from the module object when the collectors start.
  perfHooks.monitorEventLoopDelay = (o?: EventLoopMonitorOptions): IntervalHistogram => {
    asked.push(o?.resolution);
    return real(o);
  };
  const sampler = new EventLoopDelaySampler();
  let owned;
  try {
    owned = newRegistry({ processMetrics: true, eventLoopDelay: sampler });
  } finally {
    perfHooks.monitorEventLoopDelay = real;
  }
  t.deepEqual(asked, [DORMANT_MONITOR_MS], 'prom-client\'s monitor never wakes');
  t.true(DORMANT_MONITOR_MS > 24 * 3600 * 1000);
  // Block the loop past the first sample's due moment (BUSY_PERIOD_MS after start) by a whole second.
  sampler.start();
  const until = Date.now() + BUSY_PERIOD_MS + 1000;
  while (Date.now() < until) Math.sqrt(Math.random());
  const deadline = Date.now() + 10_000;
  while (sampler.histogram.count === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const body = (await scrape(owned.registry)).body;
  owned.stop();
  const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(body)?.[1]);
  t.true(value('nodejs_eventloop_lag_max_seconds') >= 0.9, body.split('\n').filter((l) => l.startsWith('nodejs_eventloop_lag')).join('\n'));
  for (const name of ['nodejs_eventloop_lag_seconds', 'nodejs_eventloop_lag_min_seconds', 'nodejs_eventloop_lag_mean_seconds', 'nodejs_eventloop_lag_stddev_seconds', 'nodejs_eventloop_lag_p50_seconds', 'nodejs_eventloop_lag_p90_seconds', 'nodejs_eventloop_lag_p99_seconds']) {
    t.true(Number.isFinite(value(name)), `${name} served once`);
    t.is(body.split('\n').filter((l) => l.startsWith(`${name} `)).length, 1, `${name}: one series`);
  }
  t.is(sampler.histogram.count, 0, 'read and reset at the scrape, as prom-client did');
});

test('without process metrics no event-loop monitor or sampler is started', (t) => {
  const real = perfHooks.monitorEventLoopDelay;
  let started = 0;
  perfHooks.monitorEventLoopDelay = (o?: EventLoopMonitorOptions): IntervalHistogram => {
    started++;
    return real(o);
  };
  try {
    newRegistry({ processMetrics: false });
  } finally {
    perfHooks.monitorEventLoopDelay = real;
  }
  t.is(started, 0);
});

test('whoever makes the metrics stops their sampler: the registry, AgentMetrics, CoordinatorMetrics, DeferredAgentMetrics (also one loaded after the stop)', async (t) => {
  const owned = manual();
  const registry = newRegistry({ processMetrics: true, eventLoopDelay: new EventLoopDelaySampler(owned.deps) });
  t.is(owned.pending().length, 1, 'newRegistry starts the sampler');
  registry.stop();
  registry.stop();
  t.deepEqual(owned.pending(), [], 'stopped (twice is fine)');

  const agent = manual();
  const am = new AgentMetrics({ eventLoopDelay: new EventLoopDelaySampler(agent.deps) });
  t.is(agent.pending().length, 1);
  am.stop();
  t.deepEqual(agent.pending(), []);

  const coordinator = manual();
  const cm = new CoordinatorMetrics({ eventLoopDelay: new EventLoopDelaySampler(coordinator.deps) });
  t.is(coordinator.pending().length, 1);
  cm.stop();
  t.deepEqual(coordinator.pending(), []);

  const loaded = manual();
  const deferred = new DeferredAgentMetrics(() => Promise.resolve(new AgentMetrics({ eventLoopDelay: new EventLoopDelaySampler(loaded.deps) })));
  await deferred.render();
  t.is(loaded.pending().length, 1);
  deferred.stop();
  t.deepEqual(loaded.pending(), []);

  const late = manual();
  const stoppedFirst = new DeferredAgentMetrics(() => Promise.resolve(new AgentMetrics({ eventLoopDelay: new EventLoopDelaySampler(late.deps) })));
  stoppedFirst.stop();
  await stoppedFirst.render();
  t.deepEqual(late.pending(), [], 'a scrape after the stop loads metrics that are stopped at once');
});
