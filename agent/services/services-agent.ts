// The agent's multi-cluster services part, wired into Agent with a few lines: the KV watch of
// ServiceExport records, the DNS server for clusterset.local, export/unexport through the
// coordinator, and the local API routes (socket only). Everything it answers is rebuilt as one
// immutable ServiceTable whenever the exports, the live nodes or the path health change.
import type { KeyWatchSource } from '../control/key-watch.ts';
import type { RangeResumeStats } from '../control/range-resume.ts';
import type { VerifyKeys } from '../../protocol/signing.ts';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Clock } from '../../lib/clock.ts';
import { ClockTimer } from '../../lib/clock-timer.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { NodeRecord } from '../../protocol/messages.ts';
import {
  liveEndpoints,
  mergeServiceExports,
  serviceKeys,
  serviceRef,
  type ClusterPathInfo,
  type DnsPolicy,
  type MergedService,
  type ServiceExportRecord,
} from '../../protocol/service.ts';
import type { SigningKeyPair } from '../../protocol/signing.ts';
import { ExportSpec, UnexportSpec, type ExportResult, type ServicesDocument } from './api.ts';
import { startDnsServer, type DnsServer } from './dns-server.ts';
import { ServiceRequestError, requestExport, requestUnexport } from './export-client.ts';
import { ServiceWatch } from './service-watch.ts';
import { buildServiceTable, entryFor, type ServiceTable } from './service-table.ts';
import type { ServicesSync, ServicesSyncFactory } from './sync.ts';

export interface ServicesAgentOptions {
  readonly cluster: string;
  readonly nodeName: () => string;
  readonly bucket: string;
  readonly dnsAddr: { readonly host: string; readonly port: number } | null;
  readonly dnsPolicy: DnsPolicy;
  /** The coordinator's public key, or its key set during a signing-key rotation. */
  readonly coordinatorKey: VerifyKeys;
  readonly identityKey: SigningKeyPair;
  /**
   * What the agent knows of its path to each other cluster: the active probes' state and RTT per
   * peer (agent/services/paths.ts), WireGuard handshakes before the first probe verdict.
   */
  readonly clusterPaths: () => Promise<ReadonlyMap<string, ClusterPathInfo>>;
  readonly clock: Clock;
  readonly logger: Logger;
  /** How often path health is refreshed for the answer order (default 5 s). */
  readonly pathRefreshMs?: number;
  readonly dnsTtlSec?: number;
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** Mirrors services into another system (Kubernetes mode: ServiceExport/ServiceImport). */
  readonly sync?: ServicesSyncFactory;
}

/** An HTTP route on the status socket, served by status-server.ts. */
export interface LocalRoute {
  readonly path: string;
  readonly method: 'GET' | 'POST';
  /** Resolves to the HTTP status and JSON body; `body` is the parsed request body (POST). */
  readonly handle: (body: unknown) => Promise<{ readonly status: number; readonly body: unknown }>;
}

const FAILURE_STATUS = { unavailable: 503, refused: 409, invalid: 400 } as const;

export class ServicesAgent {
  private nc: NatsConnection | undefined;
  private watch: ServiceWatch | undefined;
  private dns: DnsServer | undefined;
  private table: ServiceTable = new Map();
  private paths: ReadonlyMap<string, ClusterPathInfo> = new Map();
  /** The latest complete verified node map (pushed by meshChanged); undefined before the first. */
  private nodes: ReadonlyMap<string, NodeRecord> | undefined;
  /** The path health refresh, on the injected clock (ended by stop()). */
  private readonly pathTimer: ClockTimer;
  /** The last path refresh was skipped (no service records). */
  private pathsSkipped = false;
  private readonly listeners: ((services: readonly MergedService[]) => void)[] = [];
  private readonly sync: ServicesSync | undefined;

  constructor(private readonly o: ServicesAgentOptions) {
    this.sync = o.sync?.({ exportService: (spec) => this.exportService(spec), unexportService: (spec) => this.unexportService(spec) });
    this.pathTimer = new ClockTimer({ clock: o.clock, fire: () => this.refreshPaths(), onError: (err) => o.logger.error({ err: errorMessage(err) }, 'path health refresh crashed') });
  }

  /** Starts the DNS server (if --dns-addr) at once; it answers from the KV once connected. */
  async start(): Promise<void> {
    if (this.o.dnsAddr) {
      this.dns = await startDnsServer({
        host: this.o.dnsAddr.host,
        port: this.o.dnsAddr.port,
        table: () => this.table,
        logger: this.o.logger,
        ...(this.o.dnsTtlSec === undefined ? {} : { answer: { ttlSec: this.o.dnsTtlSec } }),
      });
    }
    this.pathTimer.every(this.o.pathRefreshMs ?? 5000);
    this.sync?.start();
  }

  get dnsPort(): number | null {
    return this.dns?.port ?? null;
  }

  /** Called once NATS is connected. */
  attach(nc: NatsConnection, watches?: KeyWatchSource): void {
    this.nc = nc;
    const w = new ServiceWatch({
      nc,
      ...(watches ? { watches } : {}),
      bucket: this.o.bucket,
      coordinatorKey: this.o.coordinatorKey,
      logger: this.o.logger,
      clock: this.o.clock,
      ...(this.o.retryMinMs === undefined ? {} : { retryMinMs: this.o.retryMinMs }),
      ...(this.o.retryMaxMs === undefined ? {} : { retryMaxMs: this.o.retryMaxMs }),
    });
    this.watch = w;
    w.onChange(() => {
      if (this.pathsSkipped && this.records().size > 0) this.refreshPaths();
      this.rebuild();
    });
    w.start();
  }

  /**
   * The mesh view changed (nodes joined, expired, were revoked): endpoints follow. `nodes` is the
   * latest verified snapshot's (immutable) node map once complete, else null. Pushed, not pulled.
   */
  meshChanged(nodes: ReadonlyMap<string, NodeRecord> | null): void {
    this.nodes = nodes ?? undefined;
    this.rebuild();
  }

  /** Called with the merged services (all exports, before liveness) whenever they change. */
  onServicesChanged(listener: (services: readonly MergedService[]) => void): void {
    this.listeners.push(listener);
  }

  records(): ReadonlyMap<string, ServiceExportRecord> {
    return this.watch?.current() ?? new Map();
  }

  get synced(): boolean {
    return this.watch?.synced ?? false;
  }

  /** The service watch's stalls, resumes and catch-up (undefined: not started). */
  watchStats(): RangeResumeStats | undefined {
    return this.watch?.stats();
  }

  /** The answer table in force (tests, status). */
  currentTable(): ServiceTable {
    return this.table;
  }

  private refreshPaths(): void {
    // Nothing exported anywhere: no answer to order, so no status read (at 1,000 peers a status is
    // three kernel reads and a 1,000-peer document, every 5 s). The first export refreshes at once.
    if (this.records().size === 0) {
      this.pathsSkipped = true;
      return;
    }
    this.pathsSkipped = false;
    this.o
      .clusterPaths()
      .then((p) => {
        const changed = JSON.stringify([...p]) !== JSON.stringify([...this.paths]);
        this.paths = p;
        if (changed) this.rebuild();
      })
      .catch((err: unknown) => this.o.logger.debug({ err: errorMessage(err) }, 'path health refresh failed'));
  }

  private rebuild(): void {
    const records = [...this.records().values()];
    this.table = buildServiceTable({
      records,
      nodes: this.nodes?.values() ?? [],
      localCluster: this.o.cluster,
      paths: this.paths,
      policy: this.o.dnsPolicy,
    });
    const merged = mergeServiceExports(records);
    const nodes = this.nodes;
    this.sync?.update(nodes && this.synced ? { self: this.o.nodeName(), nodes, records: this.records(), merged } : null);
    for (const l of this.listeners) {
      try {
        l(merged);
      } catch (err) {
        this.o.logger.warn({ err: errorMessage(err) }, 'services listener failed');
      }
    }
  }

  /** Exports `spec` as this cluster's complete endpoint set of the service (replacing the previous one). */
  async exportService(spec: ExportSpec): Promise<ExportResult> {
    const nc = this.requireNats();
    const record = await requestExport(
      { nc, coordinatorKey: this.o.coordinatorKey, identityKey: this.o.identityKey },
      {
        v: 1,
        node: this.o.nodeName(),
        identityKey: this.o.identityKey.publicKey,
        cluster: this.o.cluster,
        namespace: spec.namespace,
        name: spec.name,
        ports: spec.ports,
        addresses: spec.addresses,
        sentAt: this.o.clock.now(),
      },
    );
    this.o.logger.info({ service: serviceRef(spec), addresses: record.addresses.length, generation: record.generation }, 'service exported');
    return { service: serviceRef(spec), cluster: this.o.cluster, generation: record.generation, addresses: record.addresses };
  }

  async unexportService(spec: UnexportSpec): Promise<ExportResult> {
    const nc = this.requireNats();
    await requestUnexport(
      { nc, coordinatorKey: this.o.coordinatorKey, identityKey: this.o.identityKey },
      { v: 1, node: this.o.nodeName(), identityKey: this.o.identityKey.publicKey, cluster: this.o.cluster, namespace: spec.namespace, name: spec.name, sentAt: this.o.clock.now() },
    );
    this.o.logger.info({ service: serviceRef(spec) }, 'service unexported');
    return { service: serviceRef(spec), cluster: this.o.cluster, generation: null, addresses: [] };
  }

  private requireNats(): NatsConnection {
    if (!this.nc) throw new ServiceRequestError('unavailable', 'not connected to NATS yet; retry when `crosslink status` shows the control plane connected');
    return this.nc;
  }

  document(): ServicesDocument {
    const records = this.records();
    const nodes = [...(this.nodes?.values() ?? [])];
    return {
      cluster: this.o.cluster,
      dnsAddr: this.o.dnsAddr ? `${this.o.dnsAddr.host}:${this.dns?.port ?? this.o.dnsAddr.port}` : null,
      dnsPolicy: this.o.dnsPolicy,
      synced: this.synced,
      services: mergeServiceExports(records.values()).map((s) => {
        const live = liveEndpoints(s, nodes);
        const entry = entryFor(s, { nodes, localCluster: this.o.cluster, paths: this.paths, policy: this.o.dnsPolicy });
        return {
          namespace: s.namespace,
          name: s.name,
          ports: [...s.ports],
          clusters: s.clusters.map((c, i) => {
            const r = records.get(serviceKeys.export(s.namespace, s.name, c.cluster));
            return {
              cluster: c.cluster,
              exportedBy: r?.exportedBy ?? '',
              createdAt: c.createdAt,
              updatedAt: r?.updatedAt ?? c.createdAt,
              addresses: [...c.addresses],
              liveAddresses: [...(live.clusters[i]?.addresses ?? [])],
            };
          }),
          answer: entry.endpoints.map((e) => e.address),
          conditions: [...s.conditions],
        };
      }),
    };
  }

  /** Routes for the status socket (never the health port: export changes state). */
  routes(): LocalRoute[] {
    const guarded = async (fn: () => Promise<unknown>): Promise<{ status: number; body: unknown }> => {
      try {
        return { status: 200, body: await fn() };
      } catch (err) {
        if (err instanceof ServiceRequestError) return { status: FAILURE_STATUS[err.failure], body: { error: err.message, failure: err.failure } };
        throw err;
      }
    };
    const parse = <T>(schema: { safeParse: (v: unknown) => { success: true; data: T } | { success: false; error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] } } }, body: unknown): T => {
      const r = schema.safeParse(body);
      if (r.success) return r.data;
      const i = r.error.issues[0];
      throw new ServiceRequestError('invalid', i ? `${i.path.map(String).join('.') || '(body)'}: ${i.message}` : 'invalid request');
    };
    return [
      { path: '/services', method: 'GET', handle: () => Promise.resolve({ status: 200, body: this.document() }) },
      { path: '/services/export', method: 'POST', handle: (body) => guarded(() => this.exportService(parse(ExportSpec, body))) },
      { path: '/services/unexport', method: 'POST', handle: (body) => guarded(() => this.unexportService(parse(UnexportSpec, body))) },
    ];
  }

  async stop(): Promise<void> {
    this.pathTimer.cancel();
    await this.sync?.stop();
    await this.watch?.stop();
    await this.dns?.close();
  }
}
