// Turns "a probe to peer X was lost" (the prober's first loss of a streak) into reconcile requests,
// at most one per `minGapMs`. A full reconcile re-reads the host's addresses and routes and the
// `wg show dump` (a peer removed by hand is re-added by it): cheap on a small mesh, but at 1,000
// peers a loaded machine loses probes to many peers within seconds, and one full reconcile per
// lost peer kept the agent busy re-reading 2,000 routes (profiled, docs/benchmarks.md). The first
// loss after a quiet gap asks at once (repair time unchanged); losses within the gap make ONE more
// request at its end, naming how many peers were lost.
//
// An active gateway's first loss is DEFERRED by `gatewayDeferMs` (2 s) and dropped if the gateway
// answered again or is no longer probed by then (`stillLost`). A gateway's tunnels going down is
// the case health-driven failover handles: within ≈ 2 s the coordinator elects another gateway and
// this agent applies it. A full reconcile asked for at the first loss (≈ 1 s after the fault) kept
// the reconciler busy exactly then — the failover apply waited for it (0.5–1.5 s on the lab,
// docs/benchmarks.md) — and every reporter ran one at the same moment. A gateway peer removed by
// hand is still repaired: first loss ≤ 1.2 s, + 2 s, + one reconcile, within the 5 s bound.
import type { Clock } from '../../lib/clock.ts';

export const LOSS_REPAIR_MIN_GAP_MS = 5_000;
export const LOSS_REPAIR_GATEWAY_DEFER_MS = 2_000;

export interface LossRepairOptions {
  readonly clock: Clock;
  /** Asks for a full reconcile with this reason. */
  readonly request: (reason: string) => void;
  /** Ends a pending deferred request (agent shutdown). */
  readonly signal: AbortSignal;
  readonly minGapMs?: number;
  /** How long an active gateway's first loss waits (failover first). Default LOSS_REPAIR_GATEWAY_DEFER_MS. */
  readonly gatewayDeferMs?: number;
  /** Whether `name` is still probed and has not answered since its first loss (a deferred gateway loss is dropped if not). Default: always. */
  readonly stillLost?: (name: string) => boolean;
}

export class LossRepair {
  private lastAt = Number.NEGATIVE_INFINITY;
  private readonly deferred = new Set<string>();
  private waiting = false;
  private readonly gatewaysWaiting = new Set<string>();
  /** Requests made so far (tests, metrics). */
  requests = 0;
  /** Deferred gateway losses dropped because the gateway answered again or was replaced (tests). */
  dropped = 0;

  constructor(private readonly o: LossRepairOptions) {}

  /** The first lost probe of a streak to `name`; `gateway`: it is an active gateway (probed fast). */
  lost(name: string, o: { gateway?: boolean } = {}): void {
    if (this.o.signal.aborted) return;
    if (o.gateway === true) {
      this.deferGateway(name);
      return;
    }
    this.lostNow(name);
  }

  private deferGateway(name: string): void {
    if (this.gatewaysWaiting.has(name)) return;
    this.gatewaysWaiting.add(name);
    void this.o.clock.sleep(this.o.gatewayDeferMs ?? LOSS_REPAIR_GATEWAY_DEFER_MS, this.o.signal).then(() => {
      this.gatewaysWaiting.delete(name);
      if (this.o.signal.aborted) return;
      if (this.o.stillLost?.(name) === false) {
        this.dropped++;
        return;
      }
      this.lostNow(name);
    });
  }

  private lostNow(name: string): void {
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
