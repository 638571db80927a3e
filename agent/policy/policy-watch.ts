// Follows the signed policy record (`policy.current`) with a KV watch, so a `policy set` reaches the
// agent in milliseconds. Only a record signed by a trusted coordinator key is taken; anything else
// is ignored and reported (kept as `rejected`), and a record older than one we hold (a replay) too.
// Until the first read completes the policy is unknown: the agent then leaves the live table alone.
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { directWatchSource, type KeyWatch, type KeyWatchSource } from '../control/key-watch.ts';
import type { Clock } from '../../lib/clock.ts';
import { ClockTimer } from '../../lib/clock-timer.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { PolicyRecord } from '../../protocol/policy/document.ts';
import { policyKeys, verifyPolicyRecord } from '../../protocol/policy/record.ts';
import { superviseWithBackoff, type Random } from '../../lib/backoff.ts';
import { retryAfterOf } from '../control/brokered-watch.ts';
import { watchRetry, type WatchRetryOptions } from '../control/rewatch-jitter.ts';
import { onConnectionStatus } from '../../lib/nats-status.ts';

/** retryMinMs, retryMaxMs: the backoff between watches, spread ±50 % as every KV watch's (rewatch-jitter.ts). */
export interface PolicyWatchOptions extends WatchRetryOptions {
  readonly nc: NatsConnection;
  readonly bucket: string;
  /** Coordinator public keys a policy may be signed by. */
  readonly coordinatorKeys: readonly string[];
  readonly logger: Logger;
  readonly clock: Clock;
  /** Re-read the key this often in case a watch stalled silently (default 30 s). */
  readonly pollIntervalMs?: number;
  /** Random source in [0, 1) of the retries' spread (tests; default Math.random). */
  readonly random?: Random;
  /** Where the watch comes from (the agent: the coordinator's watch broker); default the direct nats.js watch. The get stays a direct get. */
  readonly watches?: KeyWatchSource;
}

export interface PolicyWatchState {
  /** False until the key has been read once. */
  readonly known: boolean;
  /** The verified policy in the KV; null: no policy is set. */
  readonly record: PolicyRecord | null;
  /** Why the last value seen was refused (unverifiable, malformed, older); null if it was taken. */
  readonly rejected: string | null;
  readonly lastError: string | null;
}

export class PolicyWatch {
  private st: PolicyWatchState = { known: false, record: null, rejected: null, lastError: null };
  private lastRevision = 0;
  private readonly listeners: ((s: PolicyWatchState) => void)[] = [];
  private stopped = false;
  private kv: KV | undefined;
  private watcher: KeyWatch | undefined;
  private source: KeyWatchSource | undefined;
  private loop: Promise<void> | undefined;
  /** The periodic re-read, on the injected clock (ended by stop()). */
  private readonly poll: ClockTimer;
  private stopStatus: (() => void) | undefined;
  private readonly wake = new AbortController();

  constructor(private readonly o: PolicyWatchOptions) {
    this.poll = new ClockTimer({ clock: o.clock, fire: () => this.readOnce(), onError: (err) => o.logger.error({ err: errorMessage(err) }, 'policy re-read crashed'), signal: this.wake.signal });
  }

  start(): void {
    if (this.loop) return;
    this.stopStatus = onConnectionStatus(this.o.nc, (s) => {
      if (s.type === 'reconnect') {
        this.watcher?.stop();
        void this.readOnce();
      }
    });
    this.poll.every(this.o.pollIntervalMs ?? 30_000);
    this.loop = this.supervise().catch((err: unknown) => this.o.logger.error({ err: errorMessage(err) }, 'policy watch crashed'));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopStatus?.();
    this.poll.cancel();
    this.watcher?.stop();
    this.wake.abort();
    await this.loop;
  }

  onChange(listener: (s: PolicyWatchState) => void): void {
    this.listeners.push(listener);
  }

  state(): PolicyWatchState {
    return this.st;
  }

  private async bucket(): Promise<KV> {
    // Direct gets name the key in the subject, so NATS permissions can let agents read this key and
    // not others (a message get by request body could read any key): docs/security.md.
    this.kv ??= await new Kvm(this.o.nc).open(this.o.bucket, { allow_direct: true });
    return this.kv;
  }

  private async supervise(): Promise<void> {
    await superviseWithBackoff(
      async () => {
        this.source ??= this.o.watches ?? directWatchSource({ nc: this.o.nc, bucket: this.o.bucket });
        const w = await this.source.watch({ key: policyKeys.current });
        if (this.stopped) w.stop();
        this.watcher = w;
        // The watch delivers the current value (if any) first; a get also tells us "no policy".
        await this.readOnce();
        for await (const e of w) {
          await this.take(e.revision, e.operation === 'PUT' ? e.string() : null);
        }
      },
      {
        // Spread (rewatch-jitter.ts): a fleet whose watches ended together (the same NATS server lost) does not re-create them together.
        ...watchRetry(this.o),
        clock: this.o.clock,
        signal: this.wake.signal,
        // A broker that refused as rate-limited is not asked again before its retryAfterMs (capped).
        minDelayOf: retryAfterOf,
        onFailure: (err) => {
          this.set({ ...this.st, lastError: errorMessage(err) });
          this.o.logger.warn({ err: errorMessage(err) }, 'cannot watch the policy key; keeping the policy we have, retrying');
        },
      },
    );
  }

  /** Reads the key directly (start, reconnect, periodic check). */
  private async readOnce(): Promise<void> {
    if (this.stopped) return;
    try {
      const kv = await this.bucket();
      const e = await kv.get(policyKeys.current);
      if (e === null) {
        if (!this.st.known) this.set({ ...this.st, known: true, lastError: null });
        return;
      }
      await this.take(e.revision, e.operation === 'PUT' ? e.string() : null);
      if (!this.st.known) this.set({ ...this.st, known: true });
    } catch (err) {
      this.set({ ...this.st, lastError: errorMessage(err) });
      this.o.logger.debug({ err: errorMessage(err) }, 'reading the policy key failed');
    }
  }

  /** One value of the key, by revision (watch and get may deliver the same one twice). */
  private async take(revision: number, text: string | null): Promise<void> {
    if (revision < this.lastRevision) return;
    if (revision === this.lastRevision && this.st.known) return;
    this.lastRevision = revision;
    if (text === null) {
      this.o.logger.info('the policy was removed: no policy is in force');
      this.set({ known: true, record: null, rejected: null, lastError: null });
      return;
    }
    const v = await verifyPolicyRecord(text, this.o.coordinatorKeys);
    if (!v.ok) {
      this.o.logger.warn({ key: policyKeys.current, revision, reason: v.reason }, 'ignoring a policy record that does not verify; keeping the policy we have');
      this.set({ ...this.st, known: true, rejected: v.reason, lastError: null });
      return;
    }
    const held = this.st.record;
    if (held !== null && v.record.version < held.version) {
      const reason = `policy version ${v.record.version} is older than version ${held.version} already in force (replayed record?)`;
      this.o.logger.warn({ reason }, 'ignoring an older policy record');
      this.set({ ...this.st, known: true, rejected: reason, lastError: null });
      return;
    }
    if (held?.version !== v.record.version) this.o.logger.info({ version: v.record.version, setBy: v.record.setBy, rules: v.record.policy.rules.length }, 'policy received');
    this.set({ known: true, record: v.record, rejected: null, lastError: null });
  }

  private set(s: PolicyWatchState): void {
    this.st = s;
    for (const l of this.listeners) l(s);
  }
}
