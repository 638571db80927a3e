// Per-cluster registration rate limit: a token bucket per cluster name, refilled at `ratePerSecond`
// up to `burst`. Pure apart from the injected time; the leader holds one per term (in memory: a
// new leader starts every cluster with a full bucket, which at worst allows one extra burst).
// With `max`, at most that many keys are kept: the one used longest ago goes first (it comes back full).
import { setBounded } from '../lib/bounded-map.ts';

export interface RateDecision {
  readonly ok: boolean;
  /** When refused: how long until one token is back. */
  readonly retryAfterMs: number;
}

export class RegistrationRateLimit {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly max = Infinity,
  ) {}

  private put(key: string, b: { tokens: number; at: number }): void {
    if (this.max === Infinity) {
      this.buckets.set(key, b); // unbounded (the per-cluster limit): no order to keep
      return;
    }
    // Re-inserted at the end: the oldest entry is the one used longest ago.
    this.buckets.delete(key);
    setBounded(this.buckets, key, b, this.max);
  }

  /** Takes one token of `key` at time `now` (ms), if there is one. */
  take(key: string, now: number): RateDecision {
    const tokens = this.refilled(key, now);
    if (tokens >= 1) {
      this.put(key, { tokens: tokens - 1, at: now });
      return { ok: true, retryAfterMs: 0 };
    }
    this.put(key, { tokens, at: now });
    return { ok: false, retryAfterMs: Math.ceil(((1 - tokens) * 1000) / this.ratePerSecond) };
  }

  /**
   * Takes up to `max` whole tokens of `key` at `now` — as many as there are — and returns how many
   * (0: none left; `retryAfterMs` as take()). For work whose size is known only after it is done:
   * take the most it may cost, then give back what it did not use.
   */
  takeUpTo(key: string, now: number, max: number): RateDecision & { readonly taken: number } {
    const tokens = this.refilled(key, now);
    const taken = Math.max(0, Math.min(Math.floor(max), Math.floor(tokens)));
    this.put(key, { tokens: tokens - taken, at: now });
    return taken > 0 ? { ok: true, retryAfterMs: 0, taken } : { ok: false, retryAfterMs: Math.ceil(((1 - tokens) * 1000) / this.ratePerSecond), taken };
  }

  /** Returns `count` tokens taken by takeUpTo and not used (never above the burst). */
  giveBack(key: string, count: number): void {
    const b = this.buckets.get(key);
    if (b && count > 0) this.buckets.set(key, { tokens: Math.min(this.burst, b.tokens + count), at: b.at });
  }

  /** The tokens `key` holds at `now`, refilled since its last use. */
  private refilled(key: string, now: number): number {
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    return Math.min(this.burst, b.tokens + (Math.max(0, now - b.at) * this.ratePerSecond) / 1000);
  }
}
