// The coordinator's Prometheus metrics (prom-client, one Registry per coordinator), served as
// GET /metrics on its health listener (--health-addr; coordinator/health-server.ts). Fed by data
// pushed in by the owners: the request handlers count registrations and heartbeats by result, the
// registry counts node removals by reason, and at scrape time the coordinator pushes one snapshot
// (leader, NATS connected, live nodes, the bucket's revision; agents report how far
// their own KV watch is behind it: crosslink_agent_watch_lag_revisions). Names: docs/metrics.md.
import { Counter, Gauge, type Registry } from 'prom-client';
import { newRegistry, scrape, type MetricsScrape } from '../lib/metrics.ts';
import type { EventLoopDelaySampler } from '../lib/event-loop-delay.ts';
import type { HeartbeatForm } from '../protocol/validate-registration.ts';
import type { MacKeyKind } from '../protocol/heartbeat-mac.ts';
import { WATCH_REQUEST_AUTH_OUTCOMES, type WatchRequestAuthOutcome } from '../protocol/watch-request-mac.ts';
import { REQUEST_MAX_BYTES, type RequestKind } from '../protocol/request-size.ts';

/** Why a node record was removed (coordinator/registry.ts). */
export type RemovalReason = 'expired' | 'deregistered' | 'revoked' | 'unenrolled';

/** The counters the request handlers and the registry call. Result: 'ok' or the error code of the reply. */
export interface CoordinatorMetricsHooks {
  registration(result: string): void;
  /** 'follower' for heartbeats a follower only records (it does not answer). */
  heartbeat(result: string): void;
  /** A fresh heartbeat (MAC or signature held, within the skew, of the current epoch, past the replay mark), by form. */
  heartbeatForm(form: HeartbeatForm): void;
  /** A heartbeat MAC key agreed (~0.1–0.2 ms), for a node's identity key or one this replica does not know. */
  heartbeatMacAgreement(kind: MacKeyKind): void;
  nodeRemoved(reason: RemovalReason): void;
  /** A request refused unread for its size (protocol/request-size.ts), by kind (optional: fakes may leave it out). */
  requestTooLarge?(kind: RequestKind): void;
  /** A watch-broker request, by whose budget it drew from and why (protocol/watch-request-mac.ts; optional: fakes may leave it out). */
  watchRequestAuth?(outcome: WatchRequestAuthOutcome): void;
}

/** What the coordinator knows at scrape time. */
export interface CoordinatorSnapshot {
  readonly leader: boolean;
  readonly natsConnected: boolean;
  /** Live nodes in the leader's registry; null on a follower (it holds none). */
  readonly nodes: number | null;
  /** Last sequence of the KV bucket's stream (null: could not be read). */
  readonly kvRevision: number | null;
}

export interface CoordinatorMetricsOptions {
  readonly processMetrics?: boolean;
  /** The event-loop delay sampler (tests: one on a manual clock); default one on the system clock. */
  readonly eventLoopDelay?: EventLoopDelaySampler;
}

/** Every result a reply can carry (protocol/messages.ts ErrorBody codes), pre-created at 0 so rate() works from the first scrape. */
const RESULTS = ['ok', 'invalid', 'conflict', 'unauthorized', 'unavailable', 'internal', 'unknown-node', 'stale', 'rate-limited', 'stale-epoch', 'epoch-required'] as const;
const REASONS: readonly RemovalReason[] = ['expired', 'deregistered', 'revoked', 'unenrolled'];
const FORMS: readonly HeartbeatForm[] = ['mac', 'signed'];
const KEY_KINDS: readonly MacKeyKind[] = ['node', 'unknown'];

export class CoordinatorMetrics implements CoordinatorMetricsHooks {
  readonly registry: Registry;
  /** Stops the timers the metrics run (the event-loop sampler); the coordinator's main calls it at exit. */
  readonly stop: () => void;
  private readonly registrations: Counter<'result'>;
  private readonly heartbeats: Counter<'result'>;
  private readonly heartbeatForms: Counter<'form'>;
  private readonly macAgreements: Counter<'key'>;
  private readonly removals: Counter<'reason'>;
  private readonly tooLarge: Counter<'kind'>;
  private readonly watchAuth: Counter<'budget'>;
  private readonly leader: Gauge;
  private readonly natsConnected: Gauge;
  private readonly nodes: Gauge;
  private readonly kvRevision: Gauge;
  /** The labelled children by result, resolved once: counting a heartbeat is one Map lookup, not prom-client's label hashing. */
  private readonly heartbeatByResult = new Map<string, Counter.Internal>();
  private readonly registrationByResult = new Map<string, Counter.Internal>();
  private readonly heartbeatByForm = new Map<HeartbeatForm, Counter.Internal>();
  private readonly agreementByKind = new Map<MacKeyKind, Counter.Internal>();

  constructor(o: CoordinatorMetricsOptions = {}) {
    ({ registry: this.registry, stop: this.stop } = newRegistry({ processMetrics: o.processMetrics ?? true, ...(o.eventLoopDelay ? { eventLoopDelay: o.eventLoopDelay } : {}) }));
    const registers = [this.registry];
    this.registrations = new Counter({ name: 'crosslink_coordinator_registrations_total', help: 'Registration requests answered, by result (ok or the error code).', labelNames: ['result'], registers });
    this.heartbeats = new Counter({ name: 'crosslink_coordinator_heartbeats_total', help: 'Heartbeats received, by result (ok, the error code, or follower: recorded but not answered).', labelNames: ['result'], registers });
    this.heartbeatForms = new Counter({ name: 'crosslink_coordinator_heartbeat_forms_total', help: 'Fresh heartbeats by form (mac: HMAC with the agreed key; signed: Ed25519, an agent that fell back or predates MACs): their MAC or signature held, sentAt within the clock skew, the current epoch, past the node\'s replay mark; counted before the registry\'s answer (which may still refuse, e.g. unknown-node). Forgeries and replays count in neither. Every replica counts what it receives (followers see every heartbeat too): sum over replicas counts each heartbeat once per replica.', labelNames: ['form'], registers });
    this.macAgreements = new Counter({ name: 'crosslink_coordinator_heartbeat_mac_agreements_total', help: 'Heartbeat MAC keys agreed (X25519 + HKDF, ~0.1-0.2 ms each), by key: node (an identity key this replica knows is the named node\'s; about once per node) or unknown (any other key: a node this replica holds no record of yet, or made-up keys, a flood shows here).', labelNames: ['key'], registers });
    this.removals = new Counter({ name: 'crosslink_coordinator_node_removals_total', help: 'Node records removed, by reason (expired: TTL without heartbeats; deregistered; revoked; unenrolled).', labelNames: ['reason'], registers });
    this.tooLarge = new Counter({ name: 'crosslink_coordinator_requests_too_large_total', help: 'Requests refused unread because they were over their subject\'s byte limit (REQUEST_MAX_BYTES), by kind (heartbeats count in crosslink_coordinator_heartbeats_total{result="invalid"}). Honest agents never send one: a steady rate is a misconfigured or hostile client.', labelNames: ['kind'], registers });
    this.watchAuth = new Counter({ name: 'crosslink_coordinator_watch_requests_total', help: 'Watch-broker requests (watch, count, catch-up) by budget: node (MAC\'d by a node this replica knows: its own budget), else the shared budget: unsigned (no MAC headers: an older agent or a tool), unknown-node, bad-mac, stale (sentAt outside the clock skew). A steady bad-mac or unknown-node rate is a flood.', labelNames: ['budget'], registers });
    for (const k of WATCH_REQUEST_AUTH_OUTCOMES) this.watchAuth.labels(k).inc(0);
    this.leader = new Gauge({ name: 'crosslink_coordinator_leader', help: '1 while this replica holds the leader lease and serves registrations, else 0.', registers });
    this.natsConnected = new Gauge({ name: 'crosslink_coordinator_nats_connected', help: '1 while the NATS connection is up, else 0.', registers });
    this.nodes = new Gauge({ name: 'crosslink_coordinator_nodes', help: 'Live nodes in the registry (leader only).', registers });
    this.kvRevision = new Gauge({ name: 'crosslink_coordinator_kv_revision', help: 'Last revision (stream sequence) of the KV bucket.', registers });
    for (const r of [...RESULTS, 'other']) {
      this.registrationByResult.set(r, this.registrations.labels(r));
      this.heartbeatByResult.set(r, this.heartbeats.labels(r));
    }
    this.heartbeatByResult.set('follower', this.heartbeats.labels('follower'));
    for (const r of [...RESULTS, 'follower']) this.heartbeatByResult.get(r)?.inc(0);
    for (const r of RESULTS) this.registrationByResult.get(r)?.inc(0);
    for (const r of REASONS) this.removals.labels(r).inc(0);
    for (const k of Object.keys(REQUEST_MAX_BYTES)) if (k !== 'heartbeat') this.tooLarge.labels(k).inc(0);
    for (const f of FORMS) {
      this.heartbeatByForm.set(f, this.heartbeatForms.labels(f));
      this.heartbeatByForm.get(f)?.inc(0);
    }
    for (const k of KEY_KINDS) {
      this.agreementByKind.set(k, this.macAgreements.labels(k));
      this.agreementByKind.get(k)?.inc(0);
    }
  }

  registration(result: string): void {
    (this.registrationByResult.get(result) ?? this.registrations.labels('other')).inc();
  }

  /** Keeps the label set bounded: an unexpected code is counted as 'other'. */
  heartbeat(result: string): void {
    (this.heartbeatByResult.get(result) ?? this.heartbeats.labels('other')).inc();
  }

  heartbeatForm(form: HeartbeatForm): void {
    this.heartbeatByForm.get(form)?.inc();
  }

  heartbeatMacAgreement(kind: MacKeyKind): void {
    this.agreementByKind.get(kind)?.inc();
  }

  nodeRemoved(reason: RemovalReason): void {
    this.removals.labels(reason).inc();
  }

  watchRequestAuth(outcome: WatchRequestAuthOutcome): void {
    this.watchAuth.labels(outcome).inc();
  }

  requestTooLarge(kind: RequestKind): void {
    this.tooLarge.labels(kind).inc();
  }

  observe(s: CoordinatorSnapshot): void {
    this.leader.set(s.leader ? 1 : 0);
    this.natsConnected.set(s.natsConnected ? 1 : 0);
    this.nodes.reset();
    if (s.nodes !== null) this.nodes.set(s.nodes);
    this.kvRevision.reset();
    if (s.kvRevision !== null) this.kvRevision.set(s.kvRevision);
  }

  render(): Promise<MetricsScrape> {
    return scrape(this.registry);
  }
}
