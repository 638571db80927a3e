// When the KV watch hands a new snapshot on: an isolated change (nothing delivered for `windowMs`)
// goes out at once — a join is not held back by a fixed debounce — and changes that follow a
// delivery within `windowMs` are held and go out together when the window ends. So a burst still
// costs at most one delivery (one plan, one apply) per window, and a steady stream of changes can
// no longer postpone delivery indefinitely (the old trailing debounce restarted its timer on every
// change). "At once" is one macrotask later (setImmediate): records the watch has already received
// in the same burst are applied first and ride along.
import type { Clock } from '../../lib/clock.ts';

export interface ChangeCoalescerOptions {
  /** The shortest time between two deliveries, unless one is urgent (0: every change, a macrotask later). */
  readonly windowMs: number;
  readonly clock: Clock;
  /** Delivers the current state (called with no arguments: the owner builds its snapshot then). */
  readonly deliver: () => void;
  /** Runs `fn` after the current burst (default setImmediate). */
  readonly defer?: (fn: () => void) => void;
}

export class ChangeCoalescer {
  private lastDelivery = Number.NEGATIVE_INFINITY;
  /** A delivery is scheduled (deferred or at the window's end); further changes ride along. */
  private scheduled: AbortController | undefined;
  private stopped = false;

  constructor(private readonly o: ChangeCoalescerOptions) {
    if (!Number.isFinite(o.windowMs) || o.windowMs < 0) throw new RangeError(`windowMs: ${o.windowMs} is not allowed (a finite number of milliseconds ≥ 0)`);
  }

  /** Something changed. `urgent`: deliver now, with whatever is held (a gateway failover, a completed snapshot). */
  changed(urgent = false): void {
    if (this.stopped) return;
    if (urgent) {
      this.deliverNow();
      return;
    }
    if (this.scheduled) return;
    const scheduled = new AbortController();
    this.scheduled = scheduled;
    const wait = this.lastDelivery + this.o.windowMs - this.o.clock.now();
    const fire = (): void => {
      if (!scheduled.signal.aborted) this.deliverNow();
    };
    if (wait <= 0) (this.o.defer ?? setImmediate)(fire);
    else void this.o.clock.sleep(wait, scheduled.signal).then(fire);
  }

  /** Drops whatever is scheduled; nothing is delivered after this. */
  stop(): void {
    this.stopped = true;
    this.scheduled?.abort();
    this.scheduled = undefined;
  }

  private deliverNow(): void {
    this.scheduled?.abort();
    this.scheduled = undefined;
    this.lastDelivery = this.o.clock.now();
    this.o.deliver();
  }
}
