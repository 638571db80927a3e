// Exponential backoff, the one copy: initial · 2^(failures − 1), capped, optionally jittered so a
// fleet restarting together does not retry in lockstep. Time (Clock) and randomness are injected.
import type { Clock } from './clock.ts';

export interface BackoffPolicy {
  /** Delay after the first failure (ms). */
  readonly initialMs: number;
  /** Cap (ms). */
  readonly maxMs: number;
  /** Fraction of spread around the delay: 0.2 gives ±20 %. Default 0 (no jitter). */
  readonly jitter?: number;
}

/** A source of numbers in [0, 1), Math.random in production. */
export type Random = () => number;

/**
 * `baseMs` spread by ±`fraction` with `random` in [0, 1): base · (1 − fraction + 2 · fraction · random),
 * rounded to whole ms. The one jitter formula: backoff delays here, the agent's heartbeat interval.
 */
export function jittered(baseMs: number, fraction: number, random: number): number {
  return Math.round(baseMs * (1 - fraction + random * 2 * fraction));
}

/**
 * A uniform moment within `windowMs` (`random` in [0, 1)), rounded to whole ms: when one of a fleet
 * that was disturbed together (the same NATS server lost, a new leader announced) acts again, so the
 * fleet does not act in the same instant. The agent's re-watch after a reconnect, its heartbeat
 * after a reconnect or a leader's announcement.
 */
export function spreadWithin(windowMs: number, random: number): number {
  return Math.round(Math.max(0, windowMs) * random);
}

/** The delay before the next attempt after `failures` consecutive failures (0 failures: 0 ms). */
export function backoffDelay(policy: BackoffPolicy, failures: number, random: Random = Math.random): number {
  if (failures <= 0) return 0;
  const base = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(failures - 1, 30));
  const j = policy.jitter ?? 0;
  return j === 0 ? base : jittered(base, j, random());
}

export interface RetryOptions {
  readonly policy: BackoffPolicy;
  readonly clock: Clock;
  /** Stops retrying (and cuts a pending sleep short). */
  readonly signal: AbortSignal;
  readonly random?: Random;
  /** Told about each failure before the sleep, e.g. to log it. */
  readonly onFailure?: (err: unknown, failures: number, retryInMs: number) => void;
  /** The least a failure asks to wait (e.g. a broker's rate-limited `retryAfterMs`, capped by the caller); the sleep is the longer of it and the backoff. */
  readonly minDelayOf?: (err: unknown) => number;
  /**
   * superviseWithBackoff: the delay the run that just ended asked for its successor (e.g. a reconnect's
   * spread), asked once after each run; after a clean end it replaces the initial delay, after a
   * failure it is the least the backoff waits. Undefined: the policy alone.
   */
  readonly nextDelay?: () => number | undefined;
}

/** The sleep after a failure: the backoff, or longer if the failure asked for more (RetryOptions.minDelayOf). */
function delayAfter(o: RetryOptions, failures: number, err: unknown): number {
  return Math.max(backoffDelay(o.policy, failures, o.random), o.minDelayOf?.(err) ?? 0);
}

/**
 * Runs `attempt` until it resolves, sleeping a backoff delay on `clock` after each failure.
 * Resolves to the result, or undefined once `signal` has aborted. Never rejects for a failed attempt.
 */
export async function retryWithBackoff<T>(attempt: () => Promise<T>, o: RetryOptions): Promise<T | undefined> {
  let failures = 0;
  while (!o.signal.aborted) {
    try {
      return await attempt();
    } catch (err) {
      if (o.signal.aborted) return undefined;
      failures++;
      const delay = delayAfter(o, failures, err);
      o.onFailure?.(err, failures, delay);
      await o.clock.sleep(delay, o.signal);
    }
  }
  return undefined;
}

/**
 * Keeps a long-running `run` (e.g. a KV watch consumed to its end) going until `signal` aborts:
 * after it ends cleanly the next start waits the policy's initial delay; after a failure the
 * delay grows with consecutive failures (`onFailure` is told first). A clean end resets the count.
 * `nextDelay` lets the run ask for another delay (RetryOptions.nextDelay).
 */
export async function superviseWithBackoff(run: () => Promise<void>, o: RetryOptions): Promise<void> {
  let failures = 0;
  while (!o.signal.aborted) {
    let failed: unknown;
    try {
      await run();
      failures = 0;
    } catch (err) {
      failures++;
      failed = err;
    }
    const asked = o.nextDelay?.();
    if (o.signal.aborted) return;
    // After a failure the first delay is already twice the minimum; after a clean end it is the minimum
    // (or what the run asked for instead).
    const delay = failures > 0 ? Math.max(delayAfter(o, failures + 1, failed), asked ?? 0) : (asked ?? backoffDelay(o.policy, 1, o.random));
    if (failures > 0) o.onFailure?.(failed, failures, delay);
    await o.clock.sleep(delay, o.signal);
  }
}
