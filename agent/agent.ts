// The agent daemon: wires keys, the node source, the control plane (register/heartbeat), the KV
// watch, the reconciler and the status server together, and shuts them down in order.
//
// Fail-static: the data plane only changes on verified information. While NATS or the coordinator
// is unreachable the agent keeps the last verified view (and so the peers and routes as they are);
// before the first registration and the first complete KV snapshot it ensures the interface only.
import type { VerifyKeys } from '../protocol/signing.ts';
import { AgentEvents } from './events/agent-events.ts';
import { RateLimitedEvents } from './events/event-rate-limit.ts';
import { effectiveSettings } from './plan/effective-settings.ts';
import { HealthSummaryPublisher } from './events/health-summary-publisher.ts';
import { NatsEventPublisher, fanOutEvents, type EventPublisher } from '../protocol/events.ts';
import { DEFAULT_SUBJECT_PREFIX } from '../protocol/subjects.ts';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JoinCredential } from '../protocol/join-credential.ts';
import type { NatsConnection } from '@nats-io/transport-node';
import { systemClock, type Clock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import { packagePath } from '../lib/package-root.ts';
import type { Logger } from '../lib/logger.ts';
import type { MetricsScrape } from '../lib/metrics.ts';
import type { Runner } from '../lib/runner.ts';
import { parseIp } from '../protocol/cidr.ts';
import { subjects } from '../protocol/subjects.ts';
import type { NodeRecord } from '../protocol/messages.ts';
import type { WireguardKeyPair } from '../protocol/signing.ts';
import type { AgentStatus } from '../protocol/status.ts';
import type { DiagnosticsDocument, Readiness, RotateKeyResponse, ViewDocument } from '../protocol/status-api.ts';
import { redactUrl, type AgentConfig, type WireguardMode } from './config.ts';
import { ControlPlane } from './control/control-plane.ts';
import { onConnectionStatus } from '../lib/nats-status.ts';
import { KeyRotation } from './control/key-rotation.ts';
import { loadOrCreateNodeKeys, type NodeKeys } from './control/keys.ts';
import { AgentHealth } from './health/agent-health.ts';
import type { ProberTuning } from './health/prober.ts';
import { LossRepair } from './health/loss-repair.ts';
import { agentWatchSource } from './control/brokered-watch.ts';
import { MeshWatch } from './control/mesh-watch.ts';
import type { Dataplane, LivePeer } from './dataplane/api.ts';
import { readHost } from './dataplane/host-facts.ts';
import { IncrementalPlanner } from './plan/incremental-plan.ts';
import type { DataplaneConfig, MeshSnapshot, NodeIdentity, NodeSource, PublishedState } from './plan/model.ts';
import { viewOf, type ComputeDesiredState } from './plan/target.ts';
import type { AgentMetricsHooks, AgentMetricsPort } from './metrics/agent-metrics.ts';
import { DeferredAgentMetrics } from './metrics/deferred-agent-metrics.ts';
import { AgentPolicy } from './policy/agent-policy.ts';
import { Reconciler, type ReconcileRecord } from './reconciler.ts';
import { clusterPathsFromPeers } from './services/paths.ts';
import { ServicesAgent } from './services/services-agent.ts';
import type { ServicesSyncFactory } from './services/sync.ts';
import { assembleStatus } from './status/assemble.ts';
import { collectDiagnostics } from './status/diagnostics.ts';
import { readinessOf } from './status/readiness.ts';
import { toViewDocument } from './status/view.ts';
import { startStatusServer, type StatusServer } from './status-server.ts';
import { backoffDelay, type BackoffPolicy, type Random } from '../lib/backoff.ts';
import { StartGate } from './start-gate.ts';
import { startPeriodicResync } from './periodic-resync.ts';
import { recentRead, type RecentRead } from '../lib/recent-read.ts';
import type { StatusReadOptions } from '../protocol/fresh-read.ts';

export const AGENT_VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'dev';
  } catch {
    return 'dev';
  }
})();

/**
 * Retries of the first connect to NATS (fail-static meanwhile): 0.5 s doubling to 5 s, spread ±50 %
 * so a fleet started while NATS is down (a rollout, a cluster restart) does not knock in lockstep when
 * it comes back. nats.js spreads its own reconnects after the first connect.
 */
export const CONNECT_RETRY_POLICY: BackoffPolicy = Object.freeze({ initialMs: 500, maxMs: 5000, jitter: 0.5 });

export interface AgentOptions {
  readonly config: AgentConfig;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly runner: Runner;
  /** Resolves once connected (it may wait for a server); the agent serves status meanwhile. */
  readonly connectNats: () => Promise<NatsConnection>;
  /** Randomness for the first connect's retry spread (tests pin it); default Math.random. */
  readonly random?: Random;
  /** The data plane: WireGuard, routes and relay ports (agent/dataplane/dataplane.ts; tests fake it). */
  readonly createDataplane: (o: { config: DataplaneConfig; wireguardMode: WireguardMode }) => Promise<Dataplane>;
  readonly nodeSource: NodeSource;
  /** Aborts a start still waiting for the first identity (e.g. the Node object); Agent.start then rejects. */
  readonly signal?: AbortSignal;
  /** Resolved coordinator public key (from --coordinator-key or the file). */
  /** The coordinator's public key, or its key set during a signing-key rotation. */
  readonly coordinatorKey: VerifyKeys;
  /** The cluster's join credential (from --join-credential-file); registrations are signed with it. */
  readonly joinCredential?: JoinCredential | null;
  /** Resolved MTU (auto already detected). */
  readonly mtu: number;
  readonly computeDesiredState?: ComputeDesiredState;
  /** IP addresses of the NATS servers (resolved from --nats-url): the route guard never routes them into the overlay. */
  readonly natsAddresses?: readonly string[];
  /** Tests only: no route guard (the negative control of test/adversary-dataplane.test.ts). */
  readonly unsafeUnguardedRoutes?: boolean;
  readonly agentVersion?: string;
  /** Prometheus metrics (GET /metrics); default a DeferredAgentMetrics (its own registry, prom-client loaded at the first scrape). */
  readonly metrics?: AgentMetricsPort;
  /** Another sink for this agent's events besides NATS (Kubernetes Events on the Node in Kubernetes mode). */
  readonly events?: EventPublisher;
  /** Kubernetes mode: mirrors services to ServiceExport/ServiceImport objects (agent/kubernetes/mcs). */
  readonly servicesSync?: ServicesSyncFactory;
  /** Test knobs: faster retries. */
  readonly tuning?: {
    readonly retryMinMs?: number;
    readonly retryMaxMs?: number;
    readonly requestTimeoutMs?: number;
    readonly debounceMs?: number;
    readonly watchAuditIntervalMs?: number;
    readonly probe?: ProberTuning;
    readonly healthSummaryIntervalMs?: number;
  };
}

/** The last overlay IP we held, so a restart before re-registration does not strip it from the interface. */
const OVERLAY_IP_FILE = 'overlay-ip';
/**
 * status() is asked often (the lab polls every agent twice a second; the services table refreshes
 * its paths; `crosslink status --watch`): its kernel reads are shared for this long, and dropped
 * after every reconcile, so a status is never older than this nor older than the last apply.
 */
const STATUS_READ_MAX_AGE_MS = 1000;

interface LiveReads {
  readonly peers: readonly LivePeer[] | { error: string };
  readonly policy: Awaited<ReturnType<AgentPolicy['status']>>;
  readonly mtu: number | null;
}

export class Agent {
  private nc: NatsConnection | undefined;
  private controlPlane: ControlPlane | undefined;
  private meshWatch: MeshWatch | undefined;
  private statusServer: StatusServer | undefined;
  private connecting: Promise<void> | undefined;
  private stopStatusEvents: (() => void) | undefined;
  private unsubscribeRestart: (() => void) | undefined;
  private unsubscribeDrift: (() => void) | undefined;
  private readonly abort = new AbortController();
  /** Opens once the local start (status server, policy init) is done; NATS deliveries wait for it. */
  private readonly localStart = new StartGate((err) => this.o.logger.error({ err }, 'a delivery held until the local start threw'));
  private stopping: Promise<void> | undefined;
  private ownSeenInWatch = false;
  private lastPublished = '';
  /** What the state dir's overlay-ip file holds (the reconciler got it at start, for before the first registration). */
  private cachedOverlayIp: string | null;
  /** The WireGuard key in force: handed to the reconciler; a key rotation replaces it. */
  private wireguard: WireguardKeyPair;
  private readonly clock: Clock;
  private readonly reconciler: Reconciler;
  private readonly rotation: KeyRotation;
  private readonly policy: AgentPolicy;
  private readonly services: ServicesAgent;
  private readonly health: AgentHealth;
  private readonly metrics: AgentMetricsPort;
  /** What status() reads from the kernel (peers, policy table, MTU), shared for STATUS_READ_MAX_AGE_MS. */
  private readonly liveReads: RecentRead<LiveReads>;
  /** Events of this agent (and of anything repairing its data plane): NATS, plus Kubernetes Events in Kubernetes mode. */
  readonly events: AgentEvents;
  private readonly summaries: HealthSummaryPublisher;

  private constructor(
    private readonly o: AgentOptions,
    private readonly keys: NodeKeys,
    private identity: NodeIdentity,
    private readonly dataplane: Dataplane,
    private readonly dataplaneConfig: DataplaneConfig,
    cachedOverlayIp: string | null,
  ) {
    this.clock = o.clock ?? systemClock;
    this.wireguard = keys.wireguard;
    this.cachedOverlayIp = cachedOverlayIp;
    this.metrics = o.metrics ?? new DeferredAgentMetrics();
    const natsEvents = new NatsEventPublisher({
      nc: () => this.nc,
      subjectPrefix: DEFAULT_SUBJECT_PREFIX,
      reporter: () => ({ role: 'agent', name: this.identity.name }),
      signingKey: keys.identity.secretKey,
      clock: this.clock,
      logger: o.logger.child({ component: 'events' }),
    });
    this.summaries = new HealthSummaryPublisher({
      nc: () => this.nc,
      status: () => this.status(),
      identitySecretKey: keys.identity.secretKey,
      subjectPrefix: DEFAULT_SUBJECT_PREFIX,
      clock: this.clock,
      logger: o.logger.child({ component: 'health-summary' }),
      ...(o.tuning?.healthSummaryIntervalMs === undefined ? {} : { intervalMs: o.tuning.healthSummaryIntervalMs }),
    });
    // At most a few events per type per minute reach NATS and Kubernetes (agent/events/event-rate-limit.ts).
    const sinks = new RateLimitedEvents(o.events ? fanOutEvents(natsEvents, o.events) : natsEvents, { clock: this.clock });
    this.events = new AgentEvents(sinks, () => ({ name: this.identity.name, cluster: o.config.cluster }), o.config.interfaceName);
    this.policy = new AgentPolicy({
      runner: o.runner,
      logger: o.logger.child({ component: 'policy' }),
      clock: this.clock,
      interfaceName: o.config.interfaceName,
      mode: o.config.policyEnforcement,
      nftCommand: o.config.nftCommand,
      bucket: o.config.bucket,
      coordinatorKeys: typeof o.coordinatorKey === 'string' ? [o.coordinatorKey] : o.coordinatorKey,
      onGateChanged: () => this.reconciler.request('policy enforcement changed'),
    });
    // The reference computation, kept up to date one change at a time (agent/plan/incremental-plan.ts).
    const compute = o.computeDesiredState ?? new IncrementalPlanner().compute;
    this.reconciler = new Reconciler({
      dataplane,
      dataplaneConfig,
      inputs: { mesh: null, self: null, privateKey: this.wireguard.privateKey, cachedOverlayIp },
      computeDesiredState: (view, cfg, host, options) => this.policy.gate(compute(view, cfg, host, options)),
      readHost: () => readHost(o.runner, o.config.interfaceName, o.natsAddresses ?? []),
      unguarded: o.unsafeUnguardedRoutes === true,
      clock: this.clock,
      logger: o.logger.child({ component: 'reconciler' }),
    });
    this.liveReads = recentRead(this.clock, STATUS_READ_MAX_AGE_MS, () => this.readLive());
    this.reconciler.onResult((record) => {
      this.liveReads.invalidate();
      this.metrics.reconciled(record);
      // A run asked for by the drift monitor that changed something put back what had gone missing.
      if (record.ok && record.reasons.some((r) => r.startsWith('drift:'))) this.metrics.routesRepaired(record.changes);
      this.events.reconciled(record);
      this.publishState();
      // The prober follows what was just applied: our overlay IP and the peers (immutable snapshots).
      const { self, mesh } = this.reconciler.current();
      this.health.sync(self?.overlayIp ?? null, this.reconciler.desired(), mesh?.nodes ?? new Map(), mesh?.clusters);
    });
    this.rotation = new KeyRotation({
      stateDir: o.config.stateDir,
      logger: o.logger,
      controlPlane: () => this.controlPlane,
      shuttingDown: () => this.abort.signal.aborted,
      current: () => this.wireguard,
      switchTo: async (next) => {
        this.wireguard = next;
        const rec = await this.reconciler.reconcileNow('WireGuard key rotated', { privateKey: next.privateKey });
        this.publishState();
        return { interfaceUpdated: rec?.interfaceEnsured === true, error: rec?.error ?? null };
      },
    });
    this.services = new ServicesAgent({
      cluster: o.config.cluster,
      nodeName: () => this.identity.name,
      bucket: o.config.bucket,
      dnsAddr: o.config.dnsAddr,
      dnsPolicy: o.config.dnsPolicy,
      coordinatorKey: o.coordinatorKey,
      identityKey: keys.identity,
      clusterPaths: async () => clusterPathsFromPeers((await this.status()).peers, this.clock.now()),
      clock: this.clock,
      logger: o.logger.child({ component: 'services' }),
      ...(o.servicesSync ? { sync: o.servicesSync } : {}),
    });
    // Lost probes ask for a full reconcile at most once per 5 s; an active gateway's only if still lost 2 s later (agent/health/loss-repair.ts).
    const lossRepair = new LossRepair({ clock: this.clock, request: (reason) => this.reconciler.request(reason), signal: this.abort.signal, stillLost: (name) => this.health.prober.isLosing(name) });
    this.health = new AgentHealth({ clock: this.clock, logger: o.logger.child({ component: 'health' }), runner: o.runner, interfaceName: dataplaneConfig.interfaceName, onPeerLost: (name, gateway) => lossRepair.lost(name, { gateway }),
      gatewayReports: { nodeName: () => this.identity.name, identitySecretKey: keys.identity.secretKey, publish: (payload) => this.publishGatewayHealth(payload) }, ...(o.tuning?.probe ? { probe: o.tuning.probe } : {}) });
  }

  /** Loads keys, resolves the identity, creates the data plane and starts every loop. */
  static async start(o: AgentOptions): Promise<Agent> {
    const log = o.logger;
    const keys = await loadOrCreateNodeKeys(o.config.stateDir);
    log.info({ publicKey: keys.wireguard.publicKey, identityKey: keys.identity.publicKey, stateDir: o.config.stateDir }, 'node keys loaded');
    // Listen before start() resolves: an identity change between the first identity and run() (while
    // the data plane is created, seconds with wireguard-go) would otherwise be lost until the next one.
    const early: { agent?: Agent; identity?: NodeIdentity } = {};
    o.nodeSource.onChange((changed) => {
      if (early.agent) early.agent.identityChanged(changed);
      else early.identity = changed;
    });
    let identity: NodeIdentity;
    try {
      identity = await o.nodeSource.start(o.signal ?? new AbortController().signal);
      if (o.signal?.aborted) throw new Error('agent start aborted');
    } catch (err) {
      await o.nodeSource.stop().catch(() => undefined);
      throw err;
    }
    const dataplaneConfig: DataplaneConfig = Object.freeze({
      interfaceName: o.config.interfaceName,
      listenPort: o.config.listenPort,
      mtu: o.mtu,
      natKeepaliveSec: o.config.natKeepaliveSec,
      relayPortBase: o.config.relayPortBase,
      relayPortSpan: o.config.relayPortSpan,
    });
    let dataplane: Dataplane;
    try {
      dataplane = await o.createDataplane({ config: dataplaneConfig, wireguardMode: o.config.wireguard });
    } catch (err) {
      await o.nodeSource.stop().catch(() => undefined);
      throw err;
    }
    const cachedOverlayIp = await readCachedOverlayIp(join(o.config.stateDir, OVERLAY_IP_FILE));
    const agent = new Agent(o, keys, early.identity ?? identity, dataplane, dataplaneConfig, cachedOverlayIp);
    early.agent = agent;
    try {
      await agent.run();
    } catch (err) {
      // Never tear down on a failed start: the interface may belong to an agent that is still running.
      agent.stopping ??= agent.shutdown(false);
      await agent.stopping.catch(() => undefined);
      throw err;
    }
    return agent;
  }

  private async run(): Promise<void> {
    // Connecting to NATS, registering and reading the KV overlap the rest of the start (status
    // server, policy init, the interface-only reconcile): what they deliver (our record, the
    // snapshot) waits until those are in place (agent/start-gate.ts).
    this.connecting = this.connectLoop();
    try {
      await this.startLocal();
    } finally {
      this.localStart.open();
    }
  }

  private async startLocal(): Promise<void> {
    const { config, logger } = this.o;
    this.unsubscribeRestart = this.dataplane.onRestart?.((generation) => {
      logger.warn({ generation }, 'WireGuard interface came back empty; re-applying everything');
      this.metrics.wireguardRestarted();
      this.events.wireguardRestarted(generation);
      // Probing right after the re-apply starts the handshakes (NATed peers at their remembered endpoints).
      void this.reconciler.reconcileNow('wireguard restarted').then(() => this.health.kick());
    });
    this.unsubscribeDrift = this.dataplane.onDrift?.((reason) => this.reconciler.request(`drift: ${reason}`));
    // The interface-only start first: its spawns overlap the status server and the policy init
    // (no view can be planned before those are in place: deliveries wait for the local start).
    this.reconciler.request('start');
    await this.services.start();
    this.statusServer = await startStatusServer({
      socketPath: config.statusSocket,
      extraRoutes: this.services.routes(),
      healthAddr: config.healthAddr,
      healthStatus: config.healthStatus,
      provider: {
        status: (r) => this.status(r),
        readiness: () => this.readiness(),
        view: () => this.viewDocument(),
        diagnostics: () => this.diagnostics(),
        rotateKey: () => this.rotateKey(),
        policy: () => this.policy.document(),
        ping: (q) => this.health.ping(q, this.reconciler.desired(), this.reconciler.current().mesh?.nodes ?? new Map()),
        metrics: (r) => this.scrapeMetrics(r),
      },
      logger: logger.child({ component: 'status' }),
    });
    await this.policy.init();
    this.health.start();
    this.summaries.start(this.abort.signal);
    startPeriodicResync({
      clock: this.clock,
      intervalMs: config.resyncIntervalMs,
      signal: this.abort.signal,
      logger,
      resync: () => {
        this.reconciler.request('resync');
        this.policy.resync();
      },
    });
  }

  /** Signed gateway verdicts (agent/health/gateway-reporter.ts) go to every coordinator replica. */
  private publishGatewayHealth(payload: Uint8Array): boolean {
    if (!this.nc || this.nc.isClosed()) return false;
    this.nc.publish(subjects().gatewayHealth, payload);
    return true;
  }

  private identityChanged(identity: NodeIdentity): void {
    this.identity = identity;
    this.o.logger.info({ identity }, 'node identity changed');
    // Before the first connection there is no control plane yet; it registers with this identity.
    this.controlPlane?.requestRegister('identity changed');
  }

  private async connectLoop(): Promise<void> {
    const log = this.o.logger;
    let failures = 0;
    log.info({ servers: this.o.config.natsServers.map(redactUrl) }, 'connecting to NATS');
    while (!this.abort.signal.aborted) {
      try {
        const nc = await this.o.connectNats();
        if (this.abort.signal.aborted) {
          await nc.close();
          return;
        }
        this.onConnected(nc);
        return;
      } catch (err) {
        failures++;
        // Fail-static: the data plane stays as it is while we keep trying.
        const fields = { err: errorMessage(err), attempts: failures };
        if (failures === 1 || failures % 30 === 0) log.warn(fields, 'cannot connect to NATS yet (check --nats-url / --nats-creds); retrying');
        else log.debug(fields, 'NATS connect failed; retrying');
        await this.clock.sleep(backoffDelay(CONNECT_RETRY_POLICY, failures, this.o.random), this.abort.signal);
      }
    }
  }

  private onConnected(nc: NatsConnection): void {
    const { config, logger } = this.o;
    const tuning = this.o.tuning ?? {};
    this.nc = nc;
    logger.info({ server: nc.getServer() }, 'connected to NATS');
    this.stopStatusEvents = onConnectionStatus(nc, (s) => {
      if (s.type === 'reconnect') this.reconciler.request('nats reconnected');
    });
    const cp = new ControlPlane({
      nc,
      clock: this.clock,
      logger: logger.child({ component: 'control-plane' }),
      coordinatorKey: this.o.coordinatorKey,
      wireguardPublicKey: this.wireguard.publicKey,
      identityKey: this.keys.identity,
      joinCredential: this.o.joinCredential ?? null,
      identity: () => this.identity,
      listenPort: config.listenPort,
      settings: effectiveSettings(this.dataplaneConfig),
      agentVersion: this.o.agentVersion ?? AGENT_VERSION,
      ...(tuning.retryMinMs === undefined ? {} : { retryMinMs: tuning.retryMinMs }),
      ...(tuning.retryMaxMs === undefined ? {} : { retryMaxMs: tuning.retryMaxMs }),
      ...(tuning.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: tuning.requestTimeoutMs }),
    });
    // Watches through the coordinators' watch broker (agents hold no consumer permission: docs/agent.md).
    const watches = agentWatchSource({ nc, bucket: config.bucket, subjectPrefix: DEFAULT_SUBJECT_PREFIX, logger: logger.child({ component: 'watch' }), clock: this.clock, coordinatorKey: this.o.coordinatorKey, requestMac: () => cp.watchRequestMac() });
    const watch = new MeshWatch({
      nc,
      watches,
      bucket: config.bucket,
      coordinatorKey: this.o.coordinatorKey,
      logger: logger.child({ component: 'mesh-watch' }),
      clock: this.clock,
      ...(tuning.debounceMs === undefined ? {} : { debounceMs: tuning.debounceMs }),
      ...(tuning.retryMinMs === undefined ? {} : { retryMinMs: tuning.retryMinMs }),
      ...(tuning.retryMaxMs === undefined ? {} : { retryMaxMs: tuning.retryMaxMs }),
      ...(tuning.watchAuditIntervalMs === undefined ? {} : { auditIntervalMs: tuning.watchAuditIntervalMs }),
    });
    this.controlPlane = cp;
    this.meshWatch = watch;
    // Push, not pull: the control plane emits our own record, the watch its snapshots; both go to
    // the reconciler as data.
    // Registration and the KV read start at once; what they deliver waits for the local start
    // (the policy gate must be initialised before any view is planned), in order.
    const gate = this.localStart;
    cp.onRecord((record) => gate.run(() => this.onOwnRecord(record)));
    watch.onSnapshot((snapshot) => gate.run(() => this.onMeshSnapshot(snapshot)));
    cp.start();
    watch.start();
    gate.run(() => {
      this.policy.connect(nc, watches);
      this.services.attach(nc, watches);
    });
  }

  private onOwnRecord(record: NodeRecord): void {
    void this.cacheOverlayIp(record.overlayIp);
    this.reconciler.update({ self: record }, 'own record');
  }

  private onMeshSnapshot(snapshot: MeshSnapshot): void {
    const cp = this.controlPlane;
    if (!cp) return;
    const own = snapshot.nodes.get(this.identity.name);
    if (own) {
      this.ownSeenInWatch = true;
      // A newer copy of our record comes back through cp.onRecord.
      cp.observeOwnRecord(own);
    } else if (this.ownSeenInWatch && snapshot.complete) {
      // Expired or deleted by the coordinator (e.g. it missed our heartbeats): come back.
      this.ownSeenInWatch = false;
      cp.requestRegister('own record disappeared from the KV');
    }
    this.reconciler.update({ mesh: snapshot }, 'mesh changed');
    this.policy.meshChanged(snapshot.complete ? snapshot.nodes : null);
    this.services.meshChanged(snapshot.complete ? snapshot.nodes : null);
  }

  private async cacheOverlayIp(ip: string): Promise<void> {
    if (ip === this.cachedOverlayIp) return;
    this.cachedOverlayIp = ip;
    try {
      await writeFile(join(this.o.config.stateDir, OVERLAY_IP_FILE), `${ip}\n`, { mode: 0o600 });
    } catch (err) {
      this.o.logger.warn({ err: errorMessage(err) }, 'cannot cache the overlay IP in the state dir');
    }
  }

  /** Tells the node source (Kubernetes: Node annotations/condition) our key, IP and readiness when they changed. */
  private publishState(): void {
    const r = this.readiness();
    const state: PublishedState = {
      publicKey: this.wireguard.publicKey,
      overlayIp: this.reconciler.current().self?.overlayIp ?? null,
      ready: r.ready,
      reason: r.reason,
    };
    const key = JSON.stringify(state);
    if (key === this.lastPublished) return;
    this.lastPublished = key;
    this.o.nodeSource.publish(state).catch((err: unknown) => {
      this.o.logger.warn({ err: errorMessage(err) }, 'publishing node state failed');
    });
  }

  readiness(): Readiness {
    return readinessOf({
      controlPlane: this.controlPlane?.state(),
      meshComplete: this.reconciler.current().mesh?.complete ?? false,
      reconciled: this.reconciler.applied,
      lastReconcile: this.reconciler.lastReconcile(),
      policyNotReady: this.policy.notReadyReason(),
    });
  }

  get publicKey(): string {
    return this.wireguard.publicKey;
  }

  /** Replaces the node's WireGuard key (POST /rotate-key); see agent/control/key-rotation.ts. */
  rotateKey(): Promise<RotateKeyResponse> {
    return this.rotation.rotate();
  }

  /** Bound port of the clusterset.local DNS server (--dns-addr), null when off. */
  get dnsPort(): number | null {
    return this.services.dnsPort;
  }

  /** Counters for other parts of the agent (self-healing): wireguard-go restarts, route repairs. */
  get metricsHooks(): AgentMetricsHooks {
    return this.metrics;
  }

  /** GET /metrics: pushes one status snapshot and the probe counters into the metrics, then renders them. */
  private async scrapeMetrics(read?: StatusReadOptions): Promise<MetricsScrape> {
    const status = await this.status(read);
    const w = this.meshWatch?.stats();
    this.metrics.observe({
      status,
      probes: { ...this.health.prober.counters },
      watch: w ? { live: w.live, stalls: w.stalls, lagRevisions: w.lagRevisions, resumes: w.resumes, catchUpSessions: w.catchUpSessions, catchingUp: w.catchingUp, totalEntries: w.totalEntries } : null,
      rangeWatches: { services: this.services.watchStats(), enrollments: this.policy.enrollmentWatchStats() },
      now: this.clock.now(),
    });
    return this.metrics.render();
  }

  get healthPort(): number | null {
    return this.statusServer?.healthPort ?? null;
  }

  /** Waits for a reconcile that starts after this call (tests, diagnostics). */
  reconcileNow(reason: string): Promise<ReconcileRecord | null> {
    return this.reconciler.reconcileNow(reason);
  }

  private viewDocument(): ViewDocument | null {
    const v = viewOf(this.reconciler.current());
    return v ? toViewDocument(v, this.dataplaneConfig) : null;
  }

  /** One read of the kernel state status() reports (each a `wg`/`nft`/`ip` spawn). */
  private async readLive(): Promise<LiveReads> {
    // Side by side: three independent spawns (wg, nft, ip).
    const [peers, policy, mtu] = await Promise.all([
      this.dataplane.livePeers().catch((err: unknown): { error: string } => ({ error: errorMessage(err) })),
      this.policy.status(),
      this.health.liveMtu(),
    ]);
    return { peers, policy, mtu };
  }

  /** `fresh`: read the kernel now (`crosslink status --fresh`), else the reading shared for STATUS_READ_MAX_AGE_MS. */
  async status(read?: StatusReadOptions): Promise<AgentStatus> {
    const { peers: live, policy, mtu: liveMtu } = await (read?.fresh === true ? this.liveReads.fresh() : this.liveReads());
    const inputs = this.reconciler.current();
    const watch = this.meshWatch;
    const desired = this.reconciler.desired();
    const controlPlane = this.controlPlane?.state();
    return assembleStatus({
      version: this.o.agentVersion ?? AGENT_VERSION,
      identity: this.identity,
      publicKey: this.wireguard.publicKey,
      self: inputs.self,
      controlPlane,
      mesh: inputs.mesh,
      watch: watch ? { stats: watch.stats(), rejected: watch.rejected().size } : undefined,
      desired,
      lastReconcile: this.reconciler.lastReconcile(),
      ready: this.readiness().ready,
      live,
      relayStats: this.dataplane.relayStats(),
      policy,
      policyErrors: this.policy.errors(policy),
      dataplane: {
        backend: this.dataplane.backend,
        interface: this.dataplaneConfig.interfaceName,
        listenPort: this.dataplaneConfig.listenPort,
        mtu: this.dataplaneConfig.mtu,
        liveMtu,
      },
      probes: new Map((desired?.peers ?? []).map((p) => [p.node, this.health.peer(p.node)])),
      controlPlaneHealth: this.health.controlPlane(controlPlane ?? null),
    });
  }

  diagnostics(): Promise<DiagnosticsDocument> {
    return collectDiagnostics(this.dataplaneConfig.interfaceName, this.dataplane, this.o.runner);
  }

  /**
   * Clean shutdown: stop loops and the watch, deregister (with cleanup), then tear down (cleanup)
   * or just release (no cleanup) the data plane — relay ports close either way — and close NATS
   * and the status server.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown(this.o.config.cleanup);
    return this.stopping;
  }

  private async shutdown(cleanup: boolean): Promise<void> {
    const { logger } = this.o;
    const step = async (what: string, fn: () => unknown): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        logger.warn({ err: errorMessage(err) }, `shutdown: ${what} failed`);
      }
    };
    logger.info({ cleanup }, 'shutting down');
    this.abort.abort();
    this.stopStatusEvents?.();
    this.unsubscribeRestart?.();
    this.unsubscribeDrift?.();
    await step('stop KV watch', () => this.meshWatch?.stop());
    await step('stop services', () => this.services.stop());
    await step('stop control plane', () => this.controlPlane?.stop());
    await step('stop reconciler', () => this.reconciler.stop());
    await step('stop prober', () => this.health.stop());
    await step('stop health summaries', () => this.summaries.stop());
    // Deregister only after the watch is closed, or we would see our own record go and re-register.
    if (cleanup && this.controlPlane?.state().registered) await step('deregister', () => this.controlPlane?.deregister());
    await step('stop policy', () => this.policy.stop(cleanup));
    if (cleanup) await step('tear down data plane', () => this.dataplane.teardown());
    else await step('release data plane', () => this.dataplane.close());
    await step('close NATS', async () => {
      await this.connecting;
      await this.nc?.close();
    });
    await step('publish stopped state', async () => {
      const source = this.o.nodeSource;
      // Cleanup (uninstall) removes what we wrote on the Node; otherwise the Node says we stopped.
      if (cleanup && source.withdraw) await source.withdraw();
      else await source.publish({ publicKey: this.wireguard.publicKey, overlayIp: this.reconciler.current().self?.overlayIp ?? null, ready: false, reason: 'agent stopped' });
    });
    await step('stop node source', () => this.o.nodeSource.stop());
    await step('close status server', () => this.statusServer?.close());
    await step('stop metrics', () => this.metrics.stop());
    logger.info('stopped');
  }
}

async function readCachedOverlayIp(path: string): Promise<string | null> {
  try {
    const text = (await readFile(path, 'utf8')).trim();
    return parseIp(text) ? text : null;
  } catch {
    return null;
  }
}
