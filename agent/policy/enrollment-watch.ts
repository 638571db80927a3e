// Follows the operator's cluster enrollments (`enrollments.>`, coordinator-signed ClusterDefinitions)
// with a KV watch: the access policy maps `{cluster: X}` to the pod ranges X was ENROLLED with, never
// to what node records claim (protocol/policy/context.ts). Only a definition signed by a trusted
// coordinator key and stored under its own name is taken; anything else is ignored and reported.
//
// Each (re)started watch delivers every current definition first; the held set is replaced only
// when that snapshot is complete, so a removal missed while disconnected is not kept. Until the first
// snapshot is complete the enrollments are unknown (the enforcer then leaves the live table alone).
// A watch that stops moving while the bucket has newer entries under `enrollments.>` (a silent
// stall) is found by the agent's shared stall detector and re-created after the last applied
// revision: only what changed meanwhile, removals included (agent/control/range-resume.ts; a full
// re-read only if the bucket was renumbered). While no watch can be created (the seconds after a NATS
// server loss) the session follows `enrollments.>` by catch-up requests from the last applied
// revision, verified as a watch's entries, until the push watch takes over
// (agent/control/catch-up-handover.ts).
import type { KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { superviseWithBackoff } from '../../lib/backoff.ts';
import { retryAfterOf } from '../control/brokered-watch.ts';
import type { Clock } from '../../lib/clock.ts';
import { errorMessage } from '../../lib/errors.ts';
import { directWatchSource, type KeyWatch, type KeyWatchSource } from '../control/key-watch.ts';
import type { Logger } from '../../lib/logger.ts';
import { onConnectionStatus } from '../../lib/nats-status.ts';
import { RangeResume, type RangeResumeStats, type StallDetectionOptions } from '../control/range-resume.ts';
import { watchRetry, type RewatchJitterOptions, type WatchRetryOptions } from '../control/rewatch-jitter.ts';
import { verifyEnrollment } from '../../protocol/enrollment-record.ts';
import type { ClusterDefinition } from '../../protocol/messages.ts';
import { enrollmentNameFromKey, kvKeys } from '../../protocol/subjects.ts';

/** rewatchJitterMs, random: the re-watch after a reconnect waits a random moment within 2 s; retryMinMs, retryMaxMs: the sessions' backoff, spread ±50 % (rewatch-jitter.ts). */
export interface EnrollmentWatchOptions extends StallDetectionOptions, RewatchJitterOptions, WatchRetryOptions {
  readonly nc: NatsConnection;
  readonly bucket: string;
  /** Coordinator public keys a definition may be signed by. */
  readonly coordinatorKeys: readonly string[];
  readonly logger: Logger;
  readonly clock: Clock;
  /** Where the watch comes from (the agent: the coordinator's watch broker); default the direct nats.js watch. */
  readonly watches?: KeyWatchSource;
}

export interface EnrollmentWatchState {
  /** False until a complete snapshot of `enrollments.>` has been read. */
  readonly known: boolean;
  /** Verified definitions by cluster name (frozen: a new map on every change). */
  readonly definitions: ReadonlyMap<string, ClusterDefinition>;
  /** Keys whose value was refused, with the reason (kept until the key changes). */
  readonly rejected: ReadonlyMap<string, string>;
  readonly lastError: string | null;
}

export class EnrollmentWatch {
  private st: EnrollmentWatchState = { known: false, definitions: new Map(), rejected: new Map(), lastError: null };
  private readonly listeners: ((s: EnrollmentWatchState) => void)[] = [];
  private stopped = false;
  private source: KeyWatchSource | undefined;
  private watcher: KeyWatch | undefined;
  private loop: Promise<void> | undefined;
  private stopStatus: (() => void) | undefined;
  private readonly wake = new AbortController();
  /** Stall detection and the revision a resumed session starts after. */
  private readonly resume: RangeResume;

  constructor(private readonly o: EnrollmentWatchOptions) {
    this.resume = new RangeResume({ ...o, filter: kvKeys.enrollmentsFilter, what: 'enrollment watch', endWatch: () => this.watcher?.stop() });
  }

  /** Stalls found and resumes (agent/control/range-resume.ts). */
  stats(): RangeResumeStats {
    return this.resume.stats();
  }

  start(): void {
    if (this.loop) return;
    // After a reconnect the watch starts again, resuming after the last applied revision (removals are
    // entries too; range-resume.ts).
    this.stopStatus = onConnectionStatus(this.o.nc, (s) => {
      if (s.type === 'reconnect') this.resume.reconnected();
      // A server joined or left the cluster (or we moved): consumers may have vanished with it.
      if (s.type === 'reconnect' || s.type === 'update') this.resume.burst();
    });
    this.resume.start();
    this.loop = this.supervise().catch((err: unknown) => this.o.logger.error({ err: errorMessage(err) }, 'enrollment watch crashed'));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopStatus?.();
    this.watcher?.stop();
    this.wake.abort();
    await Promise.all([this.loop, this.resume.stop()]);
  }

  onChange(listener: (s: EnrollmentWatchState) => void): void {
    this.listeners.push(listener);
  }

  state(): EnrollmentWatchState {
    return this.st;
  }

  private async supervise(): Promise<void> {
    await superviseWithBackoff(
      async () => {
        this.source ??= this.o.watches ?? directWatchSource({ nc: this.o.nc, bucket: this.o.bucket });
        // The push watch, or (it cannot be created in time) a catch-up that hands over to it (range-resume.ts).
        const { watch: w, from } = await this.resume.open(this.source, this.st.known);
        if (this.stopped) w.stop();
        this.watcher = w;
        try {
          await this.consume(w, from !== undefined);
        } finally {
          this.resume.sessionEnded();
        }
      },
      {
        // Spread (rewatch-jitter.ts): a fleet whose sessions failed together does not retry together.
        ...watchRetry(this.o),
        clock: this.o.clock,
        signal: this.wake.signal,
        // A broker that refused as rate-limited is not asked again before its retryAfterMs (capped).
        minDelayOf: retryAfterOf,
        // After a reconnect: a random moment within rewatchJitterMs (range-resume.ts), not the retry minimum.
        nextDelay: () => this.resume.rewatchDelay(),
        onFailure: (err) => {
          this.set({ ...this.st, lastError: errorMessage(err) });
          this.o.logger.warn({ err: errorMessage(err) }, 'cannot watch the cluster enrollments; keeping the ones we have, retrying');
        },
      },
    );
  }

  /** A full session (the snapshot, then changes) or, resuming, only the changes after the applied revision. */
  private async consume(w: KeyWatch, resumed: boolean): Promise<void> {
    const session = {};
    // The snapshot is collected apart and replaces the held set once complete.
    let snapshot: Map<string, ClusterDefinition> | undefined = resumed ? undefined : new Map();
    const rejected = new Map<string, string>();
    const finish = (): void => {
      if (!snapshot) return;
      const defs = snapshot;
      snapshot = undefined;
      this.resume.sessionLive(session);
      this.o.logger.info({ clusters: [...defs.keys()].sort() }, 'cluster enrollments read');
      this.set({ known: true, definitions: defs, rejected: new Map(rejected), lastError: null });
    };
    if (resumed) this.resume.sessionLive(session);
    else if ((await w.initialCount()) === 0) finish();
    for await (const e of w) {
      // One at or below the applied revision was applied already.
      if (!snapshot && this.resume.wasApplied(e.revision)) continue;
      this.resume.appliedUpTo(e.revision);
      const name = enrollmentNameFromKey(e.key);
      if (name !== undefined) {
        const into = snapshot ?? new Map(this.st.definitions);
        const problems = snapshot ? rejected : new Map(this.st.rejected);
        await this.take(into, problems, e, name);
        if (!snapshot) this.set({ ...this.st, definitions: into, rejected: problems, lastError: null });
      }
      if (e.isUpdate) finish();
    }
  }

  /** One entry into `into` (a removal deletes; a refused value keeps the definition held before). */
  private async take(into: Map<string, ClusterDefinition>, rejected: Map<string, string>, e: KvWatchEntry, name: string): Promise<void> {
    rejected.delete(e.key);
    if (e.operation !== 'PUT') {
      if (into.delete(name)) this.o.logger.info({ cluster: name }, 'cluster enrollment removed');
      return;
    }
    const held = into.get(name) ?? this.st.definitions.get(name);
    const v = await verifyEnrollment(e.key, e.value, this.o.coordinatorKeys, held?.updatedAt);
    if (v === undefined) return;
    if (!v.ok) {
      rejected.set(e.key, v.reason);
      // Keep what we held: dropping a cluster would also drop the deny rules that name it.
      const prev = this.st.definitions.get(name);
      if (prev) into.set(name, prev);
      this.o.logger.warn({ key: e.key, revision: e.revision, reason: v.reason }, 'ignoring a cluster enrollment that does not verify');
      return;
    }
    into.set(name, v.definition);
  }

  private set(s: EnrollmentWatchState): void {
    this.st = s;
    for (const l of this.listeners) l(s);
  }
}
