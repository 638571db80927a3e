// The agent's metrics with prom-client loaded at the first scrape of GET /metrics, not at start: an
// agent nobody scrapes never loads it (prom-client, its default process collectors and the metric
// objects: ~5 MiB of the agent's resident memory, docs/benchmarks.md issue 10 round 18). Until
// then events are folded into plain totals (agent/metrics/early-totals.ts), which the first scrape
// hands to a real AgentMetrics, so every scrape reports what an AgentMetrics created at start
// would have. Differences: process_* and nodejs_* series (CPU, heap, event loop, GC) start at the
// first scrape — the CPU and memory figures are the process's own totals anyway; the GC and event
// loop histograms count from then.
import type { MetricsScrape } from '../../lib/metrics.ts';
import type { AgentMetrics, AgentMetricsPort, AgentScrapeSnapshot, ReconcileOutcome } from './agent-metrics.ts';
import { emptyTotals, foldReconcile, type EarlyTotals } from './early-totals.ts';

/** Creates the real metrics (prom-client); the default imports agent/metrics/agent-metrics.ts. */
export type LoadAgentMetrics = () => Promise<AgentMetrics>;

const loadAgentMetrics: LoadAgentMetrics = async () => new (await import('./agent-metrics.ts')).AgentMetrics();

export class DeferredAgentMetrics implements AgentMetricsPort {
  private readonly totals: EarlyTotals = emptyTotals();
  private real: AgentMetrics | null = null;
  private loading: Promise<AgentMetrics> | null = null;
  private pendingSnapshot: AgentScrapeSnapshot | null = null;
  private stopped = false;

  constructor(private readonly load: LoadAgentMetrics = loadAgentMetrics) {}

  /** Whether prom-client has been loaded (the first scrape happened). */
  get loaded(): boolean {
    return this.real !== null;
  }

  reconciled(r: ReconcileOutcome): void {
    if (this.real) this.real.reconciled(r);
    else foldReconcile(this.totals, r);
  }

  wireguardRestarted(): void {
    if (this.real) this.real.wireguardRestarted();
    else this.totals.wireguardRestarts++;
  }

  routesRepaired(count = 1): void {
    if (this.real) this.real.routesRepaired(count);
    else if (count > 0) this.totals.routeRepairs += count;
  }

  observe(snapshot: AgentScrapeSnapshot): void {
    if (this.real) this.real.observe(snapshot);
    else this.pendingSnapshot = snapshot;
  }

  async render(): Promise<MetricsScrape> {
    const real = this.real ?? (await this.loadOnce());
    if (this.pendingSnapshot) {
      real.observe(this.pendingSnapshot);
      this.pendingSnapshot = null;
    }
    return real.render();
  }

  /** Stops the loaded metrics' timers; metrics loaded by a scrape after this are stopped as they load. */
  stop(): void {
    this.stopped = true;
    this.real?.stop();
  }

  /** One load for concurrent first scrapes; a failed load is retried by the next scrape. Events that arrive while loading are folded and handed over with the rest. */
  private loadOnce(): Promise<AgentMetrics> {
    this.loading ??= this.load().then(
      (m) => {
        m.restore(this.totals);
        this.real = m;
        if (this.stopped) m.stop();
        return m;
      },
      (err: unknown) => {
        this.loading = null;
        throw err;
      },
    );
    return this.loading;
  }
}
