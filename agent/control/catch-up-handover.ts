// One key range followed by catch-up requests (catch-up-watch.ts) while its push watch cannot be
// created, and by that push watch as soon as it can: a single KeyWatch, so a watcher of one range
// (the service and enrollment watches, through range-resume.ts) consumes it as it consumes a watch.
// The create that was too slow (or refused) is kept; failures are retried with backoff, spread so a
// fleet does not retry in lockstep (rewatch-jitter.ts; a broker's rate-limited retryAfterMs honoured), each retry asking after the last revision handed on. The push
// watch takes over only once the catch-up's first pass is in (the initial snapshot stays whole), and
// its entries at or below the last revision handed on are skipped: nothing is delivered twice.
// MeshWatch, with two ranges and sessions of its own, does the same handover itself.
import type { KvWatchEntry } from '@nats-io/kv';
import { retryWithBackoff, type BackoffPolicy, type Random } from '../../lib/backoff.ts';
import type { Clock } from '../../lib/clock.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { retryAfterOf } from './brokered-watch.ts';
import { CatchUpWatch } from './catch-up-watch.ts';
import type { KeyWatch, KeyWatchOptions, KeyWatchSource } from './key-watch.ts';

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
