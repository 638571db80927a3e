// The coordinator: opens the bucket, campaigns for the leader lease, and while leader runs a
// LeaderTerm (registration, expiry, clusters). Every replica listens to heartbeats so liveness is
// tracked everywhere; only the leader answers them.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Clock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { Heartbeat, type HeartbeatReply } from '../protocol/messages.ts';
import type { SigningKeyPair } from '../protocol/signing.ts';
import { subjects } from '../protocol/subjects.ts';
import { checkSentAt, openHeartbeat } from '../protocol/validate-registration.ts';
import { HeartbeatMacKeys, type HeartbeatMacKeysOptions } from '../protocol/heartbeat-mac.ts';
import { REFUSAL_LOG_INTERVAL_MS, heartbeatIntervalMs, type CoordinatorConfig } from './config.ts';
import { RateLimitedLog } from '../lib/rate-limited-log.ts';
import { LeaderLease } from './lease.ts';
import type { CoordinatorMetricsHooks, CoordinatorSnapshot } from './metrics.ts';
import { leaseSeal } from './lease-seal.ts';
import { LeaderTerm } from './leader-term.ts';
import type { RegistryDeps } from './registry.ts';
import { Liveness } from './liveness.ts';
import { HeartbeatMarks } from './heartbeat-marks.ts';
import { staleRefusal } from './bindings.ts';
import { StateStore, openBucket } from './store.ts';
import { NatsEventPublisher } from '../protocol/events.ts';
import { deferredEvents, type DeferredEventPublisher, type Schedule } from './deferred-events.ts';
import { ensureEventStream } from './event-stream.ts';
import { ensureHealthStream } from './health-stream.ts';
import { LeaderProbe, serveLeaderPresence } from './leader-presence.ts';
import { mintEpoch } from '../protocol/coordinator-epoch.ts';
import { epochRefusal, followerMayRecord } from './heartbeat-epoch.ts';
import { announceLeader } from './leader-announce.ts';
import { WarmSnapshot } from './warm-snapshot.ts';
import { OkReplyText } from './ok-reply-text.ts';
import type { Snapshot } from './store.ts';
import { serveWatchBroker, type WatchBroker, type WatchBrokerOptions } from './watch-broker.ts';

export interface CoordinatorDeps {
  readonly nc: NatsConnection;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly config: CoordinatorConfig;
  readonly signingKey: SigningKeyPair;
  /** Lease holder id; default: $POD_NAME, else hostname-pid-random. */
  readonly holderId?: string;
  /** Counters (coordinator/metrics.ts); absent: not counted. */
  readonly metrics?: CoordinatorMetricsHooks;
  /** When events published while handling a request go out (coordinator/deferred-events.ts); default: the next turn. */
  readonly eventSchedule?: Schedule;
  /** The bucket as this coordinator uses it (tests: fault injection, e.g. lease writes that hang); default as opened. */
  readonly wrapBucket?: (kv: KV) => KV;
  /** Bounds of the heartbeat MAC key tables (protocol/heartbeat-mac.ts HeartbeatMacKeys); default 20,000 nodes' keys, 1,024 others. */
  readonly macKeyBounds?: Pick<HeartbeatMacKeysOptions, 'max' | 'unknownMax'>;
  /** Bucket reads confirming refused registrations' cluster definitions (coordinator/registry.ts DEFINITION_READ_DEFAULTS: 10/s, 50 at once). */
  readonly definitionReadRate?: RegistryDeps['definitionReadRate'];
  /** The watch broker's budgets (coordinator/watch-broker.ts): shared (WATCH_RATE_DEFAULTS, CATCHUP_ENTRY_RATE_DEFAULTS) and per node (NODE_WATCH_BUDGET_DEFAULTS). */
  readonly watchBudgets?: Pick<WatchBrokerOptions, 'ratePerSecond' | 'burst' | 'catchUpEntryRate' | 'nodeBudget'>;
  /** Replay marks kept for identity keys no node is known by (coordinator/heartbeat-marks.ts); default UNKNOWN_MARKS_DEFAULT (4,096). */
  readonly unknownMarksMax?: number;
}

/** The heartbeat answer of a leader whose registry is not loaded yet. */
const TAKING_OVER: HeartbeatReply = { ok: false, error: { code: 'unavailable', message: 'the coordinator is taking over (loading the bucket); retry in a moment' } };
/** The heartbeat answer of a leader whose lease renewal is overdue (it may have lost the lease). */
const RENEWING: HeartbeatReply = { ok: false, error: { code: 'unavailable', message: 'the coordinator is renewing its leader lease; retry in a moment' } };
/** A follower's heartbeat answer while no leader answers its presence probe (coordinator/leader-presence.ts). */
const NO_LEADER: HeartbeatReply = { ok: false, error: { code: 'unavailable', message: 'no coordinator leads right now (a follower takes over when the lease expires); retry in a moment' } };

/** How long a new leader waits for its warm copy to hold the bucket's last revision before reading the bucket instead. */
const WARM_CATCH_UP_MS = 500;

export function defaultHolderId(): string {
  const pod = process.env['POD_NAME'];
  if (pod) return pod;
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

export class Coordinator {
  private readonly liveness = new Liveness();
  private readonly heartbeatMarks: HeartbeatMarks;
  /** Heartbeat MAC keys per node, agreed with this replica's signing key (protocol/heartbeat-mac.ts). */
  private readonly macKeys: HeartbeatMacKeys;
  /** The ok reply's text, made once per epoch (coordinator/ok-reply-text.ts). */
  private readonly okReplies = new OkReplyText();
  private readonly lease: LeaderLease;
  private readonly store: StateStore;
  private readonly abort = new AbortController();
  private term: LeaderTerm | undefined;
  private endingTerms: Promise<void> = Promise.resolve();
  private heartbeatSub: Subscription | undefined;
  /** Creates agents' watch consumers (coordinator/watch-broker.ts); leader and followers alike. */
  private watchBroker: WatchBroker | undefined;
  private leaseLoop: Promise<void> = Promise.resolve();
  private readonly leaderProbe: LeaderProbe;
  private stopPresence: (() => void) | undefined;
  /** A follower's copy of the bucket, kept current, which a takeover loads from (warm-snapshot.ts). */
  private warm: WarmSnapshot | undefined;
  /** Warm copies dropped and still ending (their watches): stop() waits for them before NATS is closed. */
  private warmStopping: Promise<void> = Promise.resolve();
  private stopStatusWatch: (() => void) | undefined;
  private stopped: Promise<void> | undefined;
  private natsConnected = true;
  /** This replica's epoch while it leads (minted per term: heartbeat-epoch.ts). */
  private epoch: string | undefined;
  /** When this replica started: as a follower it records no heartbeat sent before (heartbeat-epoch.ts). */
  private readonly startedAt: number;
  private readonly logger: Logger;
  /** Heartbeat refusals at info, once per interval per reason (REFUSAL_LOG_INTERVAL_MS): anyone can send heartbeats that open and are refused. */
  private readonly refusals: RateLimitedLog;
  private readonly events: DeferredEventPublisher;

  private constructor(
    private readonly deps: CoordinatorDeps,
    store: StateStore,
  ) {
    this.store = store;
    this.logger = deps.logger;
    this.refusals = new RateLimitedLog(deps.logger, deps.clock, REFUSAL_LOG_INTERVAL_MS);
    this.startedAt = deps.clock.now();
    this.heartbeatMarks = new HeartbeatMarks(deps.config.maxClockSkewMs, deps.unknownMarksMax);
    this.macKeys = new HeartbeatMacKeys(deps.signingKey, {
      ...deps.macKeyBounds,
      knows: (name, identityKey) => this.identityKeyOf(name) === identityKey,
      onAgreed: (kind) => deps.metrics?.heartbeatMacAgreement(kind),
    });
    this.lease = new LeaderLease(store.kv, {
      seal: leaseSeal(deps.signingKey, deps.config.previousPublicKeys),
      holder: deps.holderId ?? defaultHolderId(),
      ttlMs: deps.config.leaseTtlMs,
      clock: deps.clock,
      logger: deps.logger,
      holderAnswers: (holder) => {
        const seen = this.leaderProbe.seen;
        return seen.kind === 'present' && seen.holder === holder;
      },
    });
    this.leaderProbe = new LeaderProbe({
      nc: deps.nc,
      subject: subjects(deps.config.subjectPrefix).leaderPresence,
      clock: deps.clock,
      logger: deps.logger,
    });
    // Published after the reply of the request that caused them (coordinator/deferred-events.ts).
    this.events = deferredEvents(new NatsEventPublisher({
      nc: () => deps.nc,
      subjectPrefix: deps.config.subjectPrefix,
      reporter: { role: 'coordinator', name: this.lease.holder },
      signingKey: deps.signingKey.secretKey,
      clock: deps.clock,
      logger: deps.logger,
    }), deps.eventSchedule);
  }

  /** Opens (or creates) the bucket and starts campaigning. Throws if the bucket cannot be opened. */
  static async start(deps: CoordinatorDeps): Promise<Coordinator> {
    const opened = await openBucket(deps.nc, { bucket: deps.config.bucket, replicas: deps.config.replicas, logger: deps.logger });
    const kv = deps.wrapBucket?.(opened) ?? opened;
    await ensureEventStream(deps.nc, { bucket: deps.config.bucket, subjectPrefix: deps.config.subjectPrefix, replicas: deps.config.replicas, logger: deps.logger });
    await ensureHealthStream(deps.nc, { bucket: deps.config.bucket, subjectPrefix: deps.config.subjectPrefix, replicas: deps.config.replicas, logger: deps.logger });
    const c = new Coordinator(deps, new StateStore(kv, deps.signingKey, deps.logger, deps.config.previousPublicKeys));
    c.watchConnection();
    c.leaseLoop = c.lease.run({ onAcquired: () => c.beginTerm(), onLost: () => c.endTerm() }, c.abort.signal);
    // Heartbeats only after the first lease round: a replica that does not know yet whether it leads
    // would take requests in silence (the agent waits out its timeout); nobody subscribed answers
    // "no responders" at once and the agent retries within seconds. A restarted pod (same POD_NAME)
    // leads after that round and answers "unavailable" until its registry is loaded.
    await c.lease.firstRound;
    if (!c.lease.holds()) c.leaderProbe.start(); // a follower watches whether a leader serves
    if (!c.lease.holds()) c.followWarm();
    const s = subjects(deps.config.subjectPrefix);
    c.heartbeatSub = deps.nc.subscribe(s.heartbeat, {
      callback: (err, msg) => {
        if (err) {
          c.logger.warn({ err: errorMessage(err) }, 'heartbeat subscription error');
          return;
        }
        try {
          c.onHeartbeat(msg);
        } catch (e) {
          c.logger.error({ err: errorMessage(e) }, 'heartbeat handler failed');
        }
      },
    });
    c.watchBroker = serveWatchBroker({
      nc: deps.nc,
      bucket: deps.config.bucket,
      subjectPrefix: deps.config.subjectPrefix,
      logger: deps.logger.child({ component: 'watch-broker' }),
      clock: deps.clock,
      signingKey: deps.signingKey,
      metrics: deps.metrics,
      // MAC'd requests of nodes this replica knows draw from their own budgets (watch-request-mac.ts).
      auth: { identityKeyOf: (name) => c.identityKeyOf(name), keyFor: (identityKey, name) => c.macKeys.keyFor(identityKey, name), maxClockSkewMs: deps.config.maxClockSkewMs },
      ...deps.watchBudgets,
    });
    await deps.nc.flush(); // the server knows the subscriptions before start() returns
    deps.logger.info({ holder: c.lease.holder, publicKey: deps.signingKey.publicKey, subjectPrefix: deps.config.subjectPrefix, bucket: deps.config.bucket }, 'coordinator started');
    return c;
  }

  /** True while this replica holds the lease and its registry is loaded (it answers registrations). */
  isLeader(): boolean {
    return this.lease.holds() && this.term?.registry !== undefined;
  }

  get holderId(): string {
    return this.lease.holder;
  }

  get publicKey(): string {
    return this.deps.signingKey.publicKey;
  }

  /** When this replica last took a sign of life of `name` (a registration or a verified heartbeat; leader and followers alike). */
  lastHeardAt(name: string): number | undefined {
    return this.liveness.lastSeenAt(name);
  }

  /**
   * The identity key of node `name` as far as this replica knows: the leader's registry, else (a
   * follower, or a leader still loading) its warm copy of the bucket. One lookup; what keeps a
   * node's heartbeat MAC key against a flood of made-up keys (protocol/heartbeat-mac.ts).
   */
  identityKeyOf(name: string): string | undefined {
    const registry = this.term?.registry;
    return registry ? registry.liveNode(name)?.identityKey : this.warm?.identityKeyOf(name);
  }

  /** Replay marks this replica holds: of identity keys it knows as their node's, of any other key (bounded). */
  get heartbeatMarkCount(): { readonly known: number; readonly unknown: number } {
    return this.heartbeatMarks.size;
  }

  /** What GET /metrics reports beyond the counters: leader, NATS, live nodes, the bucket's revision (one stream info request, bounded). */
  async metricsSnapshot(timeoutMs = 2000): Promise<CoordinatorSnapshot> {
    const registry = this.isLeader() ? this.term?.registry : undefined;
    let kvRevision: number | null = null;
    const timeout = new AbortController();
    try {
      const status = this.store.kv.status().then((st) => st.streamInfo.state.last_seq);
      kvRevision = await Promise.race([status, this.deps.clock.sleep(timeoutMs, timeout.signal).then(() => null)]);
    } catch (err) {
      this.logger.debug({ err: errorMessage(err) }, 'metrics: cannot read the bucket status');
    } finally {
      timeout.abort();
    }
    return {
      leader: this.isLeader(),
      natsConnected: this.natsConnected && !this.deps.nc.isClosed(),
      nodes: registry ? registry.liveNodeNames().length : null,
      kvRevision,
    };
  }

  /** Stops serving, ends the term, releases the lease (a follower takes over at once). Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= this.doStop();
    return this.stopped;
  }

  private async doStop(): Promise<void> {
    this.abort.abort();
    this.heartbeatSub?.unsubscribe();
    await this.watchBroker?.stop();
    this.stopPresence?.(); // followers answer heartbeats "unavailable" from their next probe
    this.stopStatusWatch?.();
    await Promise.all([this.leaseLoop, this.leaderProbe.stop()]);
    this.endTerm();
    await Promise.all([this.endingTerms, this.warmStopping, this.warm?.stop()]);
    await this.lease.release();
    // Events still queued (the ended term's last ones) go out before the caller closes NATS.
    this.events.flush();
    this.logger.info({ holder: this.lease.holder }, 'coordinator stopped');
  }

  private beginTerm(): void {
    if (this.abort.signal.aborted) return;
    this.endTerm();
    const term = this.lease.term;
    const epoch = mintEpoch(this.lease.termRevision);
    this.epoch = epoch;
    const warm = this.warm;
    void this.leaderProbe.stop();
    this.stopPresence = serveLeaderPresence(this.deps.nc, subjects(this.deps.config.subjectPrefix).leaderPresence, { holder: this.lease.holder, epoch }, this.logger);
    this.logger.info({ epoch }, 'new coordinator epoch: heartbeats signed with an earlier one are refused');
    this.term = new LeaderTerm({
      nc: this.deps.nc,
      store: this.store,
      clock: this.deps.clock,
      logger: this.deps.logger,
      config: this.deps.config,
      liveness: this.liveness,
      holdsLease: () => this.lease.holdsTerm(term),
      metrics: this.deps.metrics,
      events: this.events,
      epoch,
      definitionReadRate: this.deps.definitionReadRate,
      preloaded: warm ? () => this.warmCopy(warm) : undefined,
      onServing: (nodes) =>
        void announceLeader({
          nc: this.deps.nc,
          subject: subjects(this.deps.config.subjectPrefix).leaderUp,
          signingKey: this.deps.signingKey,
          holder: this.lease.holder,
          epoch,
          at: this.deps.clock.now(),
          nodes,
          heartbeatIntervalMs: heartbeatIntervalMs(this.deps.config),
          logger: this.logger,
        }),
    });
  }

  private endTerm(): void {
    this.stopPresence?.();
    this.stopPresence = undefined;
    const t = this.term;
    this.term = undefined;
    if (!t) return;
    if (!this.abort.signal.aborted) this.leaderProbe.start(); // a follower again
    this.followWarm();
    const ended = t.end().catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'ending the leader term failed'));
    this.endingTerms = Promise.all([this.endingTerms, ended]).then(() => undefined);
  }

  /** Starts a fresh warm copy (a follower from now on), dropping the previous one. */
  private followWarm(): void {
    if (this.warm) this.warmStopping = Promise.all([this.warmStopping, this.warm.stop()]).then(() => undefined);
    this.warm = this.abort.signal.aborted ? undefined : new WarmSnapshot({ kv: this.store.kv, store: this.store, clock: this.deps.clock, logger: this.logger });
  }

  /** The warm copy as of the bucket's last revision now (the lease is ours): at least as fresh as a read started now; undefined: read the bucket. */
  private async warmCopy(warm: WarmSnapshot): Promise<Snapshot | undefined> {
    try {
      const last = (await this.store.kv.status()).streamInfo.state.last_seq;
      const snap = await warm.take(last, WARM_CATCH_UP_MS);
      if (!snap) this.logger.info({ revision: last, copy: warm.revision }, 'the warm copy of the bucket is behind; reading the bucket');
      return snap;
    } catch (err) {
      this.logger.warn({ err: errorMessage(err) }, 'cannot use the warm copy of the bucket; reading the bucket');
      await warm.stop();
      return undefined;
    }
  }

  private onHeartbeat(msg: Msg): void {
    // Signed or MAC'd (protocol/heartbeat-mac.ts), leader and followers alike: nothing below runs for
    // a heartbeat whose signature or MAC does not hold.
    const opened = openHeartbeat(msg.data, Heartbeat, this.macKeys);
    const now = this.deps.clock.now();
    const epoch = this.lease.holds() ? this.epoch : undefined;
    const registry = epoch !== undefined ? this.term?.registry : undefined;
    // The epoch goes back to agents that sign one (an older agent gets the reply it knows).
    let answerEpoch: string | undefined;
    const reply = (r: HeartbeatReply): void => {
      this.deps.metrics?.heartbeat(!registry ? 'follower' : r.ok ? 'ok' : r.error.code);
      if (registry && msg.reply) msg.respond(r.ok ? this.okReplies.text(answerEpoch) : JSON.stringify(answerEpoch === undefined ? r : { ...r, epoch: answerEpoch }));
    };
    if (!opened.ok) {
      this.logger.debug({ code: opened.error.code, reason: opened.error.message }, 'heartbeat rejected');
      reply(opened);
      return;
    }
    const hb = opened.value;
    if (hb.epoch !== undefined) answerEpoch = epoch;
    const skew = checkSentAt(hb.sentAt, now, this.deps.config.maxClockSkewMs);
    if (!skew.ok) {
      this.refusals.log('info', 'skew', { node: hb.name, reason: skew.error.message }, 'heartbeat rejected');
      reply(skew);
      return;
    }
    // A heartbeat of an earlier term (perhaps captured and replayed after every replica restarted).
    // Checked before the replay mark moves: a refused heartbeat changes no state.
    const staleEpoch = epoch === undefined ? undefined : epochRefusal(hb.epoch, epoch, this.deps.config.requireHeartbeatEpoch);
    if (staleEpoch) {
      this.logger.debug({ node: hb.name, epoch: hb.epoch, current: epoch }, `heartbeat rejected: ${staleEpoch.code}`);
      this.deps.metrics?.heartbeat(staleEpoch.code);
      if (msg.reply) msg.respond(JSON.stringify({ ok: false, error: staleEpoch, epoch } satisfies HeartbeatReply));
      return;
    }
    // Whether the key is the named node's as far as this replica knows (a map lookup; the MAC key table
    // asked the same when it had no K kept for a node): only then is the
    // heartbeat a sign of life on a follower, and only then is its mark kept for the whole window.
    // Anyone with an agent NATS user can sign heartbeats under fresh key pairs and made-up names.
    const known = this.identityKeyOf(hb.name) === hb.identityKey;
    // Replay: sentAt must move forward per identity key (every replica tracks it, followers too).
    const mark = this.heartbeatMarks.markOf(hb.identityKey);
    if (!this.heartbeatMarks.advance(hb.identityKey, hb.sentAt, now, known)) {
      this.refusals.log('info', 'replay', { node: hb.name, sentAt: hb.sentAt, mark }, 'heartbeat rejected: replayed or reordered');
      reply({ ok: false, error: staleRefusal(hb.sentAt, mark ?? hb.sentAt) });
      return;
    }
    // Counted once it is fresh (skew, epoch, replay mark): a replayed capture is no heartbeat of its form.
    this.deps.metrics?.heartbeatForm(opened.form);
    if (!registry && epoch !== undefined) {
      // Leader, still loading the bucket (a takeover or restart): say so at once, so the agent
      // retries within seconds instead of waiting out its request timeout.
      if (known) this.liveness.touch(hb.name, now, hb.identityKey);
      this.deps.metrics?.heartbeat('unavailable');
      if (msg.reply) msg.respond(JSON.stringify(answerEpoch === undefined ? TAKING_OVER : { ...TAKING_OVER, epoch: answerEpoch }));
      return;
    }
    if (!registry && this.lease.lapsed()) {
      // We lead, but the renewal is late (a slow bucket under load): we may not answer ok, and
      // silence would make the agent wait out its whole request timeout. The node is alive all the
      // same: if the term survives the lapse it must not expire by a TTL counted from before it
      // (only a heartbeat of this term's epoch that the registry would take: Registry.noteAlive).
      if (this.epoch !== undefined && epochRefusal(hb.epoch, this.epoch, this.deps.config.requireHeartbeatEpoch) === undefined) this.term?.registry?.noteAlive(hb);
      this.deps.metrics?.heartbeat('unavailable');
      if (msg.reply) msg.respond(JSON.stringify(RENEWING));
      return;
    }
    if (!registry) {
      // Followers only keep liveness fresh for the day they take over, noting which key signed it:
      // the new leader keeps it only if that is the node's own identity key (Liveness.retainMatching),
      // and only for heartbeats of the leader's epoch sent after this replica started. Only names its
      // warm copy holds with this key: a flood of made-up names would otherwise stay in memory for
      // good (a follower forgets nothing until it takes over).
      if (known && followerMayRecord(hb, this.leaderProbe.epoch, this.startedAt, this.deps.config.requireHeartbeatEpoch)) this.liveness.touch(hb.name, now, hb.identityKey);
      // While no leader answers (it died holding the lease), say so instead of leaving the agent
      // to wait out its request timeout; while one does, stay silent (the first answer wins).
      if (this.leaderProbe.leaderAbsent() && msg.reply) {
        this.deps.metrics?.heartbeat('unavailable');
        msg.respond(JSON.stringify(NO_LEADER));
        return;
      }
      this.deps.metrics?.heartbeat('follower');
      return;
    }
    const r = registry.heartbeat(hb);
    // unknown-node is routine (the agent re-registers); anything else is worth seeing.
    if (!r.ok) {
      const fields = { node: hb.name, code: r.error.code, reason: r.error.message };
      if (r.error.code === 'unknown-node') this.logger.debug(fields, 'heartbeat refused');
      else this.refusals.log('info', `refused:${r.error.code}`, fields, 'heartbeat refused');
    }
    reply(r);
  }

  /** After a NATS outage nobody could heartbeat: give every node a fresh TTL instead of expiring them all. */
  private watchConnection(): void {
    const iter = this.deps.nc.status();
    const stoppable = iter as { stop?: () => void };
    this.stopStatusWatch = () => stoppable.stop?.();
    const loop = async (): Promise<void> => {
      for await (const s of iter) {
        if (this.abort.signal.aborted) break;
        if (s.type === 'disconnect') this.natsConnected = false;
        else if (s.type === 'reconnect') this.natsConnected = true;
        if (s.type === 'disconnect') this.logger.warn({ server: s.server }, 'disconnected from NATS; reconnecting');
        else if (s.type === 'reconnect') {
          this.logger.info({ server: s.server }, 'reconnected to NATS');
          this.term?.registry?.graceAll();
        }
      }
    };
    loop().catch((err: unknown) => this.logger.debug({ err: errorMessage(err) }, 'status watch ended'));
  }
}
