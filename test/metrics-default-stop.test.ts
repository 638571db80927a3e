// The stop of a metrics registry (lib/metrics.ts newRegistry, what AgentMetrics and CoordinatorMetrics
// stop with the process) also stops what prom-client's default metrics started and never release: the
// GC PerformanceObserver (a stopped registry's nodejs_gc_duration_seconds kept counting every GC) and
// the event-loop monitor (left enabled). Both are observed from outside: a GC forced after the stop,
// and prom-client's monitor caught as it is created.
import perfHooks, { PerformanceObserver, type EventLoopMonitorOptions, type IntervalHistogram } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import test from 'ava';
import { newRegistry, scrape } from '../lib/metrics.ts';
import { waitFor } from '../lib/wait.ts';

setFlagsFromString('--expose-gc');
const forceGc = runInNewContext('gc') as () => void;

/** GCs nodejs_gc_duration_seconds has counted (all kinds). */
async function gcCounted(registry: Parameters<typeof scrape>[0]): Promise<number> {
  const body = (await scrape(registry)).body;
  return body
    .split('\n')
    .filter((l) => l.startsWith('nodejs_gc_duration_seconds_count'))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

test('after stop() a GC is no longer observed: prom-client\'s GC observer is disconnected', async (t) => {
  // A witness observer of our own: once it has a GC's entry, every observer has been handed it.
  let witnessed = 0;
  const witness = new PerformanceObserver((list) => (witnessed += list.getEntries().length));
  witness.observe({ entryTypes: ['gc'] });
  t.teardown(() => witness.disconnect());
  const owned = newRegistry({ processMetrics: true });
  t.teardown(() => owned.stop());

  // Alive first (not vacuous): a forced GC is counted.
  forceGc();
  await waitFor(async () => ((await gcCounted(owned.registry)) > 0 ? true : undefined), { timeoutMs: 10_000, intervalMs: 10, what: 'the GC counted before the stop' });

  owned.stop();
  const counted = await gcCounted(owned.registry);
  const seen = witnessed;
  forceGc();
  await waitFor(() => (witnessed > seen ? true : undefined), { timeoutMs: 10_000, intervalMs: 10, what: 'the witness seeing the GC after the stop' });
  await new Promise((r) => setImmediate(r));
  t.is(await gcCounted(owned.registry), counted, 'no GC counted after the stop');
});

test('after stop() prom-client\'s event-loop monitor is disabled', (t) => {
  const real = perfHooks.monitorEventLoopDelay;
  const made: IntervalHistogram[] = [];
  // prom-client reads perf_hooks.monitorEventLoopDelay from the module object when the collectors start.
  perfHooks.monitorEventLoopDelay = (o?: EventLoopMonitorOptions): IntervalHistogram => {
    const h = real(o);
    made.push(h);
    return h;
  };
  let owned;
  try {
    owned = newRegistry({ processMetrics: true });
  } finally {
    perfHooks.monitorEventLoopDelay = real;
  }
  t.is(made.length, 1, 'prom-client made one monitor');
  const monitor = made[0] as IntervalHistogram;
  t.teardown(() => monitor.disable());
  owned.stop();
  // enable() is true only when the monitor was not running (Node's perf_hooks).
  t.true(monitor.enable(), 'the monitor was disabled by the stop');
});
