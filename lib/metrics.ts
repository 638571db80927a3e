// Shared Prometheus plumbing (prom-client): a scrape body with its content type, and a fresh
// per-instance Registry (never the global one: tests run several agents and coordinators in one
// process, and each must report only its own figures).
import { collectDefaultMetrics, Registry } from 'prom-client';

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
 * How often the event-loop delay histogram behind `nodejs_eventloop_lag_*` samples, in ms.
 * prom-client's default leaves Node's 10 ms: a libuv timer waking the process 100 times a second,
 * idle or not — most of the coordinator's idle CPU (docs/benchmarks.md, issue 7 round 19).
 * At 100 ms every stall of 100 ms or more is still recorded in full; shorter ones are sampled
 * (a stall of S ms is seen with probability S/100).
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

/** A new registry; with `processMetrics` also the standard process_* and nodejs_* series (CPU, memory, event loop). */
export function newRegistry(o: { readonly processMetrics: boolean }): Registry {
  const registry = new Registry();
  if (o.processMetrics) {
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);
  }
  return registry;
}

export async function scrape(registry: Registry): Promise<MetricsScrape> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}
