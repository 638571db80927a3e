// A KV "watch" made of catch-up requests (KeyWatchSource.catchUp: direct gets, no consumer), for the
// seconds in which a push watch cannot be created — after a NATS server loss creating a consumer is
// refused or times out for 10–20 s while direct gets are served (docs/benchmarks.md round 21). It
// yields the same KvWatchEntry values as a watch, in revision order, so MeshWatch applies them through
// its one verify/apply path: first every entry after `afterRevision` (all pages; that is the initial
// snapshot and initialCount()), then, every `intervalMs` on the injected clock, what changed since
// the last entry. A failed first pass ends it at once (the caller retries); a failed later poll is
// logged and the next one tries again. A request the broker refused as rate-limited is asked again
// only after its `retryAfterMs` (at most RETRY_AFTER_MAX_MS), the first pass included (it goes on
// from the page refused rather than ending: re-creating the watch would only ask sooner).
// Its owner (catch-up-handover.ts) stops it once a push watch can be created again.
import type { KvWatchEntry } from '@nats-io/kv';
import type { Clock } from '../../lib/clock.ts';
import { errorMessage } from '../../lib/errors.ts';
import { catchUpWatchEntry, type KvCatchUpEntry } from '../../lib/kv-catch-up.ts';
import type { Logger } from '../../lib/logger.ts';
import { AsyncQueue } from '../../lib/async-queue.ts';
import { retryAfterOf } from './brokered-watch.ts';
import type { KeyWatch, KeyWatchSource } from './key-watch.ts';

export interface CatchUpWatchOptions {
  readonly source: Pick<KeyWatchSource, 'catchUp'>;
  readonly bucket: string;
  /** The key filter (`nodes.>`, …). */
  readonly filter: string;
  /** Entries after this revision (0: everything the stream still holds under the filter). */
  readonly afterRevision: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** How often to ask for what changed after the first pass (default 1000 ms). */
  readonly intervalMs?: number;
  /** Entries per page (default 256, the broker's maximum). */
  readonly pageLimit?: number;
}


export class CatchUpWatch implements KeyWatch {
  private readonly queue = new AsyncQueue<KvWatchEntry>();
  private ended = false;
  private cursor: number;
  private readonly abort = new AbortController();
  private readonly initial: Promise<number | undefined>;
  private polls = 0;

  constructor(private readonly o: CatchUpWatchOptions) {
    this.cursor = o.afterRevision;
    this.initial = this.firstPass();
    void this.initial.then((n) => {
      if (n !== undefined) void this.follow();
    });
  }

  /** Catch-up requests answered so far (pages). */
  get pages(): number {
    return this.polls;
  }

  initialCount(): Promise<number | undefined> {
    return this.initial;
  }

  stop(): void {
    if (this.ended) return;
    this.ended = true;
    this.abort.abort();
    this.queue.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<KvWatchEntry> {
    return this.queue.iterator(() => this.stop());
  }

  /** Every page after the start: the initial snapshot. Undefined (and the watch ended) if it failed. */
  private async firstPass(): Promise<number | undefined> {
    // Pages read before a rate-limited one are kept: the cursor has moved past them.
    const entries: KvCatchUpEntry[] = [];
    for (;;) {
      try {
        await this.readAll((page) => {
          entries.push(...page);
        });
        if (this.ended) return undefined;
        entries.forEach((e, i) => this.queue.push(catchUpWatchEntry(this.o.bucket, e, i + 1 >= entries.length)));
        return entries.length;
      } catch (err) {
        const waitMs = retryAfterOf(err);
        if (waitMs > 0 && !this.ended) {
          this.o.logger.debug({ filter: this.o.filter, retryAfterMs: waitMs }, 'catch-up: rate-limited; asking again when the broker said');
          await this.o.clock.sleep(waitMs, this.abort.signal);
          if (this.ended) return undefined;
          continue;
        }
        this.o.logger.warn({ filter: this.o.filter, err: errorMessage(err) }, 'catch-up: cannot read what changed; the watch is retried');
        this.stop();
        return undefined;
      }
    }
  }

  private async follow(): Promise<void> {
    const intervalMs = this.o.intervalMs ?? 1000;
    let waitMs = intervalMs;
    while (!this.ended) {
      await this.o.clock.sleep(waitMs, this.abort.signal);
      if (this.ended) return;
      waitMs = intervalMs;
      try {
        // Each page is handed on as it arrives: the cursor has moved past it, so a later page that
        // fails (rate-limited, a timeout) must not take the earlier ones with it.
        await this.readAll((page) => {
          for (const e of page) this.queue.push(catchUpWatchEntry(this.o.bucket, e, true));
        });
      } catch (err) {
        // Refused as rate-limited: not before the broker said (the usual interval if that is longer).
        waitMs = Math.max(intervalMs, retryAfterOf(err));
        this.o.logger.debug({ filter: this.o.filter, err: errorMessage(err), nextInMs: waitMs }, 'catch-up poll failed; polling again');
      }
    }
  }

  /**
   * Pages from the cursor until one says no more follow; each page's new entries go to `onPage` as
   * soon as it is read (the cursor moves past them), so a later page that fails loses none of them.
   */
  private async readAll(onPage: (entries: readonly KvCatchUpEntry[]) => void): Promise<void> {
    for (;;) {
      const page = await this.o.source.catchUp({ filter: this.o.filter, afterRevision: this.cursor, limit: this.o.pageLimit ?? 256 });
      this.polls++;
      if (this.ended) return;
      const fresh: KvCatchUpEntry[] = [];
      for (const e of page.entries) {
        if (e.revision <= this.cursor) continue;
        fresh.push(e);
        this.cursor = e.revision;
      }
      onPage(fresh);
      if (!page.more || page.entries.length === 0) return;
    }
  }
}
