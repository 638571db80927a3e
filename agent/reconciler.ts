// Turns the verified mesh view into data plane changes, one reconcile at a time. Requests that
// arrive while a reconcile runs are coalesced into one more run. A failed reconcile is recorded and
// retried on the next request or resync; it never takes the agent down.
import type { Clock } from '../lib/clock.ts';
import { PartialFailureError, errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { DataplaneConfig, DesiredInterface, DesiredState, MeshView, RelayAssignment } from './plan/model.ts';
import { NO_HOST_FACTS, type HostFacts } from './plan/route-guard.ts';
import type { DesiredStateOptions } from './plan/desired-state.ts';
import { relayHintsFrom, type RelayStats } from './dataplane/relay-forwarder.ts';
import type { LivePeer } from './dataplane/wg-dump.ts';

export interface ApplyResult {
  readonly changes: number;
  readonly commands: readonly unknown[];
  readonly failures: readonly { readonly op: string; readonly error: Error }[];
}

/** What the agent needs from the data plane (agent/dataplane/dataplane.ts implements it; tests fake it). */
export interface AgentDataplane {
  readonly backend: 'kernel' | 'userspace';
  /** Creates/configures the interface (key, port, MTU, addresses, up). Idempotent. */
  ensureInterface(privateKey: string, iface: DesiredInterface): Promise<void>;
  /** Diffs `desired` against live state and applies the difference; throws PartialFailureError after attempting all. */
  apply(desired: DesiredState): Promise<ApplyResult>;
  livePeers(): Promise<readonly LivePeer[]>;
  teardown(): Promise<void>;
  close(): Promise<void>;
  /** Fires when the interface came back empty (wireguard-go restarted): everything must be re-applied. */
  onRestart?(listener: (generation: number) => void): () => void;
}

/** The UDP relay for NATed pairs (agent/dataplane/relay-forwarder.ts implements it). */
export interface AgentRelay {
  /** Opens/closes relay ports; `hints` maps peer public keys to the IP our WireGuard sees for them. Rejects if a port could not bind (the rest still apply). */
  update(assignments: readonly RelayAssignment[], hints?: ReadonlyMap<string, string>): Promise<void>;
  stats(): readonly RelayStats[];
  close(): Promise<void>;
}

export interface ReconcileRecord {
  readonly at: number;
  readonly ok: boolean;
  readonly changes: number;
  readonly durationMs: number;
  readonly error: string | null;
  /** false: only the interface was ensured (not registered or no KV snapshot yet). */
  readonly applied: boolean;
  /** ensureInterface succeeded (key, port, MTU, addresses), whatever happened to peers and routes. */
  readonly interfaceEnsured: boolean;
  readonly reasons: readonly string[];
}

export interface ReconcilerOptions {
  readonly dataplane: AgentDataplane;
  readonly relay?: AgentRelay | null;
  readonly dataplaneConfig: DataplaneConfig;
  /** WireGuard private key for ensureInterface, read at every reconcile (a function: key rotation changes it). Never logged. */
  readonly privateKey: string | (() => string);
  /** The view to realise, or undefined while there is none we may act on (not registered / no snapshot). */
  readonly view: () => MeshView | undefined;
  /** The interface to ensure while there is no view (no overlay IP yet, or the last one we held). */
  readonly interfaceWithoutView: () => DesiredInterface;
  /** Called after every reconcile (e.g. to publish readiness). */
  readonly onReconciled?: (record: ReconcileRecord) => void;
  readonly computeDesiredState: (view: MeshView, config: DataplaneConfig, host: HostFacts, options: DesiredStateOptions) => DesiredState;
  /** Reads the host snapshot the route guard protects (addresses, routes, NATS servers), once per reconcile. */
  readonly hostFacts?: () => Promise<HostFacts>;
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
  private stopped = false;
  private last: ReconcileRecord | null = null;
  private lastDesired: DesiredState | null = null;
  private everApplied = false;

  constructor(private readonly o: ReconcilerOptions) {}

  /** Asks for a reconcile; coalesced with any already pending. */
  request(reason: string): void {
    if (this.stopped) return;
    this.reasons.add(reason);
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.drain();
  }

  /** Requests a reconcile and resolves when one that started after this call has finished. */
  reconcileNow(reason: string): Promise<ReconcileRecord | null> {
    return new Promise((resolve) => {
      this.waiters.push(() => resolve(this.last));
      this.request(reason);
      if (this.stopped) resolve(this.last);
    });
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
        await this.reconcileOnce(reasons);
        for (const w of waiters) w();
      } while (this.again && !this.stopped);
    } finally {
      this.running = undefined;
    }
  }

  private async reconcileOnce(reasons: string[]): Promise<void> {
    const { dataplane, dataplaneConfig, clock, logger } = this.o;
    const started = clock.now();
    let changes = 0;
    let applied = false;
    let interfaceEnsured = false;
    let error: string | null = null;
    try {
      const view = this.o.view();
      if (view === undefined) {
        // Fail-static: no registration or no complete KV snapshot yet, so we know too little to
        // remove anything. Make sure the interface exists and leave peers and routes alone.
        await dataplane.ensureInterface(this.privateKey(), this.o.interfaceWithoutView());
        interfaceEnsured = true;
      } else {
        // The guard's input is read before planning: a host we cannot read is not routed into.
        const host = this.o.hostFacts ? await this.o.hostFacts() : NO_HOST_FACTS;
        const desired = this.o.computeDesiredState(view, dataplaneConfig, host, { unguarded: this.o.unguarded === true });
        this.lastDesired = desired;
        await dataplane.ensureInterface(this.privateKey(), desired.interface);
        interfaceEnsured = true;
        try {
          const result = await dataplane.apply(desired);
          changes = result.changes;
        } catch (err) {
          if (!(err instanceof PartialFailureError)) throw err;
          // Everything else was applied; the failed operations are retried next round.
          changes = -1;
          error = err.message;
        }
        try {
          await this.updateRelay(desired);
        } catch (err) {
          error = error === null ? `relay: ${errorMessage(err)}` : `${error}; relay: ${errorMessage(err)}`;
        }
        applied = error === null;
      }
    } catch (err) {
      error = errorMessage(err);
    }
    const record: ReconcileRecord = {
      at: clock.now(),
      ok: error === null,
      changes: Math.max(0, changes),
      durationMs: clock.now() - started,
      error,
      applied,
      interfaceEnsured,
      reasons,
    };
    this.last = record;
    if (applied) this.everApplied = true;
    if (error !== null) logger.warn({ reasons, err: error, durationMs: record.durationMs }, 'reconcile failed; will retry');
    else if (changes > 0) logger.info({ reasons, changes, durationMs: record.durationMs }, 'reconciled');
    else logger.debug({ reasons, durationMs: record.durationMs, applied }, 'reconciled (no changes)');
    try {
      this.o.onReconciled?.(record);
    } catch (err) {
      logger.error({ err }, 'onReconciled listener threw');
    }
  }

  private privateKey(): string {
    const k = this.o.privateKey;
    return typeof k === 'string' ? k : k();
  }

  private async updateRelay(desired: DesiredState): Promise<void> {
    const relay = this.o.relay;
    if (!relay) return;
    let hints: ReadonlyMap<string, string> | undefined;
    if (desired.relays.length > 0) {
      // Relayed peers are NATed: the addresses our WireGuard learned from their handshakes tell the
      // relay which side of a pair a packet came from.
      try {
        hints = relayHintsFrom(await this.o.dataplane.livePeers());
      } catch (err) {
        this.o.logger.debug({ err: errorMessage(err) }, 'cannot read live peers for relay hints');
      }
    }
    await relay.update(desired.relays, hints);
  }
}
