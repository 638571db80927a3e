// One key range followed by catch-up requests (catch-up-watch.ts) while its push watch cannot be
// created, and by that push watch as soon as it can: a single KeyWatch, so a watcher of one range
// (the service and enrollment watches, through range-resume.ts) consumes it as it consumes a watch.
// The create that was too slow (or refused) is kept; failures are retried with backoff, spread so a
// fleet does not retry in lockstep (rewatch-jitter.ts; a broker's rate-limited retryAfterMs
// honoured), each retry asking after the last revision handed on. The push watch takes over only
// once the catch-up's first pass is in (the initial snapshot stays whole), and its entries at or
// below the last revision handed on are skipped: nothing is delivered twice.
// The one handover of the agent's watches: the service and enrollment watches (range-resume.ts) and
// MeshWatch (one per range of a session that follows the bucket by catch-up) consume it as a watch.
import type { KvWatchEntry } from '@nats-io/kv';
import { retryWithBackoff, type BackoffPolicy, type Random } from '../../lib/backoff.ts';
import type { Clock } from '../../lib/clock.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { retryAfterOf } from './brokered-watch.ts';
import { CatchUpWatch } from './catch-up-watch.ts';
import type { KeyWatch, KeyWatchOptions, KeyWatchSource } from './key-watch.ts';
import { watchRetryPolicy, type WatchRetryOptions } from './rewatch-jitter.ts';

/** What became of a push watch's create within catchUpAfterMs: made, refused, or still under way. */
type CreateOutcome<T> = { readonly kind: 'created'; readonly watch: T } | { readonly kind: 'failed'; readonly err: unknown } | { readonly kind: 'slow' };

/**
 * Waits up to `afterMs` on the clock for `creating` (a session's push watch, or MeshWatch's pair). What
 * is not made by then is followed by catch-up, the handover keeping the create; a refusal after that
 * is the handover's to see (not an unhandled rejection here).
 */
export async function createdWithin<T>(creating: Promise<T>, afterMs: number, clock: Clock): Promise<CreateOutcome<T>> {
  creating.catch(() => undefined);
  const timer = new AbortController();
  try {
    return await Promise.race([
      creating.then(
        (watch): CreateOutcome<T> => ({ kind: 'created', watch }),
        (err: unknown): CreateOutcome<T> => ({ kind: 'failed', err }),
      ),
      clock.sleep(afterMs, timer.signal).then((): CreateOutcome<T> => ({ kind: 'slow' })),
    ]);
  } finally {
    timer.abort();
  }
}

/** Why a create did not give a watch in time (a log line's reason). */
export function notCreatedReason(outcome: Exclude<CreateOutcome<unknown>, { kind: 'created' }>, afterMs: number): string {
  return outcome.kind === 'failed' ? errorMessage(outcome.err) : `not created within ${afterMs} ms`;
}

export interface CatchUpHandoverOptions {
  readonly source: KeyWatchSource;
  readonly bucket: string;
  /** What the push watch was asked for (its key is the range followed). */
  readonly watch: KeyWatchOptions;
  /** The catch-up starts after this revision (0: the whole range, as the initial snapshot). */
  readonly afterRevision: number;
  /** The create of the push watch still under way (refused or slow). */
  readonly pending: Promise<KeyWatch>;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Backoff between further creates (the watches': rewatch-jitter.ts watchRetryPolicy, spread ±50 %). */
  readonly retry: BackoffPolicy;
  /** Random source in [0, 1) of the retry's spread (default Math.random). */
  readonly random?: Random;
  /** Catch-up poll interval (default 1000 ms). */
  readonly intervalMs?: number;
}

export class CatchUpHandover implements KeyWatch {
  private readonly catchUp: CatchUpWatch;
  private push: KeyWatch | undefined;
  private ended = false;
  /** The newest revision handed on (the catch-up's start until then). */
  private last: number;
  private readonly abort = new AbortController();

  constructor(private readonly o: CatchUpHandoverOptions) {
    this.last = o.afterRevision;
    this.catchUp = new CatchUpWatch({
      source: o.source,
      bucket: o.bucket,
      filter: o.watch.key,
      afterRevision: o.afterRevision,
      clock: o.clock,
      logger: o.logger,
      ...(o.intervalMs === undefined ? {} : { intervalMs: o.intervalMs }),
    });
    void this.returnToPush();
  }

  /** Still following by catch-up requests (no push watch yet). */
  get catchingUp(): boolean {
    return this.push === undefined && !this.ended;
  }

  initialCount(): Promise<number | undefined> {
    return this.catchUp.initialCount();
  }

  stop(): void {
    if (this.ended) return;
    this.ended = true;
    this.abort.abort();
    this.catchUp.stop();
    this.push?.stop();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<KvWatchEntry> {
    try {
      for await (const e of this.catchUp) {
        this.last = Math.max(this.last, e.revision);
        yield e;
      }
      // The catch-up ended: stopped, failed (then the session ends), or handed over to the push watch.
      const push = this.push;
      if (push === undefined || this.ended) return;
      this.o.logger.info({ filter: this.o.watch.key, afterRevision: this.last }, 'the watch can be created again; leaving catch-up');
      for await (const e of push) {
        // A push watch asked from an older revision delivers again what the catch-up handed on.
        if (e.revision <= this.last) continue;
        this.last = e.revision;
        yield e;
      }
    } finally {
      this.stop();
    }
  }

  /** Keeps creating the push watch until one exists, then ends the catch-up (after its first pass) for it. */
  private async returnToPush(): Promise<void> {
    let first = true;
    const w = await retryWithBackoff(
      () => {
        if (first) {
          first = false;
          return this.o.pending;
        }
        // After what was handed on, or (nothing yet) what the first create asked for.
        return this.o.source.watch(this.last > 0 ? { key: this.o.watch.key, resumeFromRevision: this.last + 1 } : this.o.watch);
      },
      {
        policy: this.o.retry,
        clock: this.o.clock,
        ...(this.o.random === undefined ? {} : { random: this.o.random }),
        signal: this.abort.signal,
        // A broker that refused as rate-limited is not asked again before its retryAfterMs (capped).
        minDelayOf: retryAfterOf,
        onFailure: (err, failures, retryInMs) => this.o.logger.debug({ filter: this.o.watch.key, err: errorMessage(err), failures, retryInMs }, 'catch-up: the watch still cannot be created'),
      },
    ).catch(() => undefined);
    if (w === undefined) return;
    // The initial snapshot comes whole from the catch-up (a failed first pass ends this watch).
    const initial = await this.catchUp.initialCount();
    if (this.ended || initial === undefined) {
      w.stop();
      return;
    }
    this.push = w;
    this.catchUp.stop();
  }
}

/** A watcher's own settings its handovers take (MeshWatch's and RangeResume's options carry them). */
interface HandoverSettings extends WatchRetryOptions {
  readonly bucket: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Random source of the retries' spread (rewatch-jitter.ts). */
  readonly random?: Random;
  readonly catchUpIntervalMs?: number;
}

/** A handover of one range on a watcher's settings: its creates retried with the watches' spread backoff (rewatch-jitter.ts watchRetryPolicy). */
export function handoverWith(s: HandoverSettings, range: Pick<CatchUpHandoverOptions, 'source' | 'watch' | 'afterRevision' | 'pending'>): CatchUpHandover {
  return new CatchUpHandover({
    ...range,
    bucket: s.bucket,
    clock: s.clock,
    logger: s.logger,
    retry: watchRetryPolicy(s),
    ...(s.random === undefined ? {} : { random: s.random }),
    ...(s.catchUpIntervalMs === undefined ? {} : { intervalMs: s.catchUpIntervalMs }),
  });
}
