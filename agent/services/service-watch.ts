// Watches `services.>` in the coordinator's KV and keeps the VERIFIED ServiceExport records: signed
// by the coordinator, stored under the key their content names, generation never going backwards.
// Each watch session reads the full (small) service set; the records in use are replaced only when
// a session's snapshot is complete, so an outage or a re-watch never empties the answers
// (fail-static). A session that ends (NATS reconnect, watcher error) is re-created with backoff; after
// a reconnect it resumes after the last applied revision, as after a stall (below), at a random
// moment within 2 s (rewatch-jitter.ts).
// A session that stops moving while the bucket has newer entries under `services.>` (a silent
// stall: its consumer's server left the NATS cluster) is found by the agent's shared stall detector
// and re-created after the last applied revision: only what changed meanwhile is read, deletes
// included (agent/control/range-resume.ts; a full re-read only if the bucket was renumbered).
// While no watch can be created (the seconds after a NATS server loss) the session follows
// `services.>` by catch-up requests from the last applied revision, verified as a watch's entries,
// until the push watch takes over (agent/control/catch-up-handover.ts).
import type { VerifyKeys } from '../../protocol/signing.ts';
import type { KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { directWatchSource, type KeyWatch, type KeyWatchSource } from '../control/key-watch.ts';
import type { Clock } from '../../lib/clock.ts';
import { superviseWithBackoff } from '../../lib/backoff.ts';
import { ClockTimer } from '../../lib/clock-timer.ts';
import { retryAfterOf } from '../control/brokered-watch.ts';
import { CrosslinkError, errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { ServiceExportRecord, serviceKeys } from '../../protocol/service.ts';
import { verifyEnvelope } from '../../protocol/signing.ts';
import { onConnectionStatus } from '../../lib/nats-status.ts';
import { RangeResume, type RangeResumeStats, type StallDetectionOptions } from '../control/range-resume.ts';
import { watchRetry, type RewatchJitterOptions, type WatchRetryOptions } from '../control/rewatch-jitter.ts';

/** A watch session that ended without delivering its full snapshot (retried with backoff). */
export class ServiceWatchError extends CrosslinkError {
  override name = 'ServiceWatchError';
}

/** rewatchJitterMs, random: the re-watch after a reconnect waits a random moment within 2 s; retryMinMs, retryMaxMs: the sessions' backoff, spread ±50 % (rewatch-jitter.ts). */
export interface ServiceWatchOptions extends StallDetectionOptions, RewatchJitterOptions, WatchRetryOptions {
  readonly nc: NatsConnection;
  readonly bucket: string;
  /** The coordinator's public key, or its key set during a signing-key rotation. */
  readonly coordinatorKey: VerifyKeys;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Where the watch comes from (the agent: the coordinator's watch broker); default the direct nats.js watch. */
  readonly watches?: KeyWatchSource;
}

export class ServiceWatch {
  private records = new Map<string, ServiceExportRecord>();
  private readonly listeners: (() => void)[] = [];
  private readonly abort = new AbortController();
  private watcher: KeyWatch | undefined;
  private loop: Promise<void> = Promise.resolve();
  private stopStatus: (() => void) | undefined;
  private source: KeyWatchSource | undefined;
  private everSynced = false;
  private rejectedCount = 0;
  /** Stall detection and the revision a resumed session starts after. */
  private readonly resume: RangeResume;

  constructor(private readonly o: ServiceWatchOptions) {
    this.resume = new RangeResume({ ...o, filter: serviceKeys.filter, what: 'service watch', endWatch: () => this.watcher?.stop() });
  }

  /** Stalls found and resumes (agent/control/range-resume.ts). */
  stats(): RangeResumeStats {
    return this.resume.stats();
  }

  /** True once one full snapshot is in. */
  get synced(): boolean {
    return this.everSynced;
  }

  get rejected(): number {
    return this.rejectedCount;
  }

  /** Verified records, keyed by KV key. An immutable snapshot: replaced, never mutated. */
  current(): ReadonlyMap<string, ServiceExportRecord> {
    return this.records;
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  start(): void {
    this.stopStatus = onConnectionStatus(this.o.nc, (s) => {
      if (s.type === 'reconnect') this.resume.reconnected();
      // A server joined or left the cluster (or we moved): consumers may have vanished with it.
      if (s.type === 'reconnect' || s.type === 'update') this.resume.burst();
    });
    this.resume.start();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.stopStatus?.();
    this.watcher?.stop();
    await Promise.all([this.loop, this.resume.stop()]);
  }

  /** Sessions one after the other (lib/backoff.ts): the minimum delay after a complete one, growing after failures and sessions cut short before their snapshot. */
  private run(): Promise<void> {
    return superviseWithBackoff(
      async () => {
        if (!(await this.session())) throw new ServiceWatchError('the watch ended before its snapshot was complete');
      },
      {
        // Spread (rewatch-jitter.ts): a fleet whose sessions failed together does not retry together.
        ...watchRetry(this.o),
        clock: this.o.clock,
        signal: this.abort.signal,
        // A broker that refused as rate-limited is not asked again before its retryAfterMs (capped).
        minDelayOf: retryAfterOf,
        // After a reconnect: a random moment within rewatchJitterMs (range-resume.ts), not the retry minimum.
        nextDelay: () => this.resume.rewatchDelay(),
        onFailure: (err, failures, retryInMs) => this.o.logger.warn({ err: errorMessage(err), failures, retryInMs }, 'service watch failed; retrying'),
      },
    );
  }

  /**
   * One session: the full snapshot (then swapped in), then deltas until the watcher ends; after a
   * stall only the deltas after the last applied revision.
   */
  private async session(): Promise<boolean> {
    try {
      return await this.watchOnce();
    } finally {
      this.resume.sessionEnded();
    }
  }

  private async watchOnce(): Promise<boolean> {
    this.source ??= this.o.watches ?? directWatchSource({ nc: this.o.nc, bucket: this.o.bucket });
    // The push watch, or (it cannot be created in time) a catch-up that hands over to it (range-resume.ts).
    const { watch: w, from } = await this.resume.open(this.source, this.everSynced);
    this.watcher = w;
    if (this.abort.signal.aborted) w.stop();
    const session = {};
    if (from !== undefined) {
      this.resume.sessionLive(session);
      for await (const e of w) await this.applyLive(e);
      return true;
    }
    // The snapshot is collected apart and swapped in whole: deletes during an outage are seen, and
    // nothing is served half-read.
    let pending: Map<string, ServiceExportRecord> | undefined = new Map();
    const finish = (): void => {
      if (!pending) return;
      this.records = pending;
      pending = undefined;
      this.everSynced = true;
      this.resume.sessionLive(session);
      this.o.logger.info({ services: this.records.size }, 'service exports loaded');
      this.emit();
    };
    const expected = await w.initialCount();
    if (expected === 0) finish();
    // Only if the library stops telling the count: a quiet second (of the clock) ends the snapshot.
    const quiet = new ClockTimer({ clock: this.o.clock, fire: finish, onError: (err) => this.o.logger.error({ err: errorMessage(err) }, 'ending the service snapshot failed') });
    const armQuiet = (): void => {
      if (expected !== undefined || !pending) return;
      quiet.arm(1000);
    };
    armQuiet();
    let seen = 0;
    try {
      for await (const e of w) {
        if (!pending) {
          await this.applyLive(e);
          continue;
        }
        await this.apply(pending, e);
        this.resume.appliedUpTo(e.revision);
        seen++;
        if (e.isUpdate || (expected !== undefined && seen >= expected)) finish();
        else armQuiet();
      }
    } finally {
      quiet.cancel();
    }
    return pending === undefined;
  }

  /** A change after the snapshot, into a copy of the records in use (one applied already is skipped). */
  private async applyLive(e: KvWatchEntry): Promise<void> {
    if (this.resume.wasApplied(e.revision)) return;
    const target = new Map(this.records);
    await this.apply(target, e);
    this.resume.appliedUpTo(e.revision);
    this.records = target;
    this.emit();
  }

  private async apply(into: Map<string, ServiceExportRecord>, e: KvWatchEntry): Promise<void> {
    if (e.operation === 'DEL' || e.operation === 'PURGE') {
      into.delete(e.key);
      return;
    }
    let record: ServiceExportRecord;
    try {
      record = await verifyEnvelope(e.value, this.o.coordinatorKey, ServiceExportRecord);
    } catch (err) {
      this.reject(e.key, errorMessage(err));
      into.delete(e.key);
      return;
    }
    if (serviceKeys.export(record.namespace, record.name, record.cluster) !== e.key) {
      this.reject(e.key, 'record names another service or cluster than its key');
      return;
    }
    const held = into.get(e.key);
    if (held && held.generation > record.generation) {
      this.reject(e.key, `generation ${record.generation} is older than the ${held.generation} held (replay?)`);
      return;
    }
    into.set(e.key, record);
  }

  private reject(key: string, reason: string): void {
    this.rejectedCount++;
    this.o.logger.warn({ key, reason }, 'ignoring a service export record');
  }

  private emit(): void {
    for (const l of this.listeners) l();
  }
}
