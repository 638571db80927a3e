// The stall detector every KV watcher of the agent runs (MeshWatch, the service and enrollment
// watches): on the injected clock, it looks at the bucket's newest revision per watched range every
// intervalMs — every burstMs for burstWindowMs after the NATS cluster changed (burst()), and once
// burstMs after a look that found the watch behind — judges it against what the watch applied
// (watch-progress.ts judgeProgress), and tells the owner of a stall; the owner re-creates its watch
// from the last applied revision. The timing and the look here, the decision in watch-progress.ts,
// the recovery with the owner.
import type { Clock } from '../../lib/clock.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { judgeProgress, nextProgressCheckMs } from './watch-progress.ts';

/** The watch as it is now: which session (compared before and after a look), and what it applied per range. */
export interface WatchedProgress {
  readonly session: unknown;
  readonly applied: readonly number[];
}

export interface ProgressMonitorOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** The watch, in log lines ('KV watch', 'service watch', …). */
  readonly what: string;
  /** The watched ranges (names in a stall's reason). */
  readonly filters: readonly string[];
  /** Look this often (default 15 s; 0 disables). */
  readonly intervalMs?: number;
  /** After burst() and after a 'behind' look: this soon (default 1 s) … */
  readonly burstMs?: number;
  /** … for this long after burst() (default 30 s). */
  readonly burstWindowMs?: number;
  /** Per range: the bucket's newest revision (lib/kv-last-revision.ts). */
  readonly look: () => Promise<readonly number[]>;
  /** Undefined while there is nothing to judge (not live yet, stopping, or polling the bucket itself). */
  readonly watching: () => WatchedProgress | undefined;
  /** The watch is stalled: re-create it from the last applied revision. */
  readonly onStall: (reason: string) => void;
}

export type ProgressCheck = 'in-step' | 'behind' | 'stalled' | 'skipped';

export class ProgressMonitor {
  private stallCount = 0;
  private lag = 0;
  private targets: number[] | undefined;
  /** The look now scheduled is the quick follow-up of a 'behind' look. */
  private followedUp = false;
  private burstUntil = 0;
  private checking = false;
  private stopped = false;
  /** Aborted to re-arm the loop's sleep (a burst began) and on stop(). */
  private wake = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly o: ProgressMonitorOptions) {}

  /** Stalls found so far (each re-created the watch). */
  get stalls(): number {
    return this.stallCount;
  }

  /** Revisions the watch was behind the bucket at the latest look (0: in step or not looked yet). */
  get lagRevisions(): number {
    return this.lag;
  }

  start(): void {
    this.loop ??= this.run().catch((err: unknown) => this.o.logger.error({ err: errorMessage(err) }, `${this.o.what}: progress loop crashed`));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake.abort();
    await this.loop;
  }

  /** The NATS cluster changed under us (a server left or joined, or we reconnected): consumers may have vanished; look often for a while. */
  burst(): void {
    this.burstUntil = this.o.clock.now() + (this.o.burstWindowMs ?? 30_000);
    this.wake.abort();
  }

  /** One look: behind the bucket and still short of what the previous look saw is a stall (onStall). */
  async check(): Promise<ProgressCheck> {
    const before = this.stopped || this.checking ? undefined : this.o.watching();
    if (before === undefined) {
      this.targets = undefined;
      return 'skipped';
    }
    this.checking = true;
    try {
      const applied = [...before.applied];
      const bucket = await this.o.look();
      const now = this.o.watching();
      if (this.stopped || now === undefined || now.session !== before.session) return 'skipped';
      const verdict = judgeProgress(bucket, applied, this.targets, this.o.filters);
      this.lag = Math.max(0, ...bucket.map((rev, i) => rev - (applied[i] ?? 0)));
      this.o.logger.debug({ bucket, applied, verdict }, `${this.o.what}: progress check`);
      this.targets = verdict.kind === 'behind' ? [...verdict.targets] : undefined;
      if (verdict.kind === 'stalled') {
        this.stallCount++;
        this.o.logger.warn({ reason: verdict.reason }, `${this.o.what} stalled (no error, no progress); re-creating it from the last applied revision`);
        this.o.onStall(verdict.reason);
      }
      return verdict.kind;
    } catch (err) {
      // JetStream may be electing a leader right now; look again later.
      this.o.logger.debug({ err: errorMessage(err) }, `${this.o.what}: progress check failed`);
      return 'skipped';
    } finally {
      this.checking = false;
    }
  }

  /** Sleep the delay nextProgressCheckMs gives, look, repeat. */
  private async run(): Promise<void> {
    const intervalMs = this.o.intervalMs ?? 15_000;
    if (intervalMs <= 0) return;
    while (!this.stopped) {
      // One quick follow-up per 'behind' look (not a chain of them while the bucket keeps changing).
      const followUp = this.targets !== undefined && !this.followedUp;
      this.followedUp = followUp;
      const delay = nextProgressCheckMs(this.o.clock.now(), this.burstUntil, this.o.burstMs ?? 1000, intervalMs, followUp);
      const wake = this.wake;
      await this.o.clock.sleep(delay, wake.signal);
      if (this.stopped) return;
      if (wake.signal.aborted) {
        // Re-armed (a burst began): compute the delay again.
        this.wake = new AbortController();
        this.followedUp = false;
        continue;
      }
      await this.check().catch((err: unknown) => this.o.logger.error({ err: errorMessage(err) }, `${this.o.what}: progress check crashed`));
    }
  }
}
