// Per-cluster registration rate limit: a token bucket per cluster name, refilled at `ratePerSecond`
// up to `burst`. Pure apart from the injected time; the leader holds one per term (in memory: a
// new leader starts every cluster with a full bucket, which at worst allows one extra burst).
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
  ) {}

  /** Takes one token of `key` at time `now` (ms), if there is one. */
  take(key: string, now: number): RateDecision {
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    const tokens = Math.min(this.burst, b.tokens + (Math.max(0, now - b.at) * this.ratePerSecond) / 1000);
    if (tokens >= 1) {
      this.buckets.set(key, { tokens: tokens - 1, at: now });
      return { ok: true, retryAfterMs: 0 };
    }
    this.buckets.set(key, { tokens, at: now });
    return { ok: false, retryAfterMs: Math.ceil(((1 - tokens) * 1000) / this.ratePerSecond) };
  }
}
