// Stall safety for a watcher of ONE key range that reads a full snapshot per session (the service
// and enrollment watches): it keeps the revision the watcher applied, runs the shared stall detector
// (progress-monitor.ts) over the range, and after a stall makes the next session resume after that
// revision (only what changed meanwhile, deletes included) unless the bucket was renumbered
// (watch-progress.ts bucketRenumbered), when the session reads everything again. MeshWatch, with two
// ranges, catch-up and an audit, drives the same detector itself.
import type { NatsConnection } from '@nats-io/transport-node';
import type { Clock } from '../../lib/clock.ts';
import { kvLastRevisions } from '../../lib/kv-last-revision.ts';
import type { Logger } from '../../lib/logger.ts';
import { ProgressMonitor } from './progress-monitor.ts';
import { bucketRenumbered } from './watch-progress.ts';

/** The stall detection settings a watcher takes (as MeshWatch's). */
export interface StallDetectionOptions {
  /** Look this often whether the watch fell behind the bucket (one direct get; default 15 s; 0 disables). */
  readonly progressCheckMs?: number;
  /** Every this long (default 1 s) for progressBurstWindowMs (default 30 s) after a NATS cluster change, and once after a look found the watch behind. */
  readonly progressBurstMs?: number;
  readonly progressBurstWindowMs?: number;
}

export interface RangeResumeOptions extends StallDetectionOptions {
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

export interface RangeResumeStats {
  /** Stalls found (each re-created the watch). */
  readonly stalls: number;
  /** Sessions that resumed after the last applied revision instead of re-reading everything. */
  readonly resumes: number;
  /** Revisions the watch was behind the bucket at the latest look. */
  readonly lagRevisions: number;
}

export class RangeResume {
  private applied = 0;
  /** The current session once its snapshot is in (or it resumed): what the detector judges. */
  private live: object | undefined;
  private resumeNext = false;
  private resumes = 0;
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
      watching: () => (this.live === undefined ? undefined : { session: this.live, applied: [this.applied] }),
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

  stats(): RangeResumeStats {
    return { stalls: this.progress.stalls, resumes: this.resumes, lagRevisions: this.progress.lagRevisions };
  }

  /**
   * At a session's start: the revision to resume from (the last one stalled and `synced`: a complete
   * snapshot was read before), or undefined for a full read (then nothing counts as applied).
   */
  async sessionStart(synced: boolean): Promise<number | undefined> {
    const resume = this.resumeNext && synced && this.applied > 0 && !(await this.renumbered());
    this.resumeNext = false;
    this.live = undefined;
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
  }

  /** An entry was applied (any kind: a refused value and a delete too). */
  appliedUpTo(revision: number): void {
    this.applied = Math.max(this.applied, revision);
  }

  /** An entry at or below the applied revision was applied already (entries come in revision order). */
  wasApplied(revision: number): boolean {
    return revision <= this.applied;
  }

  /** Revisions numbered anew (the bucket re-created) would never reach ours: then read everything (also when the look fails). */
  private renumbered(): Promise<boolean> {
    return bucketRenumbered(
      () => this.look(),
      [this.applied],
      (ms) => this.o.clock.sleep(ms, this.stopping.signal),
      () => this.stopped,
    ).catch(() => true);
  }
}
