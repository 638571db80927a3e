// The event-loop delay behind prom-client's nodejs_eventloop_lag_{min,max,mean,stddev,p50,p90,p99}_seconds,
// sampled by a timer that wakes often only while the loop is busy. Node's monitorEventLoopDelay (what
// prom-client uses) wakes the process at a fixed period, idle or not: at 100 ms ~1 ms of CPU per second
// of an idle process, about as much as an idle coordinator's own work (docs/benchmarks.md, issue 7 round 20).
//
// Each sample records how late its timer fired (actual minus scheduled moment, ns). After each sample the
// loop's utilization over the period just ended decides the next period: BUSY_PERIOD_MS while the loop was
// busy at least BUSY_UTILIZATION of the time, else IDLE_PERIOD_MS. So under load the histogram is sampled
// as often as before; an idle process wakes once a second. A stall of IDLE_PERIOD_MS or more is always
// recorded in full; a shorter stall starting while idle is seen with probability S/IDLE_PERIOD_MS, and the
// sampling is at BUSY_PERIOD_MS from the sample after it.
import { createHistogram, performance, type EventLoopUtilization, type RecordableHistogram } from 'node:perf_hooks';

export const BUSY_PERIOD_MS = 100;
export const IDLE_PERIOD_MS = 1000;
/** Utilization of the loop over a period at and above which the next period is BUSY_PERIOD_MS. */
export const BUSY_UTILIZATION = 0.02;

/** What the sampler needs from its surroundings (tests inject a manual clock and timers). */
export interface EventLoopDelayDeps {
  /** Monotonic ms. */
  readonly now: () => number;
  /** Utilization of the event loop (0..1) since the previous call. */
  readonly utilization: () => number;
  /** One-shot timer that does not keep the process alive; returns its cancel. */
  readonly schedule: (fn: () => void, ms: number) => () => void;
}

function systemDeps(): EventLoopDelayDeps {
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  return {
    now: () => performance.now(),
    utilization: () => {
      const cur = performance.eventLoopUtilization();
      const u = performance.eventLoopUtilization(cur, last).utilization;
      last = cur;
      return u;
    },
    schedule: (fn, ms) => {
      const t = setTimeout(fn, ms);
      t.unref();
      return () => clearTimeout(t);
    },
  };
}

export class EventLoopDelaySampler {
  /** Delays in ns (createHistogram: integers ≥ 1; a timer on time is recorded as 1 ns). */
  readonly histogram: RecordableHistogram = createHistogram();
  private cancel: (() => void) | undefined;
  private due = 0;
  private periodMs = BUSY_PERIOD_MS;

  constructor(private readonly deps: EventLoopDelayDeps = systemDeps()) {}

  /** The period the next sample was scheduled with (BUSY_PERIOD_MS or IDLE_PERIOD_MS). */
  get period(): number {
    return this.periodMs;
  }

  start(): this {
    if (this.cancel === undefined) this.arm(BUSY_PERIOD_MS);
    return this;
  }

  stop(): void {
    this.cancel?.();
    this.cancel = undefined;
  }

  private arm(ms: number): void {
    this.periodMs = ms;
    this.due = this.deps.now() + ms;
    this.cancel = this.deps.schedule(this.sample, ms);
  }

  private readonly sample = (): void => {
    const lateMs = this.deps.now() - this.due;
    this.histogram.record(Math.max(1, Math.round(lateMs * 1e6)));
    this.arm(this.deps.utilization() >= BUSY_UTILIZATION ? BUSY_PERIOD_MS : IDLE_PERIOD_MS);
  };
}
