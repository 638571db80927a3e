// The progress figures every agent KV watch reports (the mesh watch's MeshWatchStats, the service
// and enrollment watches' RangeResumeStats) as one family of series: stalls, resumes, lag, catch-up
// sessions, catching-up, entries applied. One definition for both families (crosslink_agent_watch_*
// unlabelled, crosslink_agent_range_watch_*{watch}), set from the figures pushed at scrape time.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { RangeResumeStats } from '../control/range-resume.ts';

/**
 * What each watch counts (its own totals since it started; a restarted agent reads as a counter
 * reset): RangeResumeStats, which MeshWatch's stats also carry.
 */
export type WatchProgress = RangeResumeStats;

export class WatchSeries<L extends string> {
  private readonly stalls: Counter<L>;
  private readonly resumes: Counter<L>;
  private readonly lag: Gauge<L>;
  private readonly catchUps: Counter<L>;
  private readonly catchingUp: Gauge<L>;
  private readonly entries: Counter<L>;

  /** `prefix` e.g. crosslink_agent_watch; `what` names the watch and `range` what it follows, for the help texts. */
  constructor(registers: Registry[], prefix: string, what: string, range: string, labelNames: readonly L[]) {
    const counter = (name: string, help: string): Counter<L> => new Counter<L>({ name: `${prefix}_${name}`, help, labelNames, registers });
    const gauge = (name: string, help: string): Gauge<L> => new Gauge<L>({ name: `${prefix}_${name}`, help, labelNames, registers });
    this.stalls = counter('stalls_total', `Times ${what} stalled (fell behind without an error) and was re-created after the last applied revision.`);
    this.resumes = counter('resumes_total', `Sessions of ${what} that resumed after the last applied revision (after a stall or a reconnect) instead of re-reading the ${range}.`);
    this.lag = gauge('lag_revisions', `Revisions ${what} was behind the bucket at its latest progress check (every 15 s by default).`);
    this.catchUps = counter('catch_up_sessions_total', `Sessions of ${what} that followed the ${range} by catch-up requests (no watch could be created in time).`);
    this.catchingUp = gauge('catching_up', `1 while ${what} follows the ${range} by catch-up requests (no push watch yet), else 0.`);
    this.entries = counter('entries_total', `Entries ${what} applied, every session (a full re-read shows as a jump).`);
  }

  /** Every series of every watch dropped (a watch not running then has none). */
  reset(): void {
    for (const m of [this.stalls, this.resumes, this.lag, this.catchUps, this.catchingUp, this.entries]) m.reset();
  }

  /** One watch's figures under `labels` (counters mirror the watch's own totals: set after reset()). */
  set(labels: Partial<Record<L, string>>, p: WatchProgress): void {
    this.stalls.inc(labels, p.stalls);
    this.resumes.inc(labels, p.resumes);
    this.lag.set(labels, p.lagRevisions);
    this.catchUps.inc(labels, p.catchUpSessions);
    this.catchingUp.set(labels, p.catchingUp ? 1 : 0);
    this.entries.inc(labels, p.totalEntries);
  }
}
