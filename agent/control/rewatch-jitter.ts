// When a watcher of the coordinator's bucket re-creates its watch after a NATS reconnect: at a random
// moment within a short window (lib/backoff.ts spreadWithin), so agents that lost the same server do
// not all create their consumers on JetStream in the same instant. And how long it waits before each
// retry (a failed or cut-short session, a push watch create while following by catch-up): the
// exponential backoff spread ±50 % (lib/backoff.ts jittered, WATCH_RETRY_JITTER), so agents whose
// creates failed together (the same server lost) do not retry in lockstep either. MeshWatch and the
// range watches (the service and enrollment watches, range-resume.ts, catch-up-handover.ts) take the
// same options, defaults and random source.
import { spreadWithin, type BackoffPolicy, type Random } from '../../lib/backoff.ts';

/** The default window of the re-watch after a reconnect (ms). */
export const REWATCH_JITTER_MS = 2000;

/** Spread of every retry delay of the watches: ±50 % around the backoff (lib/backoff.ts jittered). */
const WATCH_RETRY_JITTER = 0.5;

export interface RewatchJitterOptions {
  /**
   * After a reconnect, re-create the watch after a random delay in [0, this) (default 2000 ms; 0:
   * at once), so agents that lost the same server do not all hit JetStream in the same instant.
   */
  readonly rewatchJitterMs?: number;
  /** Random source in [0, 1) for the re-watch spread and the retry jitter (tests). */
  readonly random?: Random;
}

/** The retry settings of a watch (as MeshWatch's and the range watches' options name them). */
export interface WatchRetryOptions {
  /** Retry delays when the watch cannot be had (default 250 ms doubling to 5 s, then spread ±50 %). */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
}

/** The delay before the re-watch after a reconnect. */
export function rewatchDelayMs(o: RewatchJitterOptions): number {
  return spreadWithin(o.rewatchJitterMs ?? REWATCH_JITTER_MS, (o.random ?? Math.random)());
}

/**
 * A watch's retry backoff: after n failures min(retryMaxMs, retryMinMs · 2^(n−1)), spread to between
 * 0.5× and 1.5× of it by the options' random source (lib/backoff.ts backoffDelay).
 */
export function watchRetryPolicy(o: WatchRetryOptions): BackoffPolicy {
  return { initialMs: o.retryMinMs ?? 250, maxMs: o.retryMaxMs ?? 5000, jitter: WATCH_RETRY_JITTER };
}

/** A watch's retry backoff with the random source it is spread by: the options supervised retries take (lib/backoff.ts). */
export function watchRetry(o: WatchRetryOptions & { readonly random?: Random }): { readonly policy: BackoffPolicy; readonly random?: Random } {
  return { policy: watchRetryPolicy(o), ...(o.random === undefined ? {} : { random: o.random }) };
}
