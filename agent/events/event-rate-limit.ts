// Bounds how many events an agent publishes, so a flapping thing (wireguard-go crashing in a loop, a
// route deleted every second by another controller) cannot flood NATS, the coordinator's stream or
// the Kubernetes API. Per event type: at most `burst` events per `windowMs` (a sliding window of
// the times events went out). Events over the bound are counted, not sent; the next event of that
// type that goes out says how many were held back (`details.suppressed`), so nothing is silently
// lost from the story. Defaults: 5 per type per minute.
import type { Clock } from '../../lib/clock.ts';
import type { EventInput, EventPublisher } from '../../protocol/events.ts';

export interface EventRateLimitOptions {
  readonly clock: Clock;
  /** Events of one type allowed within windowMs. Default 5. */
  readonly burst?: number;
  /** Default 60 s. */
  readonly windowMs?: number;
}

export const DEFAULT_EVENT_BURST = 5;
export const DEFAULT_EVENT_WINDOW_MS = 60_000;

/** An EventPublisher that passes at most `burst` events per type per window on to `inner`. */
export class RateLimitedEvents implements EventPublisher {
  private readonly sent = new Map<string, number[]>();
  private readonly suppressed = new Map<string, number>();
  private readonly burst: number;
  private readonly windowMs: number;

  constructor(
    private readonly inner: EventPublisher,
    private readonly o: EventRateLimitOptions,
  ) {
    this.burst = o.burst ?? DEFAULT_EVENT_BURST;
    this.windowMs = o.windowMs ?? DEFAULT_EVENT_WINDOW_MS;
  }

  publish(event: EventInput): void {
    const now = this.o.clock.now();
    const times = (this.sent.get(event.type) ?? []).filter((at) => now - at < this.windowMs);
    if (times.length >= this.burst) {
      this.sent.set(event.type, times);
      this.suppressed.set(event.type, (this.suppressed.get(event.type) ?? 0) + 1);
      return;
    }
    times.push(now);
    this.sent.set(event.type, times);
    const held = this.suppressed.get(event.type) ?? 0;
    this.suppressed.delete(event.type);
    this.inner.publish(held === 0 ? event : { ...event, details: { ...event.details, suppressed: held } });
  }

  /** Events held back per type since the last one of that type went out (status, tests). */
  heldBack(): ReadonlyMap<string, number> {
    return new Map(this.suppressed);
  }
}
