// Stall safety for a watcher of ONE key range that reads a full snapshot per session (the service
// and enrollment watches): it keeps the revision the watcher applied, runs the shared stall detector
// (progress-monitor.ts) over the range, and after a stall makes the next session resume after that
// revision (only what changed meanwhile, deletes included) unless the bucket was renumbered
// (watch-progress.ts bucketRenumbered), when the session reads everything again; a reconnect does the
// same (reconnected()), the next session starting at a random moment within a short window
// (rewatch-jitter.ts, as MeshWatch's) so a fleet that lost the same server does not re-create its
// consumers at once (the watcher's supervisor asks rewatchDelay()). It also opens each session's watch: when the push watch cannot be created
// within catchUpAfterMs (refused, timing out, or slow, as right after a NATS server loss) the session
// follows the range by catch-up requests from the last applied revision (the whole range when nothing
// was applied yet) and the push watch takes over once it can be created (catch-up-handover.ts).
// MeshWatch, with two ranges and an audit, drives the same detector itself and opens the same handover per range.
import type { NatsConnection } from '@nats-io/transport-node';
import type { Clock } from '../../lib/clock.ts';
import { CrosslinkError } from '../../lib/errors.ts';
import { kvLastRevisions } from '../../lib/kv-last-revision.ts';
import type { Logger } from '../../lib/logger.ts';
import { createdWithin, handoverWith, notCreatedReason, type CatchUpHandover } from './catch-up-handover.ts';
import type { KeyWatch, KeyWatchSource } from './key-watch.ts';
import { ProgressMonitor } from './progress-monitor.ts';
import { rewatchDelayMs, type RewatchJitterOptions, type WatchRetryOptions } from './rewatch-jitter.ts';
import { bucketRenumbered } from './watch-progress.ts';

/** The stall detection settings a watcher takes (as MeshWatch's). */
export interface StallDetectionOptions {
  /** Look this often whether the watch fell behind the bucket (one direct get; default 15 s; 0 disables). */
  readonly progressCheckMs?: number;
  /** Every this long (default 1 s) for progressBurstWindowMs (default 30 s) after a NATS cluster change, and once after a look found the watch behind. */
  readonly progressBurstMs?: number;
  readonly progressBurstWindowMs?: number;
  /**
   * Catch-up (as MeshWatch's): when the watch cannot be created within this long (default 1000 ms; 0
   * disables), follow the range by catch-up requests every `catchUpIntervalMs` (default 1000 ms) until
   * it can be.
   */
  readonly catchUpAfterMs?: number;
  readonly catchUpIntervalMs?: number;
}

/** retryMinMs, retryMaxMs: the backoff between creates of the push watch while following by catch-up (as the sessions', spread: rewatch-jitter.ts). */
export interface RangeResumeOptions extends StallDetectionOptions, RewatchJitterOptions, WatchRetryOptions {
  readonly nc: NatsConnection;
  readonly bucket: string;
  readonly filter: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The watcher, in log lines. */
  readonly what: string;
  /** Ends the current watch (its session then ends and the next one resumes). */
  readonly endWatch: () => void;
}

/** Neither the watch nor a catch-up of the range could be started (the session fails and backs off). */
export class RangeWatchError extends CrosslinkError {
  override name = 'RangeWatchError';
}

/** A session's watch (RangeResume.open): `from` is the revision it resumes from, undefined for a full read. */
export interface OpenedRange {
  readonly watch: KeyWatch;
  readonly from: number | undefined;
}

export interface RangeResumeStats {
  /** Stalls found (each re-created the watch). */
  readonly stalls: number;
  /** Sessions that resumed after the last applied revision instead of re-reading everything. */
  readonly resumes: number;
  /** Revisions the watch was behind the bucket at the latest look. */
  readonly lagRevisions: number;
  /** Sessions that followed the range by catch-up requests (no watch could be created in time). */
  readonly catchUpSessions: number;
  /** The current session follows by catch-up requests (no push watch yet). */
  readonly catchingUp: boolean;
  /** Entries applied by every session so far (what the watcher has read in total; as MeshWatch's). */
  readonly totalEntries: number;
}

export class RangeResume {
  private applied = 0;
  /** The current session once its snapshot is in (or it resumed): what the detector judges. */
  private live: object | undefined;
  private resumeNext = false;
  /** The delay a reconnect asked before the next session (taken by rewatchDelay()). */
  private reconnectDelayMs: number | undefined;
  private resumes = 0;
  private catchUpSessions = 0;
  private totalEntries = 0;
  /** The current session's catch-up, if it follows by catch-up. */
  private following: CatchUpHandover | undefined;
  private stopped = false;
  private readonly stopping = new AbortController();
  private readonly look: () => Promise<number[]>;
  private readonly progress: ProgressMonitor;

  constructor(private readonly o: RangeResumeOptions) {
    this.look = kvLastRevisions(o.nc, o.bucket, [o.filter]);
    this.progress = new ProgressMonitor({
      clock: o.clock,
      logger: o.logger,
      what: o.what,
      filters: [o.filter],
      ...(o.progressCheckMs === undefined ? {} : { intervalMs: o.progressCheckMs }),
      ...(o.progressBurstMs === undefined ? {} : { burstMs: o.progressBurstMs }),
      ...(o.progressBurstWindowMs === undefined ? {} : { burstWindowMs: o.progressBurstWindowMs }),
      look: () => this.look(),
      // A catch-up polls the bucket itself: it cannot stall silently.
      watching: () => (this.live === undefined || this.following?.catchingUp === true ? undefined : { session: this.live, applied: [this.applied] }),
      onStall: () => {
        this.resumeNext = true;
        this.o.endWatch();
      },
    });
  }

  start(): void {
    this.progress.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    await this.progress.stop();
  }

  /** The NATS cluster changed under us: look often for a while. */
  burst(): void {
    this.progress.burst();
  }

  /**
   * NATS reconnected (perhaps to another server; the watch's consumer may be gone): the watch is
   * ended and, when its session was live (its snapshot in), the next one resumes after the last
   * applied revision as after a stall — not a full re-read (MeshWatch does the same). A session cut
   * short during its snapshot reads everything again.
   */
  reconnected(): void {
    if (this.live !== undefined) this.resumeNext = true;
    this.reconnectDelayMs = rewatchDelayMs(this.o);
    this.o.endWatch();
  }

  /**
   * How long to wait before the next session, once one ended: the reconnect's spread if a reconnect
   * ended it (asked once), else undefined (the watcher's own backoff). For superviseWithBackoff's nextDelay.
   */
  rewatchDelay(): number | undefined {
    const ms = this.reconnectDelayMs;
    this.reconnectDelayMs = undefined;
    return ms;
  }

  stats(): RangeResumeStats {
    return { stalls: this.progress.stalls, resumes: this.resumes, lagRevisions: this.progress.lagRevisions, catchUpSessions: this.catchUpSessions, catchingUp: this.following?.catchingUp === true, totalEntries: this.totalEntries };
  }

  /**
   * A session's watch of the range (sessionStart() decides full read or resume): the push watch if
   * `source` creates it within catchUpAfterMs, else a catch-up from the last applied revision — kept
   * even when this session would have read everything, unless nothing was applied, the range was not
   * read whole yet (`synced`) or the bucket was renumbered — that hands over to the push watch later.
   * Throws when neither can be had (the create failed or is slow, and so did the catch-up's first pass).
   */
  async open(source: KeyWatchSource, synced: boolean): Promise<OpenedRange> {
    // A reconnect during the sleep before this session: the session starts now, not after another spread.
    this.reconnectDelayMs = undefined;
    const before = this.applied;
    let from = await this.sessionStart(synced);
    const asked = from === undefined ? { key: this.o.filter } : { key: this.o.filter, resumeFromRevision: from };
    const creating = source.watch(asked);
    const afterMs = this.o.catchUpAfterMs ?? 1000;
    if (afterMs <= 0) return { watch: await creating, from };
    const raced = await createdWithin(creating, afterMs, this.o.clock);
    if (raced.kind === 'created') return { watch: raced.watch, from };
    if (from === undefined && synced && before > 0 && !(await this.renumbered(before))) {
      // Only what changed since the last applied revision (deletes are markers in the stream).
      this.applied = before;
      this.resumes++;
      from = before + 1;
    }
    this.catchUpSessions++;
    const reason = notCreatedReason(raced, afterMs);
    this.o.logger.warn({ reason, afterRevision: from === undefined ? 0 : from - 1 }, `cannot create the ${this.o.what}; following it by catch-up requests until it can be`);
    const watch = handoverWith(this.o, { source, watch: asked, afterRevision: from === undefined ? 0 : from - 1, pending: creating });
    // No catch-up either (its first pass failed): the session fails as a failed create did, backing
    // off (a rate-limited create's retryAfterMs honoured) and telling why.
    if ((await watch.initialCount()) === undefined) {
      watch.stop();
      if (raced.kind === 'failed') throw raced.err;
      throw new RangeWatchError(`the ${this.o.what} was not created within ${afterMs} ms and the catch-up failed`);
    }
    this.following = watch;
    return { watch, from };
  }

  /**
   * At a session's start: the revision to resume from (the last one stalled and `synced`: a complete
   * snapshot was read before), or undefined for a full read (then nothing counts as applied).
   */
  private async sessionStart(synced: boolean): Promise<number | undefined> {
    const resume = this.resumeNext && synced && this.applied > 0 && !(await this.renumbered());
    this.resumeNext = false;
    this.live = undefined;
    this.following = undefined;
    if (!resume) {
      this.applied = 0;
      return undefined;
    }
    this.resumes++;
    this.o.logger.info({ afterRevision: this.applied }, `${this.o.what} resuming`);
    return this.applied + 1;
  }

  /** The session's snapshot is in (or it resumed): from now on the detector judges it. */
  sessionLive(session: object): void {
    this.live = session;
  }

  sessionEnded(): void {
    this.live = undefined;
    this.following = undefined;
  }

  /** An entry was applied (any kind: a refused value and a delete too). */
  appliedUpTo(revision: number): void {
    this.totalEntries++;
    this.applied = Math.max(this.applied, revision);
  }

  /** An entry at or below the applied revision was applied already (entries come in revision order). */
  wasApplied(revision: number): boolean {
    return revision <= this.applied;
  }

  /** Revisions numbered anew (the bucket re-created) would never reach ours: then read everything (also when the look fails). */
  private renumbered(applied = this.applied): Promise<boolean> {
    return bucketRenumbered(
      () => this.look(),
      [applied],
      (ms) => this.o.clock.sleep(ms, this.stopping.signal),
      () => this.stopped,
    ).catch(() => true);
  }
}
