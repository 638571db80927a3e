// The agent daemon: wires keys, the node source, the control plane (register/heartbeat), the KV
// watch, the reconciler and the status server together, and shuts them down in order.
//
// Fail-static: the data plane only changes on verified information. While NATS or the coordinator
// is unreachable the agent keeps the last verified view (and so the peers and routes as they are);
// before the first registration and the first complete KV snapshot it ensures the interface only.
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { systemClock, type Clock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import { packagePath } from '../lib/package-root.ts';
import type { Logger } from '../lib/logger.ts';
import type { Runner } from '../lib/runner.ts';
import { hostCidr, parseIp } from '../protocol/cidr.ts';
import type { NodeRecord } from '../protocol/messages.ts';
import type { WireguardKeyPair } from '../protocol/signing.ts';
import type { AgentStatus, PeerStatus } from '../protocol/status.ts';
import { redactUrl, type AgentConfig, type WireguardMode } from './config.ts';
import { ControlPlane } from './control/control-plane.ts';
import { onConnectionStatus } from '../lib/nats-status.ts';
import { computeDesiredState as defaultComputeDesiredState, type DesiredStateOptions } from './plan/desired-state.ts';
import type { HostFacts } from './plan/route-guard.ts';
import { readHostFacts } from './dataplane/host-facts.ts';
import { loadOrCreateNodeKeys, stageWireguardKey, type NodeKeys, type StagedWireguardKey } from './control/keys.ts';
import { MeshWatch } from './control/mesh-watch.ts';
import type { DataplaneConfig, DesiredInterface, DesiredState, MeshView, NodeIdentity, NodeSource, PublishedState } from './plan/model.ts';
import { AgentPolicy } from './policy/agent-policy.ts';
import { Reconciler, type AgentDataplane, type AgentRelay, type ReconcileRecord } from './reconciler.ts';
import { isOwnedRoute, parseIpRoutes, readRoutesArgv } from './dataplane/route-diff.ts';
import { clusterPathsFromPeers } from './services/paths.ts';
import { ServicesAgent } from './services/services-agent.ts';
import {
  RotateKeyError,
  startStatusServer,
  toViewDocument,
  type DiagnosticsDocument,
  type Readiness,
  type RotateKeyResponse,
  type StatusServer,
  type ViewDocument,
} from './status-server.ts';
import { backoffDelay } from '../lib/backoff.ts';

export const AGENT_VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'dev';
  } catch {
    return 'dev';
  }
})();

export interface AgentOptions {
  readonly config: AgentConfig;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly runner: Runner;
  /** Resolves once connected (it may wait for a server); the agent serves status meanwhile. */
  readonly connectNats: () => Promise<NatsConnection>;
  readonly createDataplane: (o: { config: DataplaneConfig; wireguardMode: WireguardMode }) => Promise<AgentDataplane>;
  /** The UDP relay for NATed pairs; optional (no relaying without it). */
  readonly createRelay?: (o: { config: DataplaneConfig }) => AgentRelay;
  readonly nodeSource: NodeSource;
  /** Aborts a start still waiting for the first identity (e.g. the Node object); Agent.start then rejects. */
  readonly signal?: AbortSignal;
  /** Resolved coordinator public key (from --coordinator-key or the file). */
  readonly coordinatorKey: string;
  /** Resolved MTU (auto already detected). */
  readonly mtu: number;
  readonly computeDesiredState?: (view: MeshView, config: DataplaneConfig, host: HostFacts, options: DesiredStateOptions) => DesiredState;
  /** IP addresses of the NATS servers (resolved from --nats-url): the route guard never routes them into the overlay. */
  readonly natsAddresses?: readonly string[];
  /** Tests only: no route guard (the negative control of test/adversary-dataplane.test.ts). */
  readonly unsafeUnguardedRoutes?: boolean;
  readonly agentVersion?: string;
  /** Test knobs: faster retries. */
  readonly tuning?: {
    readonly retryMinMs?: number;
    readonly retryMaxMs?: number;
    readonly requestTimeoutMs?: number;
    readonly debounceMs?: number;
    readonly watchAuditIntervalMs?: number;
  };
}

/** The last overlay IP we held, so a restart before re-registration does not strip it from the interface. */
const OVERLAY_IP_FILE = 'overlay-ip';

export class Agent {
  private nc: NatsConnection | undefined;
  private controlPlane: ControlPlane | undefined;
  private meshWatch: MeshWatch | undefined;
  private statusServer: StatusServer | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private connecting: Promise<void> | undefined;
  private stopStatusEvents: (() => void) | undefined;
  private unsubscribeRestart: (() => void) | undefined;
  private readonly abort = new AbortController();
  private stopping: Promise<void> | undefined;
  private ownSeenInWatch = false;
  private lastPublished = '';
  private cachedOverlayIp: string | null = null;
  /** The WireGuard key in force: the interface gets it at every reconcile; rotateKey() replaces it. */
  private wireguard: WireguardKeyPair;
  private rotations: Promise<unknown> = Promise.resolve();
  private readonly clock: Clock;
  private readonly reconciler: Reconciler;
  private readonly policy: AgentPolicy;
  private readonly services: ServicesAgent;

  private constructor(
    private readonly o: AgentOptions,
    private readonly keys: NodeKeys,
    private identity: NodeIdentity,
    private readonly dataplane: AgentDataplane,
    private readonly relay: AgentRelay | null,
    private readonly dataplaneConfig: DataplaneConfig,
  ) {
    this.clock = o.clock ?? systemClock;
    this.wireguard = keys.wireguard;
    this.policy = new AgentPolicy({
      runner: o.runner,
      logger: o.logger.child({ component: 'policy' }),
      clock: this.clock,
      interfaceName: o.config.interfaceName,
      mode: o.config.policyEnforcement,
      nftCommand: o.config.nftCommand,
      bucket: o.config.bucket,
      coordinatorKeys: [o.coordinatorKey],
      onGateChanged: () => this.reconciler.request('policy enforcement changed'),
    });
    const compute = o.computeDesiredState ?? defaultComputeDesiredState;
    this.reconciler = new Reconciler({
      dataplane,
      dataplaneConfig: this.dataplaneConfig,
      privateKey: () => this.wireguard.privateKey,
      view: () => this.currentView(),
      interfaceWithoutView: () => this.interfaceWithoutView(),
      computeDesiredState: (view, cfg, host, options) => this.policy.gate(compute(view, cfg, host, options)),
      hostFacts: () => readHostFacts(o.runner, o.config.interfaceName, o.natsAddresses ?? []),
      unguarded: o.unsafeUnguardedRoutes === true,
      clock: this.clock,
      logger: o.logger.child({ component: 'reconciler' }),
      onReconciled: () => this.publishState(),
      relay,
    });
    this.services = new ServicesAgent({
      cluster: o.config.cluster,
      nodeName: () => this.identity.name,
      bucket: o.config.bucket,
      dnsAddr: o.config.dnsAddr,
      dnsPolicy: o.config.dnsPolicy,
      coordinatorKey: o.coordinatorKey,
      identityKey: keys.identity,
      nodes: () => (this.meshWatch?.synced ? this.meshWatch.nodes() : undefined),
      clusterPaths: async () => clusterPathsFromPeers((await this.status()).peers, this.clock.now()),
      clock: this.clock,
      logger: o.logger.child({ component: 'services' }),
    });
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
    let dataplane: AgentDataplane;
    try {
      dataplane = await o.createDataplane({ config: dataplaneConfig, wireguardMode: o.config.wireguard });
    } catch (err) {
      await o.nodeSource.stop().catch(() => undefined);
      throw err;
    }
    let relay: AgentRelay | null;
    try {
      relay = o.createRelay?.({ config: dataplaneConfig }) ?? null;
    } catch (err) {
      await dataplane.close().catch(() => undefined);
      await o.nodeSource.stop().catch(() => undefined);
      throw err;
    }
    const agent = new Agent(o, keys, early.identity ?? identity, dataplane, relay, dataplaneConfig);
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
    const { config, logger } = this.o;
    this.cachedOverlayIp = await readCachedOverlayIp(join(config.stateDir, OVERLAY_IP_FILE));
    this.unsubscribeRestart = this.dataplane.onRestart?.((generation) => {
      logger.warn({ generation }, 'WireGuard interface came back empty; re-applying everything');
      this.reconciler.request('wireguard restarted');
    });
    await this.services.start();
    this.statusServer = await startStatusServer({
      socketPath: config.statusSocket,
      extraRoutes: this.services.routes(),
      healthAddr: config.healthAddr,
      provider: {
        status: () => this.status(),
        readiness: () => this.readiness(),
        view: () => this.viewDocument(),
        diagnostics: () => this.diagnostics(),
        rotateKey: () => this.rotateKey(),
        policy: () => this.policy.document(),
      },
      logger: logger.child({ component: 'status' }),
    });
    await this.policy.init();
    this.reconciler.request('start');
    this.resyncTimer = setInterval(() => {
      this.reconciler.request('resync');
      this.policy.resync();
    }, config.resyncIntervalMs);
    this.connecting = this.connectLoop();
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
        await this.clock.sleep(backoffDelay({ initialMs: 500, maxMs: 5000 }, failures), this.abort.signal);
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
      identity: () => this.identity,
      listenPort: config.listenPort,
      agentVersion: this.o.agentVersion ?? AGENT_VERSION,
      ...(tuning.retryMinMs === undefined ? {} : { retryMinMs: tuning.retryMinMs }),
      ...(tuning.retryMaxMs === undefined ? {} : { retryMaxMs: tuning.retryMaxMs }),
      ...(tuning.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: tuning.requestTimeoutMs }),
    });
    const watch = new MeshWatch({
      nc,
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
    cp.onRecord((record) => {
      void this.cacheOverlayIp(record.overlayIp);
      this.reconciler.request('registered');
    });
    watch.onChange(() => this.onMeshChanged());
    cp.start();
    watch.start();
    this.policy.connect(nc);
    this.services.attach(nc);
  }

  private onMeshChanged(): void {
    const cp = this.controlPlane;
    const watch = this.meshWatch;
    if (!cp || !watch) return;
    const own = watch.nodes().get(this.identity.name);
    if (own) {
      this.ownSeenInWatch = true;
      cp.observeOwnRecord(own);
    } else if (this.ownSeenInWatch && watch.synced) {
      // Expired or deleted by the coordinator (e.g. it missed our heartbeats): come back.
      this.ownSeenInWatch = false;
      cp.requestRegister('own record disappeared from the KV');
    }
    this.reconciler.request('mesh changed');
    this.policy.meshChanged(watch.synced ? new Map(watch.nodes()) : null);
    this.services.meshChanged();
  }

  /** Our own record: the newest verified copy from the register reply or the KV. */
  private ownRecord(): NodeRecord | null {
    return this.controlPlane?.state().record ?? null;
  }

  private currentView(): MeshView | undefined {
    const self = this.ownRecord();
    const watch = this.meshWatch;
    // Without a complete snapshot we could only remove peers we merely haven't read yet.
    if (self === null || !watch?.synced) return undefined;
    return { self, nodes: watch.nodes(), clusters: watch.clusters() };
  }

  private interfaceWithoutView(): DesiredInterface {
    const ip = this.ownRecord()?.overlayIp ?? this.cachedOverlayIp;
    return {
      name: this.dataplaneConfig.interfaceName,
      listenPort: this.dataplaneConfig.listenPort,
      mtu: this.dataplaneConfig.mtu,
      addresses: ip === null ? [] : [hostCidr(ip)],
    };
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
      overlayIp: this.ownRecord()?.overlayIp ?? null,
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
    const cp = this.controlPlane?.state();
    if (!cp) return { ready: false, reason: 'not connected to NATS yet' };
    if (!cp.registered) return { ready: false, reason: `not registered yet${cp.lastError ? `: ${cp.lastError}` : ''}` };
    if (!this.meshWatch?.synced) return { ready: false, reason: 'KV snapshot not loaded yet' };
    if (!this.reconciler.applied) {
      const last = this.reconciler.lastReconcile();
      return { ready: false, reason: `not reconciled yet${last?.error ? `: ${last.error}` : ''}` };
    }
    const policy = this.policy.notReadyReason();
    if (policy !== null) return { ready: false, reason: policy };
    return { ready: true, reason: 'registered and reconciled' };
  }

  get publicKey(): string {
    return this.wireguard.publicKey;
  }

  /**
   * Replaces the node's WireGuard key (POST /rotate-key). Rotations are serialised. Order:
   *   1. the new key is written next to the old one (wireguard.key.next, 0600, synced);
   *   2. we re-register with the new public key and wait for the coordinator's verified record;
   *   3. the file replaces wireguard.key (rename), the agent switches to the key, and a reconcile
   *      sets it on the interface; the node source is told.
   * Registering before switching the interface keeps the outage short: our tunnels break only when
   * a peer swaps in the new key, which happens after the KV update reaches it — by then our
   * interface has switched or is about to (milliseconds of local work). Switching first would cut
   * every tunnel for the whole registration and propagation, and a failed registration would need
   * an interface rollback. If registration fails, nothing changed: the old key stays in the file,
   * on the interface and in the registration (after an unclear answer we re-register the old key).
   */
  rotateKey(): Promise<RotateKeyResponse> {
    const run = this.rotations.then(() => this.rotateKeyNow());
    this.rotations = run.catch(() => undefined);
    return run;
  }

  private async rotateKeyNow(): Promise<RotateKeyResponse> {
    const log = this.o.logger;
    const cp = this.controlPlane;
    if (this.abort.signal.aborted) throw new RotateKeyError('unavailable', 'the agent is shutting down; the key was not changed');
    if (!cp?.state().connected) {
      throw new RotateKeyError('unavailable', 'not connected to NATS, so the new key cannot be registered; the old key is kept (retry when `crosslink status` shows the control plane connected)');
    }
    const old = this.wireguard;
    let staged: StagedWireguardKey;
    try {
      staged = await stageWireguardKey(this.o.config.stateDir);
    } catch (err) {
      throw new RotateKeyError('failed', `cannot write the new key: ${errorMessage(err)}; the old key is kept`, { cause: err });
    }
    log.info({ oldPublicKey: old.publicKey, newPublicKey: staged.keys.publicKey }, 'rotating the WireGuard key: registering the new public key');
    const reg = await cp.registerWithKey(staged.keys.publicKey, 'key rotation');
    if (!reg.ok) {
      await staged.discard();
      // The coordinator may have taken the new key without us hearing back: put the old one back.
      if (reg.uncertain) cp.requestRegister('re-asserting the current key after an unanswered key rotation');
      log.warn({ err: reg.error, publicKey: old.publicKey }, 'key rotation failed; keeping the old key');
      throw new RotateKeyError(reg.kind === 'rejected' ? 'refused' : 'unavailable', `the coordinator did not accept the new key (${reg.error}); the old key is kept`);
    }
    let saveError: unknown;
    try {
      await staged.commit();
    } catch (err) {
      saveError = err;
    }
    // Registered: from here on the new key is the one peers expect, so the interface must get it
    // even if saving failed (the file then still holds the old key, which the next start re-registers).
    this.wireguard = staged.keys;
    const rec = await this.reconciler.reconcileNow('WireGuard key rotated');
    const interfaceUpdated = rec?.interfaceEnsured === true;
    this.publishState();
    if (saveError !== undefined) {
      log.error({ err: errorMessage(saveError) }, 'the new WireGuard key is registered and in use but could not be saved; the next start goes back to the old key');
      throw new RotateKeyError(
        'failed',
        `the new key ${staged.keys.publicKey} is registered and in use, but saving it failed (${errorMessage(saveError)}); the next agent start re-registers the old key ${old.publicKey}`,
        { cause: saveError },
      );
    }
    if (interfaceUpdated) log.info({ oldPublicKey: old.publicKey, newPublicKey: staged.keys.publicKey, generation: reg.record.generation }, 'WireGuard key rotated');
    else log.warn({ err: rec?.error, newPublicKey: staged.keys.publicKey }, 'WireGuard key rotated and registered; setting it on the interface failed and is retried at the next resync');
    return {
      node: reg.record.name,
      oldPublicKey: old.publicKey,
      newPublicKey: staged.keys.publicKey,
      generation: reg.record.generation,
      interfaceUpdated,
    };
  }

  /** Bound port of the clusterset.local DNS server (--dns-addr), null when off. */
  get dnsPort(): number | null {
    return this.services.dnsPort;
  }

  get healthPort(): number | null {
    return this.statusServer?.healthPort ?? null;
  }

  /** Waits for a reconcile that starts after this call (tests, diagnostics). */
  reconcileNow(reason: string): Promise<ReconcileRecord | null> {
    return this.reconciler.reconcileNow(reason);
  }

  private viewDocument(): ViewDocument | null {
    const v = this.currentView();
    return v ? toViewDocument(v, this.dataplaneConfig) : null;
  }

  async status(): Promise<AgentStatus> {
    const errors: string[] = [];
    const cp = this.controlPlane?.state();
    const desired = this.reconciler.desired();
    const watch = this.meshWatch;
    let live: Awaited<ReturnType<AgentDataplane['livePeers']>> = [];
    try {
      live = await this.dataplane.livePeers();
    } catch (err) {
      errors.push(`cannot read WireGuard state: ${errorMessage(err)}`);
    }
    const liveByKey = new Map(live.map((p) => [p.publicKey, p]));
    const peers: PeerStatus[] = (desired?.peers ?? []).map((p) => {
      const l = liveByKey.get(p.publicKey);
      const node = watch?.nodes().get(p.node);
      return {
        name: p.node,
        cluster: p.cluster,
        location: node?.location ?? '',
        publicKey: p.publicKey,
        path: p.path,
        via: p.via,
        configuredEndpoint: p.endpoint,
        endpoint: l?.endpoint ?? null,
        allowedIps: [...p.allowedIps],
        latestHandshakeAt: l?.latestHandshakeAt ?? null,
        rxBytes: l?.rxBytes ?? 0,
        txBytes: l?.txBytes ?? 0,
        persistentKeepalive: p.persistentKeepalive,
        carries: [...p.carries],
      };
    });
    if (cp?.lastError) errors.push(cp.lastError);
    const ws = watch?.stats();
    if (ws?.lastError) errors.push(`KV watch: ${ws.lastError}`);
    const rejected = watch?.rejected().size ?? 0;
    if (rejected > 0) errors.push(`${rejected} KV record(s) ignored (bad signature, name or generation); see \`crosslink nodes\``);
    const last = this.reconciler.lastReconcile();
    if (last?.error) errors.push(`reconcile: ${last.error}`);
    const policy = await this.policy.status();
    errors.push(...this.policy.errors(policy));
    const refused = desired?.refused.length ?? 0;
    if (refused > 0) errors.push(`${refused} peer CIDR(s) refused by the route guard (they overlap what this host needs); see "Refused routes"`);

    const relayStats = new Map((this.relay?.stats() ?? []).map((s) => [s.port, s]));
    const own = this.ownRecord();
    const id = this.identity;
    return {
      version: this.o.agentVersion ?? AGENT_VERSION,
      node: {
        name: id.name,
        cluster: id.cluster,
        location: id.location,
        publicKey: this.wireguard.publicKey,
        overlayIp: own?.overlayIp ?? null,
        endpoints: [...id.endpoints],
        privateAddresses: [...id.privateAddresses],
        podCidrs: [...id.podCidrs],
        topology: id.topology,
        isGateway: desired?.isGateway ?? false,
        isRelay: (desired?.relays.length ?? 0) > 0,
      },
      controlPlane: {
        connected: cp?.connected ?? false,
        registered: cp?.registered ?? false,
        lastHeartbeatAt: cp?.lastHeartbeatAt ?? null,
        lastError: cp?.lastError ?? (this.nc ? null : 'not connected to NATS yet'),
        knownNodes: watch?.nodes().size ?? 0,
      },
      dataplane: {
        backend: this.dataplane.backend,
        interface: this.dataplaneConfig.interfaceName,
        listenPort: this.dataplaneConfig.listenPort,
        mtu: this.dataplaneConfig.mtu,
      },
      lastReconcile: last === null ? null : { at: last.at, ok: last.ok, changes: last.changes, durationMs: last.durationMs, error: last.error },
      ready: this.readiness().ready,
      peers,
      remotes: [...(desired?.remotes ?? [])],
      refusedRoutes: (desired?.refused ?? []).map((r) => ({ ...r })),
      relays: (desired?.relays ?? []).map((r) => ({
        port: r.port,
        between: [r.a.node, r.b.node] as [string, string],
        packets: relayStats.get(r.port)?.packets ?? 0,
        bytes: relayStats.get(r.port)?.bytes ?? 0,
      })),
      errors,
      policy,
    };
  }

  async diagnostics(): Promise<DiagnosticsDocument> {
    const doc: DiagnosticsDocument = {
      interface: this.dataplaneConfig.interfaceName,
      livePeers: null,
      livePeersError: null,
      liveRoutes: null,
      liveRoutesError: null,
    };
    try {
      doc.livePeers = (await this.dataplane.livePeers()).map((p) => ({
        publicKey: p.publicKey,
        endpoint: p.endpoint,
        allowedIps: [...p.allowedIps],
        latestHandshakeAt: p.latestHandshakeAt,
        rxBytes: p.rxBytes,
        txBytes: p.txBytes,
      }));
    } catch (err) {
      doc.livePeersError = errorMessage(err);
    }
    try {
      const routes = [];
      for (const family of [4, 6] as const) {
        const r = await this.o.runner.run(readRoutesArgv(family), { allowFailure: family === 6 });
        // Ours only (the read returns the whole main table).
        if (r.exitCode === 0) routes.push(...parseIpRoutes(r.stdout, family).filter(isOwnedRoute).map(({ dst, dev, via }) => ({ dst, dev, via })));
      }
      doc.liveRoutes = routes;
    } catch (err) {
      doc.liveRoutesError = errorMessage(err);
    }
    return doc;
  }

  /**
   * Clean shutdown: stop loops and the watch, deregister (with cleanup), close the relay, then
   * tear down (cleanup) or just release (no cleanup) the data plane, close NATS and the status server.
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
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.stopStatusEvents?.();
    this.unsubscribeRestart?.();
    await step('stop KV watch', () => this.meshWatch?.stop());
    await step('stop services', () => this.services.stop());
    await step('stop control plane', () => this.controlPlane?.stop());
    await step('stop reconciler', () => this.reconciler.stop());
    // Deregister only after the watch is closed, or we would see our own record go and re-register.
    if (cleanup && this.controlPlane?.state().registered) await step('deregister', () => this.controlPlane?.deregister());
    await step('stop policy', () => this.policy.stop(cleanup));
    await step('close relay', () => this.relay?.close());
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
      else await source.publish({ publicKey: this.wireguard.publicKey, overlayIp: this.ownRecord()?.overlayIp ?? null, ready: false, reason: 'agent stopped' });
    });
    await step('stop node source', () => this.o.nodeSource.stop());
    await step('close status server', () => this.statusServer?.close());
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
