// Shared Prometheus plumbing (prom-client): a scrape body with its content type, and a fresh
// per-instance Registry (never the global one: tests run several agents and coordinators in one
// process, and each must report only its own figures).
import perfHooks, { type EventLoopMonitorOptions, type IntervalHistogram, type RecordableHistogram } from 'node:perf_hooks';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { EventLoopDelaySampler } from './event-loop-delay.ts';

/** One scrape: the text exposition format and the content type to serve it with. */
export interface MetricsScrape {
  readonly contentType: string;
  readonly body: string;
}

/**
 * prom-client's default gauges whose names end in _total, which Prometheus reserves for counters
 * (`promtool check metrics` flags them). The same figures stay available per type, without the
 * suffix: nodejs_active_handles, nodejs_active_requests, nodejs_active_resources.
 */
const MISNAMED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const;

/**
 * prom-client's own event-loop monitor (Node's monitorEventLoopDelay) is started at this resolution,
 * i.e. it never wakes (the largest period Node accepts, ~24.8 days); its seven histogram series are
 * replaced by the same series fed by lib/event-loop-delay.ts, which wakes an idle process once a
 * second instead of ten times (docs/benchmarks.md, issue 7 round 20). nodejs_eventloop_lag_seconds
 * (prom-client's setImmediate probe at scrape time) stays prom-client's.
 */
export const DORMANT_MONITOR_MS = 2 ** 31 - 1;

/** The event-loop delay series prom-client computes from its monitor, with their help texts (prom-client 15). */
const EVENT_LOOP_SERIES = [
  ['nodejs_eventloop_lag_min_seconds', 'The minimum recorded event loop delay.', (h: RecordableHistogram) => h.min],
  ['nodejs_eventloop_lag_max_seconds', 'The maximum recorded event loop delay.', (h: RecordableHistogram) => h.max],
  ['nodejs_eventloop_lag_mean_seconds', 'The mean of the recorded event loop delays.', (h: RecordableHistogram) => h.mean],
  ['nodejs_eventloop_lag_stddev_seconds', 'The standard deviation of the recorded event loop delays.', (h: RecordableHistogram) => h.stddev],
  ['nodejs_eventloop_lag_p50_seconds', 'The 50th percentile of the recorded event loop delays.', (h: RecordableHistogram) => h.percentile(50)],
  ['nodejs_eventloop_lag_p90_seconds', 'The 90th percentile of the recorded event loop delays.', (h: RecordableHistogram) => h.percentile(90)],
  ['nodejs_eventloop_lag_p99_seconds', 'The 99th percentile of the recorded event loop delays.', (h: RecordableHistogram) => h.percentile(99)],
] as const;

/** The seven delay series from `sampler`, read and reset at each scrape as prom-client does with its monitor. */
function registerEventLoopDelay(registry: Registry, sampler: EventLoopDelaySampler): void {
  for (const [name] of EVENT_LOOP_SERIES) registry.removeSingleMetric(name);
  const gauges: Gauge[] = [];
  // The first series' collect sets all seven from one reading (a scrape collects them in order).
  const collect = (): void => {
    const h = sampler.histogram;
    EVENT_LOOP_SERIES.forEach(([, , read], i) => gauges[i]?.set(h.count === 0 ? 0 : read(h) / 1e9));
    h.reset();
  };
  EVENT_LOOP_SERIES.forEach(([name, help], i) => gauges.push(new Gauge({ name, help, registers: [registry], ...(i === 0 ? { collect } : {}) })));
}

/**
 * collectDefaultMetrics, and a stop for what it leaves running. prom-client 15 starts, for every
 * registry, an event-loop monitor (monitorEventLoopDelay, enabled) and a PerformanceObserver on every
 * GC, and gives no handle on either (prometheus/client_js issues 494 and 500): a stopped agent or
 * coordinator kept observing each GC, once per registry ever made in the process (tests make dozens).
 * Both are caught as prom-client makes them — it takes both from the perf_hooks module object, inside
 * this synchronous call — and the returned stop disables the monitor and disconnects the observer.
 */
function collectStoppableDefaults(registry: Registry): () => void {
  const monitors: IntervalHistogram[] = [];
  const observers: perfHooks.PerformanceObserver[] = [];
  const { monitorEventLoopDelay, PerformanceObserver } = perfHooks;
  perfHooks.monitorEventLoopDelay = (options?: EventLoopMonitorOptions): IntervalHistogram => {
    const monitor = monitorEventLoopDelay(options);
    monitors.push(monitor);
    return monitor;
  };
  perfHooks.PerformanceObserver = class extends PerformanceObserver {
    constructor(callback: perfHooks.PerformanceObserverCallback) {
      super(callback);
      observers.push(this);
    }
  };
  try {
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: DORMANT_MONITOR_MS });
  } finally {
    perfHooks.monitorEventLoopDelay = monitorEventLoopDelay;
    perfHooks.PerformanceObserver = PerformanceObserver;
  }
  return () => {
    for (const monitor of monitors) monitor.disable();
    for (const observer of observers) observer.disconnect();
  };
}

/** A registry and the stop of the timer it started: whoever creates one stops it with the process it reports on. */
export interface OwnedRegistry {
  readonly registry: Registry;
  /** Stops the event-loop sampler (its timer is unref'd, but a stopped agent or coordinator must leave no timer behind) and prom-client's monitor and GC observer. Idempotent. */
  readonly stop: () => void;
}

/**
 * A new registry; with `processMetrics` also the standard process_* and nodejs_* series (CPU,
 * memory, event loop), the event-loop delay from `eventLoopDelay` (started here; default a sampler
 * on the system clock).
 */
export function newRegistry(o: { readonly processMetrics: boolean; readonly eventLoopDelay?: EventLoopDelaySampler }): OwnedRegistry {
  const registry = new Registry();
  if (!o.processMetrics) return { registry, stop: () => undefined };
  const stopDefaults = collectStoppableDefaults(registry);
  for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);
  const sampler = (o.eventLoopDelay ?? new EventLoopDelaySampler()).start();
  registerEventLoopDelay(registry, sampler);
  return {
    registry,
    stop: () => {
      sampler.stop();
      stopDefaults();
    },
  };
}

export async function scrape(registry: Registry): Promise<MetricsScrape> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}
