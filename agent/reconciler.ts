// Turns the latest inputs (the KV watch's snapshot, our own record, the key in force) into ONE
// data plane apply, one reconcile at a time. Inputs are pushed in as immutable data (update());
// requests that arrive while a reconcile runs are coalesced into one more run, which uses the
// newest inputs. A failed reconcile is recorded and retried on the next request or resync; it never
// takes the agent down.
//
// Full and change-driven runs: a run asked for by request()/reconcileNow() (start, resync, restarts,
// reconnects, key rotation) reads the host and the kernel afresh; a run caused only by update()
// (a new snapshot, our own record) after a successful run is change-driven: it reuses the host facts
// of the last full run and lets the data plane diff against the state it last applied
// (DataplaneTarget.readLive false), so a join costs the same whatever the mesh size. Any failure
// makes the next run full.
//
//   update({mesh | self | privateKey}) ─▶ planTarget(inputs) ─▶ Dataplane.apply(target) ─▶ ReconcileRecord ─▶ onResult listeners
import type { Clock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { DataplaneApplyError, type Dataplane } from './dataplane/api.ts';
import type { DataplaneConfig, DesiredState } from './plan/model.ts';
import type { HostRead } from './dataplane/host-facts.ts';
import { NO_HOST_FACTS, type HostFacts } from './plan/route-guard.ts';
import { planTarget, viewOf, type ComputeDesiredState, type ReconcileInputs } from './plan/target.ts';

export type { ReconcileInputs } from './plan/target.ts';

export interface ReconcileRecord {
  readonly at: number;
  readonly ok: boolean;
  readonly changes: number;
  readonly durationMs: number;
  readonly error: string | null;
  /** false: only the interface was ensured (not registered or no KV snapshot yet), or something failed. */
  readonly applied: boolean;
  /** The interface holds the target's key, port, MTU and addresses, whatever happened to peers and routes. */
  readonly interfaceEnsured: boolean;
  readonly reasons: readonly string[];
  /** KV revision of the snapshot this run worked from (0: none yet). */
  readonly revision: number;
  /** The mutating commands the apply attempted (ApplyReport.commands; repair events classify them). */
  readonly commands: readonly (readonly string[])[];
}

export interface ReconcilerOptions {
  readonly dataplane: Pick<Dataplane, 'apply'>;
  readonly dataplaneConfig: DataplaneConfig;
  /** The inputs until the first update(). */
  readonly inputs: ReconcileInputs;
  readonly computeDesiredState: ComputeDesiredState;
  /**
   * Reads the host snapshot the route guard protects (addresses, routes, NATS servers) and the route
   * tables as read: once per full reconcile that has a view. The apply of the same run diffs
   * against those routes instead of reading them again (DataplaneTarget.liveRoutes).
   */
  readonly readHost?: () => Promise<HostRead>;
  /** Tests only: plan without the route guard (negative control). */
  readonly unguarded?: boolean;
  readonly clock: Clock;
  readonly logger: Logger;
}

export class Reconciler {
  private running: Promise<void> | undefined;
  private again = false;
  private reasons = new Set<string>();
  private waiters: (() => void)[] = [];
  private readonly listeners: ((record: ReconcileRecord) => void)[] = [];
  private stopped = false;
  private inputs: ReconcileInputs;
  private last: ReconcileRecord | null = null;
  private lastDesired: DesiredState | null = null;
  private everApplied = false;
  /** The next run must read host and kernel afresh (set by request(), by a failed run; cleared by a run). */
  private fullRequested = true;
  /** Host facts of the last full run that had a view, or of an interface-only full run (reused by change-driven runs). */
  private hostFacts: HostFacts | undefined;
  /**
   * The host read of the last full run without a view (the start): its route tables go to the
   * first change-driven run with a view, whose apply then reads neither host nor tables again.
   * Dropped by any run with a view (after it, the data plane's own model of what it applied rules).
   */
  private startRead: HostRead | undefined;

  constructor(private readonly o: ReconcilerOptions) {
    this.inputs = o.inputs;
  }

  /** New inputs (a fresh snapshot, our record, a rotated key): replaces those fields and asks for a reconcile. */
  update(changes: Partial<ReconcileInputs>, reason: string): void {
    this.inputs = { ...this.inputs, ...changes };
    this.schedule(reason);
  }

  /** The inputs the next reconcile uses. */
  current(): ReconcileInputs {
    return this.inputs;
  }

  /**
   * Asks for a reconcile with the current inputs (resync, interface restarted); coalesced with any
   * already pending. A run starts a microtask later, so inputs pushed in the same turn (our record
   * and the snapshot that carried it) make one run.
   */
  request(reason: string): void {
    this.fullRequested = true;
    this.schedule(reason);
  }

  private schedule(reason: string): void {
    if (this.stopped) return;
    this.reasons.add(reason);
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = Promise.resolve().then(() => this.drain());
  }

  /** Requests a reconcile (with `changes` to the inputs, if given) and resolves when one that started after this call has finished. */
  reconcileNow(reason: string, changes: Partial<ReconcileInputs> = {}): Promise<ReconcileRecord | null> {
    return new Promise((resolve) => {
      this.waiters.push(() => resolve(this.last));
      this.fullRequested = true;
      this.update(changes, reason);
      if (this.stopped) resolve(this.last);
    });
  }

  /** Called with the record of every finished reconcile (readiness publication). Returns unsubscribe. */
  onResult(listener: (record: ReconcileRecord) => void): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  lastReconcile(): ReconcileRecord | null {
    return this.last;
  }

  /** The desired state of the latest apply attempt (null before the first). */
  desired(): DesiredState | null {
    return this.lastDesired;
  }

  /** At least one full apply succeeded (readiness). */
  get applied(): boolean {
    return this.everApplied;
  }

  /** Stops accepting requests and waits for the one in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
    for (const w of this.waiters.splice(0)) w();
  }

  private async drain(): Promise<void> {
    try {
      do {
        this.again = false;
        const reasons = [...this.reasons];
        this.reasons.clear();
        const waiters = this.waiters.splice(0);
        await this.reconcileOnce(reasons, this.inputs);
        for (const w of waiters) w();
      } while (this.again && !this.stopped);
    } finally {
      this.running = undefined;
    }
  }

  private async readHostAhead(read: () => Promise<HostRead>): Promise<void> {
    try {
      const r = await read();
      this.hostFacts = r.facts;
      this.startRead = r;
    } catch (err) {
      // The first run with a view reads it then.
      this.o.logger.debug({ err: errorMessage(err) }, 'reading the host ahead of the first view failed');
    }
  }

  private async reconcileOnce(reasons: string[], inputs: ReconcileInputs): Promise<void> {
    const { dataplane, dataplaneConfig, clock, logger } = this.o;
    const started = clock.now();
    let changes = 0;
    let commands: readonly (readonly string[])[] = [];
    let interfaceEnsured = false;
    let error: string | null = null;
    let full = false;
    let planMs = 0;
    const readLive = this.fullRequested || this.last?.ok !== true;
    this.fullRequested = false;
    const hasView = viewOf(inputs) !== undefined;
    const carried = readLive || !hasView ? undefined : this.startRead;
    if (hasView) this.startRead = undefined;
    try {
      const read = this.o.readHost ?? (() => Promise.resolve<HostRead>({ facts: NO_HOST_FACTS }));
      const cached = readLive ? undefined : this.hostFacts;
      const fresh: { read?: HostRead } = {};
      const readHost =
        cached !== undefined
          ? () => Promise.resolve(cached)
          : async () => {
              fresh.read = await read();
              return (this.hostFacts = fresh.read.facts);
            };
      const planStarted = clock.now();
      const planned = await planTarget(inputs, dataplaneConfig, this.o.computeDesiredState, readHost, { unguarded: this.o.unguarded === true });
      planMs = clock.now() - planStarted;
      // Routes read by this run's host read go to its apply (read once per run, not twice); the
      // first view after the start gets the start's read.
      const liveRoutes = fresh.read?.routes ?? carried?.routes;
      const withRoutes = liveRoutes !== undefined ? { ...planned, liveRoutes } : planned;
      const target = readLive ? withRoutes : { ...withRoutes, readLive: false };
      full = target.desired !== null;
      if (target.desired !== null) this.lastDesired = target.desired;
      // A full run without a view (the start, before registration and the KV snapshot) reads the
      // host beside its apply, so the first view's run does not wait for that read.
      const ahead = !hasView && readLive && this.o.readHost ? this.readHostAhead(this.o.readHost) : undefined;
      const report = await dataplane.apply(target).finally(() => ahead);
      changes = report.changes;
      commands = report.commands;
      interfaceEnsured = report.interfaceEnsured;
    } catch (err) {
      this.fullRequested = true;
      // A DataplaneApplyError: everything else was applied; the failed operations are retried next round.
      if (err instanceof DataplaneApplyError) {
        changes = err.report.changes;
        commands = err.report.commands;
        interfaceEnsured = err.report.interfaceEnsured;
      }
      error = errorMessage(err);
    }
    const applied = full && error === null;
    const record: ReconcileRecord = {
      at: clock.now(),
      ok: error === null,
      changes,
      durationMs: clock.now() - started,
      error,
      applied,
      interfaceEnsured,
      reasons,
      revision: inputs.mesh?.revision ?? 0,
      commands,
    };
    this.last = record;
    if (applied) this.everApplied = true;
    if (error !== null) logger.warn({ reasons, err: error, durationMs: record.durationMs }, 'reconcile failed; will retry');
    // planMs: the plan (with the host read on a full run); the rest of durationMs is the apply.
    else if (changes > 0) logger.info({ reasons, changes, durationMs: record.durationMs, planMs, readLive }, 'reconciled');
    else logger.debug({ reasons, durationMs: record.durationMs, planMs, readLive, applied }, 'reconciled (no changes)');
    for (const l of [...this.listeners]) {
      try {
        l(record);
      } catch (err) {
        logger.error({ err }, 'reconcile result listener threw');
      }
    }
  }
}
