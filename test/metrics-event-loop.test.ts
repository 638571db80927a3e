// The event-loop delay histogram behind nodejs_eventloop_lag_* samples every EVENT_LOOP_SAMPLE_MS,
// not Node's default 10 ms (a timer waking an idle coordinator or agent 100 times a second: most of
// the coordinator's idle CPU, docs/benchmarks.md issue 7 round 19); the series are still served.
import perfHooks, { type EventLoopMonitorOptions, type IntervalHistogram } from 'node:perf_hooks';
import test from 'ava';
import { EVENT_LOOP_SAMPLE_MS, newRegistry, scrape } from '../lib/metrics.ts';

test('the default collectors sample the event loop every EVENT_LOOP_SAMPLE_MS (>= 100 ms), and the lag series are still scraped', async (t) => {
  const real = perfHooks.monitorEventLoopDelay;
  const asked: (number | undefined)[] = [];
  // prom-client reads perf_hooks.monitorEventLoopDelay from the module object when the collectors start.
  perfHooks.monitorEventLoopDelay = (o?: EventLoopMonitorOptions): IntervalHistogram => {
    asked.push(o?.resolution);
    return real(o);
  };
  let body: string;
  try {
    body = (await scrape(newRegistry({ processMetrics: true }))).body;
  } finally {
    perfHooks.monitorEventLoopDelay = real;
  }
  t.true(EVENT_LOOP_SAMPLE_MS >= 100, `sampling every ${EVENT_LOOP_SAMPLE_MS} ms wakes an idle process ${1000 / EVENT_LOOP_SAMPLE_MS} times a second`);
  t.deepEqual(asked, [EVENT_LOOP_SAMPLE_MS]);
  for (const series of ['nodejs_eventloop_lag_seconds', 'nodejs_eventloop_lag_max_seconds', 'nodejs_eventloop_lag_p99_seconds']) t.regex(body, new RegExp(`^${series} `, 'm'));
});

test('without process metrics no event-loop monitor is started', (t) => {
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
