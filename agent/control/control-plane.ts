// The agent's side of the coordinator protocol over NATS: register (signed request/reply, verified
// reply), heartbeat, re-register when told or when our identity changes, deregister on clean exit.
// While the coordinator is unreachable it backs off and keeps what it has (fail-static).
import type { EffectiveSettings } from '../../protocol/agent-settings.ts';
import type { VerifyKeys } from '../../protocol/signing.ts';
import type { NatsConnection, Status } from '@nats-io/transport-node';
import type { Clock } from '../../lib/clock.ts';
import { CrosslinkError, errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import {
  Deregister,
  DeregisterReply,
  Heartbeat,
  HeartbeatReply,
  NodeRecord,
  RegisterReply,
  RegistrationRequest,
  describeZodError,
  type ErrorBody,
} from '../../protocol/messages.ts';
import { signEnvelope, verifyEnvelopeWithKey, type SigningKeyPair } from '../../protocol/signing.ts';
import { HeartbeatMacSession, heartbeatBody, type HeartbeatMac } from '../../protocol/heartbeat-mac.ts';
import { watchRequestMacKey, type WatchRequestMac } from '../../protocol/watch-request-mac.ts';
import { joinSign, type JoinCredential } from '../../protocol/join-credential.ts';
import { subjects } from '../../protocol/subjects.ts';
import type { NodeIdentity } from '../plan/model.ts';
import { backoffDelay, spreadWithin, type BackoffPolicy } from '../../lib/backoff.ts';
import { announcedHeartbeatDelayMs, heartbeatDelayMs, nextHeartbeatDelayMs, type HeartbeatOutcome } from './heartbeat-schedule.ts';
import { watchLeaderUp } from './leader-up-watch.ts';
import type { LeaderUp } from '../../protocol/leader-up.ts';
import type { HeartbeatAuth } from '../../protocol/status.ts';
import { nextConnectionStatus, onConnectionStatus } from '../../lib/nats-status.ts';
import { ConnectionLostError, requestUntilDisconnect } from '../../lib/nats-request.ts';
import { RateLimitedLog } from '../../lib/rate-limited-log.ts';

export class RegistrationError extends CrosslinkError {
  override name = 'RegistrationError';
}

export interface ControlPlaneOptions {
  readonly nc: NatsConnection;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The coordinator's public key, or its key set during a signing-key rotation. */
  readonly coordinatorKey: VerifyKeys;
  /** The WireGuard public key registered at start; registerWithKey() replaces it (key rotation). */
  readonly wireguardPublicKey: string;
  readonly identityKey: SigningKeyPair;
  /** The cluster's join credential; every registration is signed with it too. Null: the coordinator will refuse us. */
  readonly joinCredential?: JoinCredential | null;
  /** Current identity; read at every registration so changes are picked up. */
  readonly identity: () => NodeIdentity;
  readonly listenPort: number;
  /** The data-plane settings this agent applies, published in its record (showconf --nats-url). */
  readonly settings?: EffectiveSettings;
  readonly agentVersion: string;
  readonly subjectPrefix?: string;
  /** How long a register or heartbeat request waits for its reply (default 5000 ms); one lost with the connection ends at the disconnect. */
  readonly requestTimeoutMs?: number;
  /**
   * Retry delays while the coordinator is unreachable: min doubling up to max. A request lost with
   * the NATS connection is retried at a random moment within retryMinMs after the reconnect.
   */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** Delay after the coordinator rejected us (fixing that takes a human; don't spin). */
  readonly rejectedRetryMs?: number;
  /**
   * Cap of the retry backoff for a registration the coordinator ANSWERED `unavailable`/`internal`
   * (default 1000 ms; no answer and `rate-limited` keep retryMaxMs): right after a NATS server crash
   * the bucket takes no writes until the stream elects a leader (4–9 s); doubling to 5 s put a
   * joining node's registration up to 4 s after that (docs/benchmarks.md round 22).
   */
  readonly notReadyRetryMaxMs?: number;
  /** Random source in [0, 1) for the heartbeat and retry jitter (tests). */
  readonly random?: () => number;
}

/** Heartbeat interval before the coordinator has told us one. */
const DEFAULT_HEARTBEAT_INTERVAL_MS = 10_000;

export { heartbeatDelayMs, heartbeatRetryDelayMs } from './heartbeat-schedule.ts';

export interface ControlPlaneState {
  readonly connected: boolean;
  readonly registered: boolean;
  readonly record: NodeRecord | null;
  readonly lastHeartbeatAt: number | null;
  readonly lastError: string | null;
  readonly heartbeatIntervalMs: number | null;
  readonly nodeTtlMs: number | null;
  /** The coordinator's refusal once an operator revoked this node: it no longer registers or heartbeats. */
  readonly revoked: string | null;
  /** How heartbeats are authenticated now: MAC'd (with the coordinator key K was agreed with) or signed, and why. */
  readonly heartbeat: HeartbeatAuth;
}

/**
 * The answer to registerWithKey. `uncertain`: no clear answer came back (timeout, bad reply), so the
 * coordinator may have applied the new key; the caller re-asserts the current one.
 */
export type KeyRegistration =
  | { readonly ok: true; readonly record: NodeRecord }
  | {
      readonly ok: false;
      readonly kind: 'unavailable' | 'rejected';
      readonly error: string;
      readonly uncertain: boolean;
      readonly notReady?: boolean;
      /** The request was lost with the NATS connection (ConnectionLostError): retried once reconnected. */
      readonly connectionLost?: boolean;
    };

export class ControlPlane {
  private connected = true;
  private wireguardPublicKey: string;
  /** The key of a registerWithKey in flight: our own record showing it in the KV is not a foreign one. */
  private pendingPublicKey: string | null = null;
  /** Registrations and heartbeats never overlap, so an old-key request cannot land after a new-key one. */
  private exchangeQueue: Promise<unknown> = Promise.resolve();
  private record: NodeRecord | null = null;
  private lastHeartbeatAt: number | null = null;
  private lastError: string | null = null;
  private heartbeatIntervalMs: number | null = null;
  private nodeTtlMs: number | null = null;
  private needRegister = true;
  private revoked: string | null = null;
  /** The last sentAt signed: every request gets a larger one (the coordinator refuses replays). */
  private lastSentAt = 0;
  /** The coordinator epoch last learned (protocol/coordinator-epoch.ts), signed into every heartbeat. */
  private epoch: string | undefined;
  /** The epoch of the last heartbeat answered ok: a leader-up of that epoch has heard us already. */
  private heardEpoch: string | undefined;
  /** Heartbeat MACs (protocol/heartbeat-mac.ts): K agreed with the key that verified our last registration reply; signed after a refusal until the next. */
  private readonly heartbeatMac: HeartbeatMacSession;
  /** K_watch, derived once per heartbeat MAC key K. */
  private watchKey: { readonly from: HeartbeatMac; readonly key: Buffer } | undefined;
  private foreignGeneration = -1;
  private heartbeatDue = 0;
  private registerReason = 'start';
  private stopped = false;
  /** NATS reconnects seen: a request lost with the connection waits for the next one. */
  private reconnects = 0;
  private wakeup = new AbortController();
  private loopDone: Promise<void> | undefined;
  private stopStatus: (() => void) | undefined;
  private stopLeaderUp: (() => void) | undefined;
  private readonly recordListeners: ((record: NodeRecord) => void)[] = [];
  private readonly throttle: RateLimitedLog;
  private readonly subjects: ReturnType<typeof subjects>;

  constructor(private readonly o: ControlPlaneOptions) {
    this.subjects = subjects(o.subjectPrefix);
    this.throttle = new RateLimitedLog(o.logger, o.clock);
    this.wireguardPublicKey = o.wireguardPublicKey;
    this.heartbeatMac = new HeartbeatMacSession(o.identityKey);
  }

  /**
   * Registers now with `publicKey` instead of the current key and waits for the coordinator's
   * verified answer (key rotation). On success the new key is ours from then on (re-registrations
   * use it); on failure nothing changes here. Serialised with the loop's registrations and heartbeats.
   */
  registerWithKey(publicKey: string, reason: string): Promise<KeyRegistration> {
    return this.exclusive(async () => {
      if (this.stopped) return { ok: false, kind: 'unavailable', error: 'the control plane is stopping', uncertain: false };
      this.pendingPublicKey = publicKey;
      try {
        return await this.registerOnce(reason, publicKey);
      } finally {
        this.pendingPublicKey = null;
      }
    });
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.exchangeQueue.then(fn, fn);
    this.exchangeQueue = next.catch(() => undefined);
    return next;
  }

  start(): void {
    if (this.loopDone) return;
    this.stopStatus = onConnectionStatus(this.o.nc, (s) => this.onStatus(s));
    this.stopLeaderUp = watchLeaderUp(
      { nc: this.o.nc, subject: this.subjects.leaderUp, coordinatorKey: this.o.coordinatorKey, clock: this.o.clock, logger: this.o.logger },
      (a) => this.onLeaderUp(a),
    );
    this.loopDone = this.loop().catch((err: unknown) => {
      this.o.logger.error({ err }, 'control-plane loop crashed');
    });
  }

  /**
   * What our watch-broker requests are MAC'd with (protocol/watch-request-mac.ts): our name and
   * K_watch while heartbeats are MAC'd; undefined before the first registration or after a MAC
   * refusal (requests then go without a MAC, from the broker's shared budget).
   */
  watchRequestMac(): WatchRequestMac | undefined {
    const mac = this.heartbeatMac.current;
    const record = this.record;
    if (mac === undefined || record === null) return undefined;
    if (this.watchKey?.from !== mac) this.watchKey = { from: mac, key: watchRequestMacKey(mac.key) };
    return { node: record.name, key: this.watchKey.key };
  }

  /** Our newest verified record (from the register reply or the KV watch). */
  onRecord(listener: (record: NodeRecord) => void): void {
    this.recordListeners.push(listener);
  }

  state(): ControlPlaneState {
    return {
      connected: this.connected && !this.o.nc.isClosed(),
      registered: this.record !== null && this.revoked === null,
      record: this.record,
      lastHeartbeatAt: this.lastHeartbeatAt,
      lastError: this.lastError,
      heartbeatIntervalMs: this.heartbeatIntervalMs,
      nodeTtlMs: this.nodeTtlMs,
      revoked: this.revoked,
      heartbeat: this.heartbeatMac.auth(),
    };
  }

  /** An operator revoked us: stop registering and heartbeating (until restarted after `unrevoke`). */
  private markRevoked(error: ErrorBody): void {
    if (this.revoked === null) this.o.logger.error({ code: error.code, field: error.field, err: error.message }, 'this node was revoked by an operator: no more registrations or heartbeats; restart the agent after `crosslink-coordinator unrevoke`');
    this.revoked = error.message;
    this.lastError = `revoked: ${error.message}`;
  }

  /** Re-register soon (identity changed, our record vanished from the KV, …). */
  requestRegister(reason: string): void {
    if (!this.needRegister) this.o.logger.info({ reason }, 'will re-register');
    this.needRegister = true;
    this.registerReason = reason;
    this.wake();
  }

  /** A newer verified copy of our own record seen in the KV (e.g. the coordinator updated it). */
  observeOwnRecord(record: NodeRecord): void {
    if (record.publicKey !== this.wireguardPublicKey || record.identityKey !== this.o.identityKey.publicKey) {
      // Our rotation in flight was already written; its reply settles which key is ours.
      if (record.publicKey === this.pendingPublicKey && record.identityKey === this.o.identityKey.publicKey) return;
      // Someone else holds our name (or we were re-keyed): register to claim it back — once per
      // generation, or every mesh change would cut the rejection backoff short.
      if (record.generation > this.foreignGeneration) {
        this.foreignGeneration = record.generation;
        this.requestRegister('own record in the KV has other keys');
      }
      return;
    }
    if (this.record === null || record.generation > this.record.generation) {
      this.record = record;
      for (const l of this.recordListeners) l(record);
    }
  }

  /**
   * Sends a signed Deregister so peers drop us at once. Never throws. A request lost with the NATS
   * connection is sent again (a fresh sentAt) once it is back, within the same `timeoutMs`: a resent
   * deregistration of a node already removed is answered ok.
   */
  async deregister(timeoutMs = 2000): Promise<boolean> {
    const name = this.o.identity().name;
    const deadline = this.o.clock.now() + timeoutMs;
    try {
      for (;;) {
        try {
          return await this.deregisterOnce(name, Math.max(1, deadline - this.o.clock.now()));
        } catch (err) {
          if (!(err instanceof ConnectionLostError)) throw err;
          const left = deadline - this.o.clock.now();
          if (left <= 0 || !(await nextConnectionStatus(this.o.nc, 'reconnect', { clock: this.o.clock, timeoutMs: left }))) throw err;
          this.o.logger.info({ node: name }, 'deregister lost with the NATS connection; sending it again');
        }
      }
    } catch (err) {
      this.o.logger.warn({ node: name, err: errorMessage(err) }, 'deregister failed (the coordinator drops us when our record expires)');
    }
    return false;
  }

  /** One signed Deregister (a fresh sentAt); throws when it gets no reply. */
  private async deregisterOnce(name: string, timeoutMs: number): Promise<boolean> {
    const msg = Deregister.parse({ v: 1, name, identityKey: this.o.identityKey.publicKey, sentAt: this.nextSentAt() });
    const env = await signEnvelope(msg, this.o.identityKey.secretKey);
    const reply = await requestUntilDisconnect(this.o.nc, this.subjects.deregister, JSON.stringify(env), { timeout: timeoutMs });
    const parsed = DeregisterReply.safeParse(reply.json());
    if (parsed.success && parsed.data.ok) {
      this.o.logger.info({ node: name }, 'deregistered');
      return true;
    }
    this.o.logger.warn({ node: name, reply: parsed.success ? parsed.data : reply.string().slice(0, 200) }, 'deregister refused');
    return false;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopStatus?.();
    this.stopLeaderUp?.();
    this.wake();
    await this.loopDone;
  }

  private onStatus(s: Status): void {
    if (s.type === 'disconnect') {
      this.connected = false;
      this.o.logger.warn({ server: s.server }, 'NATS disconnected; keeping the data plane as it is');
    } else if (s.type === 'reconnect') {
      this.connected = true;
      this.reconnects++;
      this.o.logger.info({ server: s.server }, 'NATS reconnected');
      // Heartbeat soon: it tells us whether the coordinator still knows us (else: re-register). Not at
      // once: every agent of the fleet reconnected in this same instant.
      this.heartbeatDue = this.o.clock.now() + this.heartbeatDelay('after-reconnect');
      this.wake();
    }
  }

  /** A new leader serves: heartbeat within its spread (with its epoch) unless it has heard us already. */
  private onLeaderUp(a: LeaderUp): void {
    this.learnEpoch(a.epoch);
    if (a.epoch === this.heardEpoch || this.record === null) return;
    const due = this.o.clock.now() + announcedHeartbeatDelayMs(a.spreadMs, this.random());
    if (due < this.heartbeatDue) {
      this.heartbeatDue = due;
      this.wake();
    }
  }

  /** A sentAt above every one sent before, even within one millisecond. */
  private nextSentAt(): number {
    this.lastSentAt = Math.max(this.o.clock.now(), this.lastSentAt + 1);
    return this.lastSentAt;
  }

  private random(): number {
    return (this.o.random ?? Math.random)();
  }

  private heartbeatDelay(kind: 'interval' | 'after-reconnect'): number {
    return heartbeatDelayMs(kind, this.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS, this.random());
  }

  private wake(): void {
    this.wakeup.abort();
  }

  private async sleep(ms: number): Promise<void> {
    if (this.stopped || this.wakeup.signal.aborted) {
      this.wakeup = new AbortController();
      return;
    }
    await this.o.clock.sleep(Math.max(0, ms), this.wakeup.signal);
    if (this.wakeup.signal.aborted) this.wakeup = new AbortController();
  }

  private async loop(): Promise<void> {
    let failures = 0;
    let heartbeatFailures = 0;
    let resends = 0;
    while (!this.stopped) {
      if (this.revoked !== null) {
        // Nothing more to say to the coordinator; wait for stop().
        await this.sleep(3_600_000);
        continue;
      }
      if (this.needRegister) {
        const reason = this.registerReason;
        this.needRegister = false;
        const outcome = await this.exclusive(() => this.registerOnce(reason, this.wireguardPublicKey));
        if (this.stopped) return;
        if (outcome.ok) {
          failures = 0;
          this.heartbeatDue = this.o.clock.now() + this.heartbeatDelay('interval');
          continue;
        }
        this.needRegister = true;
        if (outcome.connectionLost === true) {
          // Not the coordinator failing: our request went down with the connection. Retried (a fresh
          // request, new sentAt) soon after the reconnect rather than a backoff later.
          await this.sleep(await this.retryAfterReconnect());
          continue;
        }
        failures++;
        // Jitter (±20 %) so a fleet restarting together doesn't hammer a recovering coordinator in lockstep.
        const rejected = this.o.rejectedRetryMs ?? 30_000;
        const policy: BackoffPolicy =
          outcome.kind === 'rejected'
            ? { initialMs: rejected, maxMs: rejected, jitter: 0.2 }
            : {
                initialMs: this.o.retryMinMs ?? 250,
                maxMs: outcome.notReady === true ? Math.min(this.o.notReadyRetryMaxMs ?? 1000, this.o.retryMaxMs ?? 5000) : (this.o.retryMaxMs ?? 5000),
                jitter: 0.2,
              };
        await this.sleep(backoffDelay(policy, outcome.kind === 'rejected' ? 1 : failures, () => this.random()));
        continue;
      }
      const wait = this.heartbeatDue - this.o.clock.now();
      if (wait > 0) {
        await this.sleep(wait);
        continue;
      }
      const outcome = await this.exclusive(() => this.heartbeatOnce());
      if (outcome === 'connection-lost') {
        const delay = await this.retryAfterReconnect();
        this.heartbeatDue = this.o.clock.now() + delay;
        continue;
      }
      heartbeatFailures = outcome === 'unanswered' ? heartbeatFailures + 1 : 0;
      resends = outcome === 'resend' ? resends + 1 : 0;
      this.heartbeatDue =
        this.o.clock.now() +
        nextHeartbeatDelayMs(outcome, { failures: heartbeatFailures, resends, intervalMs: this.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS, random: this.random() });
    }
  }

  private get requestTimeoutMs(): number {
    return this.o.requestTimeoutMs ?? 5000;
  }

  /**
   * After a request was lost with the NATS connection (seen in the same tick as the disconnect; the
   * reconnect takes a network round trip, so it is still to come): waits for the reconnect (at most
   * one request timeout, then retries anyway), and returns the delay of the retry: a random moment
   * within retryMinMs (lib/backoff.ts spreadWithin). Only exchanges in flight at the loss take this
   * path — a few of a fleet — so this is no storm; the rest heartbeat within half an interval.
   */
  private async retryAfterReconnect(): Promise<number> {
    const seen = this.reconnects;
    const giveUpAt = this.o.clock.now() + this.requestTimeoutMs;
    while (!this.stopped && this.reconnects === seen && this.o.clock.now() < giveUpAt) await this.sleep(giveUpAt - this.o.clock.now());
    return spreadWithin(this.o.retryMinMs ?? 250, this.random());
  }

  private buildRequest(publicKey: string): RegistrationRequest {
    const id = this.o.identity();
    const persistentKeepalive = id.persistentKeepalive;
    const candidate = {
      v: 1,
      name: id.name,
      cluster: id.cluster,
      location: id.location,
      ...(id.zone === undefined ? {} : { zone: id.zone }),
      publicKey,
      identityKey: this.o.identityKey.publicKey,
      endpoints: [...id.endpoints],
      privateAddresses: [...id.privateAddresses],
      podCidrs: [...id.podCidrs],
      listenPort: this.o.listenPort,
      topology: id.topology,
      gatewayEligible: id.gatewayEligible,
      ...(persistentKeepalive === undefined ? {} : { persistentKeepalive }),
      ...(this.o.settings === undefined ? {} : { settings: { ...this.o.settings } }),
      agentVersion: this.o.agentVersion,
      sentAt: this.nextSentAt(),
    };
    const parsed = RegistrationRequest.safeParse(candidate);
    if (!parsed.success) {
      throw new RegistrationError(`our own registration is invalid: ${describeZodError(parsed.error, candidate).message}`);
    }
    return parsed.data;
  }

  private async registerOnce(reason: string, publicKey: string): Promise<KeyRegistration> {
    let request: RegistrationRequest;
    try {
      request = this.buildRequest(publicKey);
    } catch (err) {
      this.lastError = errorMessage(err);
      this.o.logger.error({ err: this.lastError }, 'cannot register: fix the node identity (flags or Node annotations)');
      return { ok: false, kind: 'rejected', error: this.lastError, uncertain: false };
    }
    let raw: unknown;
    try {
      const signedByIdentity = await signEnvelope(request, this.o.identityKey.secretKey);
      const join = this.o.joinCredential;
      const env = join ? { ...signedByIdentity, joinSig: await joinSign(signedByIdentity.payload, join.secretKey) } : signedByIdentity;
      const reply = await requestUntilDisconnect(this.o.nc, this.subjects.register, JSON.stringify(env), { timeout: this.requestTimeoutMs });
      raw = reply.json();
    } catch (err) {
      if (err instanceof ConnectionLostError) {
        // Maybe applied by the coordinator already: the retry is a fresh request (new sentAt), which
        // the coordinator takes as an unchanged re-registration.
        this.lastError = errorMessage(err);
        this.o.logger.info({ err: this.lastError, reason }, 'registration lost with the NATS connection; retrying once reconnected');
        return { ok: false, kind: 'unavailable', error: this.lastError, uncertain: true, connectionLost: true };
      }
      this.lastError = `coordinator unavailable: ${errorMessage(err)}`;
      this.throttle.warn('register-unavailable', { err: errorMessage(err), reason }, 'registration: coordinator unavailable, retrying');
      return { ok: false, kind: 'unavailable', error: this.lastError, uncertain: true };
    }
    const reply = RegisterReply.safeParse(raw);
    if (!reply.success) {
      this.lastError = `malformed register reply: ${describeZodError(reply.error, raw).message}`;
      this.o.logger.error({ err: this.lastError }, 'registration: malformed reply from the coordinator');
      return { ok: false, kind: 'rejected', error: this.lastError, uncertain: true };
    }
    this.learnEpoch(reply.data.epoch);
    if (!reply.data.ok) return this.rejected(reply.data.error);

    let record: NodeRecord;
    let signedBy: string;
    try {
      ({ value: record, key: signedBy } = await verifyEnvelopeWithKey(reply.data.record, this.o.coordinatorKey, NodeRecord));
    } catch (err) {
      this.lastError = `register reply does not verify with the coordinator key: ${errorMessage(err)}`;
      this.o.logger.error({ err: this.lastError }, 'registration: reply not signed by the configured coordinator key (wrong --coordinator-key?)');
      return { ok: false, kind: 'rejected', error: this.lastError, uncertain: true };
    }
    if (record.name !== request.name || record.publicKey !== request.publicKey || record.identityKey !== request.identityKey) {
      this.lastError = `register reply is for ${record.name} with other keys`;
      this.o.logger.error({ err: this.lastError }, 'registration: the coordinator answered with a record that is not ours');
      return { ok: false, kind: 'rejected', error: this.lastError, uncertain: true };
    }
    this.agreeHeartbeatMac(signedBy);
    const first = this.record === null;
    const rekeyed = publicKey !== this.wireguardPublicKey;
    this.wireguardPublicKey = publicKey;
    this.heartbeatIntervalMs = reply.data.heartbeatIntervalMs;
    this.nodeTtlMs = reply.data.nodeTtlMs;
    this.lastError = null;
    this.lastHeartbeatAt = this.o.clock.now();
    this.throttle.reset('register-unavailable');
    // Keep the newer of what we hold (the KV may already show a later generation).
    if (this.record === null || record.generation >= this.record.generation) this.record = record;
    this.o.logger.info(
      { reason, overlayIp: record.overlayIp, generation: record.generation, heartbeatIntervalMs: this.heartbeatIntervalMs, ...(rekeyed ? { publicKey } : {}) },
      first ? 'registered' : rekeyed ? 're-registered with a new WireGuard key' : 're-registered',
    );
    for (const l of this.recordListeners) l(this.record);
    return { ok: true, record };
  }

  private rejected(error: ErrorBody): KeyRegistration {
    if (error.revoked === true) {
      this.markRevoked(error);
      return { ok: false, kind: 'rejected', error: `revoked: ${error.message}`, uncertain: false };
    }
    this.lastError = `${error.code}${error.field ? ` (${error.field})` : ''}: ${error.message}`;
    if (error.code === 'unavailable' || error.code === 'internal') {
      this.throttle.warn('register-unavailable', { code: error.code, err: error.message }, 'registration: coordinator not ready, retrying');
      // 'internal' may come after a partial write.
      return { ok: false, kind: 'unavailable', error: this.lastError, uncertain: error.code === 'internal', notReady: true };
    }
    if (error.code === 'rate-limited') {
      // Our cluster is registering faster than the coordinator admits: back off (with jitter) and retry.
      this.throttle.warn('register-rate-limited', { err: error.message }, 'registration rate-limited by the coordinator; backing off');
      return { ok: false, kind: 'unavailable', error: this.lastError, uncertain: false };
    }
    // A validation/conflict rejection needs a human; say exactly what, and retry slowly.
    this.throttle.warn(
      `register-rejected:${error.code}:${error.field ?? ''}`,
      { code: error.code, field: error.field, err: error.message },
      'registration rejected by the coordinator',
    );
    return { ok: false, kind: 'rejected', error: this.lastError, uncertain: false };
  }

  /**
   * MAC heartbeats from now on, with K agreed with `coordinatorKey` (the key that signed our record):
   * agreed once per coordinator key (our identity key is fixed), and a registration ends a fallback.
   */
  private agreeHeartbeatMac(coordinatorKey: string): void {
    try {
      this.heartbeatMac.registered(coordinatorKey);
    } catch (err) {
      this.o.logger.warn({ err: errorMessage(err), coordinatorKey }, 'no heartbeat MAC key can be agreed with the coordinator key; heartbeats are signed');
    }
  }

  /** The epoch of the coordinator that answered (its replies are unsigned: a forged one costs a `stale-epoch` round trip, and an epoch cannot be guessed ahead). */
  private learnEpoch(epoch: string | undefined): void {
    if (epoch === undefined || epoch === this.epoch) return;
    if (this.epoch !== undefined) this.o.logger.info({ epoch, was: this.epoch }, 'a new coordinator leader took over (new epoch)');
    this.epoch = epoch;
  }

  /** One heartbeat, and what it came to (heartbeat-schedule.ts decides when the next one is due; one lost with the connection goes again after the reconnect). */
  private async heartbeatOnce(): Promise<HeartbeatOutcome | 'connection-lost'> {
    const record = this.record;
    if (record === null) {
      this.needRegister = true;
      return 'answered';
    }
    let raw: unknown;
    const mac = this.heartbeatMac.current;
    try {
      const hb = Heartbeat.parse({
        v: 1,
        name: record.name,
        identityKey: this.o.identityKey.publicKey,
        generation: record.generation,
        sentAt: this.nextSentAt(),
        ...(this.epoch === undefined ? {} : { epoch: this.epoch }),
      });
      const reply = await requestUntilDisconnect(this.o.nc, this.subjects.heartbeat, heartbeatBody(hb, this.o.identityKey, mac), { timeout: this.requestTimeoutMs });
      raw = reply.json();
    } catch (err) {
      if (err instanceof ConnectionLostError) {
        this.lastError = `heartbeat failed: ${errorMessage(err)}`;
        this.o.logger.debug({ err: this.lastError }, 'heartbeat lost with the NATS connection; sending it again once reconnected');
        return 'connection-lost';
      }
      this.lastError = `heartbeat failed: ${errorMessage(err)}`;
      this.throttle.warn('heartbeat-failed', { err: errorMessage(err) }, 'heartbeat failed; keeping the data plane as it is');
      return 'unanswered';
    }
    const reply = HeartbeatReply.safeParse(raw);
    if (!reply.success) {
      this.lastError = `malformed heartbeat reply: ${describeZodError(reply.error, raw).message}`;
      this.throttle.warn('heartbeat-malformed', { err: this.lastError }, 'heartbeat: malformed reply');
      return 'answered';
    }
    this.learnEpoch(reply.data.epoch);
    if (reply.data.ok) {
      this.heardEpoch = this.epoch;
      this.lastHeartbeatAt = this.o.clock.now();
      this.lastError = null;
      this.throttle.reset('heartbeat-failed');
      return 'answered';
    }
    const { code, message } = reply.data.error;
    if (reply.data.error.revoked === true) {
      this.markRevoked(reply.data.error);
      return 'answered';
    }
    if (this.heartbeatMac.refused(mac, reply.data.error)) {
      // A coordinator older than MAC heartbeats (`invalid`), or one whose key is not the one our MAC
      // was made for (`unauthorized`): signed heartbeats until the next registration, the first at once.
      this.throttle.warn('heartbeat-mac-refused', { code, field: reply.data.error.field, err: message }, 'heartbeat MAC refused by the coordinator; sending signed heartbeats until the next registration');
      return 'resend';
    }
    if (code === 'unknown-node') {
      // Expired or removed (e.g. during an outage): register again with the same keys.
      this.requestRegister(`heartbeat answered ${code}: ${message}`);
      return 'answered';
    }
    if (code === 'unavailable') {
      // A coordinator taking over (still loading the bucket): retried soon, like no answer at all.
      this.lastError = `heartbeat: coordinator not ready: ${message}`;
      return 'unanswered';
    }
    if (code === 'stale-epoch' || code === 'epoch-required') {
      // A new leader took over since we learned our epoch, or we had none yet (registered with a
      // coordinator older than the epoch): the reply carried the current one; sign it now.
      this.o.logger.debug({ epoch: this.epoch }, 'heartbeat: new coordinator epoch; sending again');
      return 'resend';
    }
    // 'stale' is clock skew and 'unauthorized' another identity holding our name: registering
    // again would be refused the same way, so keep trying and say what a human must fix.
    this.lastError = `heartbeat refused: ${code}: ${message}`;
    this.throttle.warn(
      `heartbeat-refused:${code}`,
      { code, err: message },
      code === 'stale' ? 'heartbeat refused: this node\'s clock is off (fix NTP)' : 'heartbeat refused',
    );
    return 'answered';
  }
}
