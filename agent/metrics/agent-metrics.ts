// The agent's Prometheus metrics (prom-client, one Registry per agent), served as GET /metrics on
// the health listener and the status socket. Fed only by data pushed in by the owners:
//   - events as they happen: reconciled(record), wireguardRestarted(), routesRepaired(n);
//   - at scrape time the agent pushes one status snapshot (the same document `crosslink status`
//     shows), the prober's packet counters and the KV watch's figures: observe({...}).
// No callbacks into live maps: what a scrape reports is exactly the snapshot that was pushed.
// Names, labels and meaning: docs/metrics.md.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { newRegistry, scrape, type MetricsScrape } from '../../lib/metrics.ts';
import type { EventLoopDelaySampler } from '../../lib/event-loop-delay.ts';
import type { AgentStatus } from '../../protocol/status.ts';
import type { RangeResumeStats } from '../control/range-resume.ts';
import { RECONCILE_BUCKETS, type EarlyTotals } from './early-totals.ts';
import { peerSamples, policyDropSamples } from './peer-samples.ts';
import { WatchSeries, type WatchProgress } from './watch-series.ts';

/** What the agent's reconciler reports per run (a subset of ReconcileRecord). */
export interface ReconcileOutcome {
  readonly ok: boolean;
  readonly durationMs: number;
  readonly changes: number;
  /** KV revision of the snapshot the run worked from (0: none yet). */
  readonly revision: number;
}

/** The prober's datagram counters (agent/health/prober.ts), copied. */
export interface ProbePacketCounts {
  readonly requestsSent: number;
  readonly repliesReceived: number;
  readonly requestsAnswered: number;
}

/** The KV watch's figures (agent/control/mesh-watch.ts stats), copied; null before NATS connected. */
export interface WatchFigures extends WatchProgress {
  readonly live: boolean;
}

/** The single-range watchers whose stalls are counted apart from the mesh watch's. */
export type RangeWatchName = 'services' | 'enrollments';

/** Everything a scrape reports beyond the event counters, pushed by the agent at scrape time. */
export interface AgentScrapeSnapshot {
  readonly status: AgentStatus;
  readonly probes: ProbePacketCounts;
  readonly watch: WatchFigures | null;
  /** The service and enrollment watches' figures (agent/control/range-resume.ts stats()); undefined: not running. */
  readonly rangeWatches?: Readonly<Record<RangeWatchName, RangeResumeStats | undefined>>;
  readonly now: number;
}

/**
 * The hooks other parts of the agent call (self-healing, the events publisher): counters only,
 * no access to anything else.
 */
export interface AgentMetricsHooks {
  /** wireguard-go (or the kernel interface) came back empty and was re-applied. */
  wireguardRestarted(): void;
  /** `count` Crosslink routes (or peers) that had gone missing were put back. */
  routesRepaired(count?: number): void;
}

/** What the agent feeds and scrapes: AgentMetrics, or DeferredAgentMetrics (prom-client loaded at the first scrape). */
export interface AgentMetricsPort extends AgentMetricsHooks {
  reconciled(r: ReconcileOutcome): void;
  observe(snapshot: AgentScrapeSnapshot): void;
  render(): Promise<MetricsScrape>;
  /** Stops the timers the metrics run (the event-loop sampler); the agent calls it at shutdown. */
  stop(): void;
}

export interface AgentMetricsOptions {
  /** process_* and nodejs_* series (CPU, memory, event loop); default true. */
  readonly processMetrics?: boolean;
  /** The event-loop delay sampler (tests: one on a manual clock); default one on the system clock. */
  readonly eventLoopDelay?: EventLoopDelaySampler;
}

const PEER = ['peer', 'cluster'] as const;

export class AgentMetrics implements AgentMetricsPort {
  readonly registry: Registry;
  readonly stop: () => void;
  private readonly info: Gauge;
  private readonly ready: Gauge;
  private readonly natsConnected: Gauge;
  private readonly registered: Gauge;
  private readonly controlPlaneAnswering: Gauge;
  private readonly gateway: Gauge;
  private readonly relay: Gauge;
  private readonly knownNodes: Gauge;
  private readonly meshRevision: Gauge;
  private readonly watchLive: Gauge;
  private readonly watchSeries: WatchSeries<never>;
  private readonly rangeWatchSeries: WatchSeries<'watch'>;
  private readonly peerUp: Gauge<(typeof PEER)[number]>;
  private readonly handshakeAge: Gauge<(typeof PEER)[number]>;
  private readonly rxBytes: Counter<(typeof PEER)[number]>;
  private readonly txBytes: Counter<(typeof PEER)[number]>;
  private readonly probeRtt: Gauge<(typeof PEER)[number]>;
  private readonly probeLoss: Gauge<(typeof PEER)[number]>;
  private readonly probePackets: Counter<'direction'>;
  private readonly reconcileDuration: Histogram<'result'>;
  private readonly reconciles: Counter<'result'>;
  private readonly applyFailures: Counter;
  private readonly changes: Counter;
  private readonly lastReconcileOk: Gauge;
  private readonly wgRestarts: Counter;
  private readonly routeRepairs: Counter;
  private readonly policyEnforcing: Gauge;
  private readonly policyNft: Gauge;
  private readonly policyBlocks: Gauge;
  private readonly policyVersion: Gauge;
  private readonly policyDroppedPackets: Counter<'rule'>;
  private readonly policyDroppedBytes: Counter<'rule'>;

  constructor(o: AgentMetricsOptions = {}) {
    ({ registry: this.registry, stop: this.stop } = newRegistry({ processMetrics: o.processMetrics ?? true, ...(o.eventLoopDelay ? { eventLoopDelay: o.eventLoopDelay } : {}) }));
    const registers = [this.registry];
    const gauge = <L extends string = string>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> => new Gauge<L>({ name, help, labelNames, registers });
    const counter = <L extends string = string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> => new Counter<L>({ name, help, labelNames, registers });
    this.info = gauge('crosslink_agent_info', 'Always 1; the labels say which node, cluster and version this agent is.', ['version', 'node', 'cluster', 'topology']);
    this.ready = gauge('crosslink_agent_ready', '1 when the agent is ready (registered, KV snapshot loaded, data plane applied), else 0.');
    this.natsConnected = gauge('crosslink_agent_nats_connected', '1 while the NATS connection is up, else 0.');
    this.registered = gauge('crosslink_agent_registered', '1 once the coordinator accepted our registration, else 0.');
    this.controlPlaneAnswering = gauge('crosslink_agent_control_plane_answering', '1 when a heartbeat was acknowledged by the coordinator recently (within the node TTL), else 0.');
    this.gateway = gauge('crosslink_agent_gateway', '1 while this node is its cluster\'s active gateway, else 0 (changes() of it counts gateway failovers).');
    this.relay = gauge('crosslink_agent_relay', '1 while this node relays for NATed peers, else 0.');
    this.knownNodes = gauge('crosslink_agent_known_nodes', 'Nodes in the verified mesh view.');
    this.meshRevision = gauge('crosslink_agent_mesh_revision', 'KV revision of the mesh snapshot the latest reconcile worked from.');
    this.watchLive = gauge('crosslink_agent_watch_live', '1 while the KV watch has delivered its full snapshot and follows changes, else 0.');
    this.watchSeries = new WatchSeries(registers, 'crosslink_agent_watch', 'the KV watch', 'bucket', []);
    this.rangeWatchSeries = new WatchSeries(registers, 'crosslink_agent_range_watch', 'the service or enrollment watch', 'range', ['watch']);
    this.peerUp = gauge('crosslink_agent_peer_up', '1 when the peer answers the agent\'s probes through the tunnel, 0 when down or not concluded yet.', PEER);
    this.handshakeAge = gauge('crosslink_agent_peer_handshake_age_seconds', 'Seconds since the latest WireGuard handshake with the peer (absent: none yet).', PEER);
    this.rxBytes = counter('crosslink_agent_peer_receive_bytes_total', 'Bytes received from the peer through WireGuard (resets when the interface is re-created).', PEER);
    this.txBytes = counter('crosslink_agent_peer_transmit_bytes_total', 'Bytes sent to the peer through WireGuard (resets when the interface is re-created).', PEER);
    this.probeRtt = gauge('crosslink_agent_peer_probe_rtt_seconds', 'Round-trip time of the latest answered probe to the peer (absent: never answered).', PEER);
    this.probeLoss = gauge('crosslink_agent_peer_probe_loss_ratio', 'Lost share (0-1) of the recent probes to the peer (the last 20 by default).', PEER);
    this.probePackets = counter('crosslink_agent_probe_packets_total', 'Probe datagrams: sent (our requests), received (answers to them), answered (peers\' requests we answered).', ['direction']);
    this.reconcileDuration = new Histogram<'result'>({
      name: 'crosslink_agent_reconcile_duration_seconds',
      help: 'Duration of one reconcile (plan + data plane apply).',
      labelNames: ['result'],
      buckets: [...RECONCILE_BUCKETS],
      registers,
    });
    this.reconciles = counter('crosslink_agent_reconciles_total', 'Reconciles run, by result (ok, failed).', ['result']);
    this.applyFailures = counter('crosslink_agent_apply_failures_total', 'Reconciles whose data plane apply failed (partly or wholly); retried on the next request or resync.');
    this.changes = counter('crosslink_agent_dataplane_changes_total', 'Mutating data plane operations (peers, routes, addresses) applied by reconciles.');
    this.lastReconcileOk = gauge('crosslink_agent_last_reconcile_ok', '1 when the latest reconcile succeeded, 0 when it failed.');
    this.wgRestarts = counter('crosslink_agent_wireguard_restarts_total', 'Times the WireGuard interface (wireguard-go) came back empty and was re-applied.');
    this.routeRepairs = counter('crosslink_agent_route_repairs_total', 'Crosslink routes or peers found missing and put back.');
    this.policyEnforcing = gauge('crosslink_agent_policy_enforcing', '1 when the live nftables table is the desired access policy (or no policy is set and none is needed), else 0.');
    this.policyNft = gauge('crosslink_agent_policy_nft_available', '1 when nftables is found and working on this node, else 0.');
    this.policyBlocks = gauge('crosslink_agent_policy_blocks_traffic', '1 when the node refuses overlay traffic because it cannot enforce a required policy.');
    this.policyVersion = gauge('crosslink_agent_policy_version', 'Version of the access policy the live table carries (0: none).');
    this.policyDroppedPackets = counter('crosslink_agent_policy_dropped_packets_total', 'Packets dropped by the access policy, by rule (1-based rule number, or "default").', ['rule']);
    this.policyDroppedBytes = counter('crosslink_agent_policy_dropped_bytes_total', 'Bytes dropped by the access policy, by rule (1-based rule number, or "default").', ['rule']);
    for (const result of ['ok', 'failed']) this.reconciles.labels(result).inc(0);
    this.applyFailures.inc(0);
  }

  reconciled(r: ReconcileOutcome): void {
    const result = r.ok ? 'ok' : 'failed';
    this.reconcileDuration.labels(result).observe(r.durationMs / 1000);
    this.reconciles.labels(result).inc();
    if (!r.ok) this.applyFailures.inc();
    if (r.changes > 0) this.changes.inc(r.changes);
    this.lastReconcileOk.set(r.ok ? 1 : 0);
    if (r.revision > 0) this.meshRevision.set(r.revision);
  }

  /**
   * Takes over what a DeferredAgentMetrics counted before prom-client was loaded, so the series
   * read as if this AgentMetrics had been fed from the start: bucket counts and the sum are exact
   * (each bucket's observations are replayed at their mean, which lies in the same bucket).
   */
  restore(t: EarlyTotals): void {
    for (const result of ['ok', 'failed'] as const) {
      const r = t.reconciles[result];
      if (r.count === 0) continue;
      const histogram = this.reconcileDuration.labels(result);
      r.bucketCounts.forEach((count, i) => {
        const mean = (r.bucketSums[i] ?? 0) / count;
        for (let k = 0; k < count; k++) histogram.observe(mean);
      });
      this.reconciles.labels(result).inc(r.count);
      if (result === 'failed') this.applyFailures.inc(r.count);
    }
    if (t.changes > 0) this.changes.inc(t.changes);
    if (t.lastOk !== null) this.lastReconcileOk.set(t.lastOk ? 1 : 0);
    if (t.revision > 0) this.meshRevision.set(t.revision);
    if (t.wireguardRestarts > 0) this.wgRestarts.inc(t.wireguardRestarts);
    if (t.routeRepairs > 0) this.routeRepairs.inc(t.routeRepairs);
  }

  wireguardRestarted(): void {
    this.wgRestarts.inc();
  }

  routesRepaired(count = 1): void {
    if (count > 0) this.routeRepairs.inc(count);
  }

  /** One status snapshot, the prober's and the watch's counters, pushed at scrape time. Replaces every per-peer and per-rule series. */
  observe({ status, probes, watch, rangeWatches, now }: AgentScrapeSnapshot): void {
    this.info.reset();
    this.info.labels(status.version, status.node.name, status.node.cluster, status.node.topology).set(1);
    this.ready.set(status.ready ? 1 : 0);
    this.natsConnected.set(status.controlPlane.connected ? 1 : 0);
    this.registered.set(status.controlPlane.registered ? 1 : 0);
    this.controlPlaneAnswering.set(status.controlPlane.health?.answering === true ? 1 : 0);
    this.gateway.set(status.node.isGateway ? 1 : 0);
    this.relay.set(status.node.isRelay ? 1 : 0);
    this.knownNodes.set(status.controlPlane.knownNodes);
    this.watchLive.set(watch?.live === true ? 1 : 0);
    this.watchSeries.reset();
    if (watch) this.watchSeries.set({}, watch);
    this.rangeWatchSeries.reset();
    for (const [name, s] of Object.entries(rangeWatches ?? {})) if (s !== undefined) this.rangeWatchSeries.set({ watch: name }, s);
    // Counters that mirror a source's own totals: reset, then set to the source's value. A peer
    // that left disappears; a source that restarted from 0 reads as a counter reset, which
    // Prometheus' rate() handles.
    for (const m of [this.peerUp, this.handshakeAge, this.probeRtt, this.probeLoss]) m.reset();
    for (const m of [this.rxBytes, this.txBytes]) m.reset();
    for (const s of peerSamples(status, now)) {
      const l = { peer: s.peer, cluster: s.cluster };
      this.peerUp.set(l, s.up);
      if (s.handshakeAgeSec !== null) this.handshakeAge.set(l, s.handshakeAgeSec);
      this.rxBytes.inc(l, s.rxBytes);
      this.txBytes.inc(l, s.txBytes);
      if (s.probeRttSec !== null) this.probeRtt.set(l, s.probeRttSec);
      if (s.probeLossRatio !== null) this.probeLoss.set(l, s.probeLossRatio);
    }
    this.probePackets.reset();
    this.probePackets.inc({ direction: 'sent' }, probes.requestsSent);
    this.probePackets.inc({ direction: 'received' }, probes.repliesReceived);
    this.probePackets.inc({ direction: 'answered' }, probes.requestsAnswered);
    const policy = status.policy;
    this.policyEnforcing.set(policy?.enforcing === true || (policy !== undefined && policy.desiredVersion === null && !policy.blocksTraffic) ? 1 : 0);
    this.policyNft.set(policy?.nft === 'available' ? 1 : 0);
    this.policyBlocks.set(policy?.blocksTraffic === true ? 1 : 0);
    this.policyVersion.set(policy?.enforcedVersion ?? 0);
    this.policyDroppedPackets.reset();
    this.policyDroppedBytes.reset();
    for (const d of policyDropSamples(status)) {
      this.policyDroppedPackets.inc({ rule: d.rule }, d.packets);
      this.policyDroppedBytes.inc({ rule: d.rule }, d.bytes);
    }
  }

  render(): Promise<MetricsScrape> {
    return scrape(this.registry);
  }
}
