// Turns "a probe to peer X was lost" (the prober's first loss of a streak) into reconcile requests,
// at most one per `minGapMs`. A full reconcile re-reads the host's addresses and routes and the
// `wg show dump` (a peer removed by hand is re-added by it): cheap on a small mesh, but at 1,000
// peers a loaded machine loses probes to many peers within seconds, and one full reconcile per
// lost peer kept the agent busy re-reading 2,000 routes (profiled, docs/benchmarks.md). The first
// loss after a quiet gap asks at once (repair time unchanged); losses within the gap make ONE more
// request at its end, naming how many peers were lost.
import type { Clock } from '../../lib/clock.ts';

export const LOSS_REPAIR_MIN_GAP_MS = 5_000;

export interface LossRepairOptions {
  readonly clock: Clock;
  /** Asks for a full reconcile with this reason. */
  readonly request: (reason: string) => void;
  /** Ends a pending deferred request (agent shutdown). */
  readonly signal: AbortSignal;
  readonly minGapMs?: number;
}

export class LossRepair {
  private lastAt = Number.NEGATIVE_INFINITY;
  private readonly deferred = new Set<string>();
  private waiting = false;
  /** Requests made so far (tests, metrics). */
  requests = 0;

  constructor(private readonly o: LossRepairOptions) {}

  lost(name: string): void {
    if (this.o.signal.aborted) return;
    const gap = this.o.minGapMs ?? LOSS_REPAIR_MIN_GAP_MS;
    const now = this.o.clock.now();
    if (this.waiting) {
      this.deferred.add(name);
      return;
    }
    if (now - this.lastAt >= gap) {
      this.fire(`probe to ${name} lost`);
      return;
    }
    this.deferred.add(name);
    this.waiting = true;
    void this.o.clock.sleep(this.lastAt + gap - now, this.o.signal).then(() => {
      this.waiting = false;
      if (this.o.signal.aborted) return;
      const names = [...this.deferred];
      this.deferred.clear();
      this.fire(names.length === 1 ? `probe to ${names[0] ?? ''} lost` : `probes to ${names.length} peers lost (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', …' : ''})`);
    });
  }

  private fire(reason: string): void {
    this.lastAt = this.o.clock.now();
    this.requests++;
    this.o.request(reason);
  }
}
