// The leader's registry: node records, cluster records, the IPAM table and the revocations, rebuilt
// from the bucket when a term starts and kept in step with the leader's own (CAS) writes (and, for
// revocations, a watch). Handles registration, heartbeat replies, deregistration, revocation,
// expiry and cluster/gateway maintenance. One instance per leadership term; once ended it writes nothing.
import type { CoordinatorMetricsHooks } from './metrics.ts';
import type { Clock } from '../lib/clock.ts';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import {
  Deregister,
  RegistrationRequest,
  type ClusterDefinition,
  type ClusterRecord,
  type DeregisterReply,
  type ErrorBody,
  type Heartbeat,
  type HeartbeatReply,
  type NodeRecord,
  type RegisterReply,
  type RequestEnvelope,
  type Revocation,
} from '../protocol/messages.ts';
import { admitToCluster } from '../protocol/admission.ts';
import { DefinitionTable } from './definitions.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { checkSentAt, openSignedRequest, validateRegistration, type Checked, type RegistrationPolicy } from '../protocol/validate-registration.ts';
import { decideCluster } from './clusters.ts';
import { REFUSAL_LOG_INTERVAL_MS, heartbeatIntervalMs, type CoordinatorConfig } from './config.ts';
import { AddressIndex, decideOverlayIp, type IpamDecision, type IpamEntry } from './ipam.ts';
import { KeyedMutex } from './keyed-mutex.ts';
import { IpamTable, NodeTable } from './registry-index.ts';
import type { Liveness } from './liveness.ts';
import { RevocationTable, revocationError } from './revocations.ts';
import { isCasConflict, type SignedNode, type Snapshot, type StateStore, type StoredIpam, type StoredRecord } from './store.ts';
import { nextTurn, type Schedule } from './deferred-events.ts';
import { jsonEqual } from '../lib/json-equal.ts';
import { isJetStreamUnavailable } from '../lib/jetstream-retry.ts';
import { RateLimitedLog } from '../lib/rate-limited-log.ts';
import { RegistrationRateLimit } from './rate-limit.ts';
import { nodeLimitRefusal } from './cluster-limits.ts';
import { NO_CLAIM, SlotClaims, type SlotClaim } from './slot-claims.ts';
import { BindingTable, aliveBinding, bindingRefusal, boundBinding, releasedBinding, staleRefusal, type IdentityBinding, type ReleaseCause } from './bindings.ts';
import type { EventPublisher } from '../protocol/events.ts';
import { gatewayChangedEvent, nodeJoinedEvent, nodeRemovedEvent } from './events.ts';

/** The registry's term is over (lease lost or stopping); the caller replies "unavailable". */
export class NotLeaderError extends CrosslinkError {
  override name = 'NotLeaderError';
}

export interface RegistryDeps {
  readonly store: StateStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly config: CoordinatorConfig;
  readonly liveness: Liveness;
  /** Whether our leader lease is still certainly valid. */
  readonly holdsLease: () => boolean;
  /** Counters (coordinator/metrics.ts); absent: not counted. */
  readonly metrics?: CoordinatorMetricsHooks | undefined;
  /** Joins, removals and gateway changes are published here (default: none). */
  readonly events?: EventPublisher;
  /** A follower's warm copy of the bucket (warm-snapshot.ts), if it has one current: load() then reads nothing. */
  readonly preloaded?: (() => Promise<Snapshot | undefined>) | undefined;
  /** Runs work on the next turn of the event loop (default setImmediate): signing a node record while its ipam entry and binding are in flight. */
  readonly nextTurn?: Schedule;
  /** Bucket reads confirming a refused registration's cluster definition, per second and at once: DEFINITION_READ_DEFAULTS. */
  readonly definitionReadRate?: { readonly ratePerSecond: number; readonly burst: number } | undefined;
}

/**
 * Per term: direct reads of a cluster definition that confirm an `unauthorized` admission (the watch
 * may not have delivered a `cluster add` or `rotate-credential` yet). Each is a bucket round trip
 * that anyone with an agent NATS user could otherwise cause at will (a made-up cluster, a wrong join
 * signature); honest use is a few agents started right after an operator's change, and they retry.
 * Past the budget the refusal stands without a read (docs/security-review.md).
 */
export const DEFINITION_READ_DEFAULTS = Object.freeze({ ratePerSecond: 10, burst: 50 });

const CAS_ATTEMPTS = 4;

/** The overlay address a registration gets, and whether the identity binding was written alongside its ipam entry. */
interface Allocated {
  readonly ip: string;
  readonly bound: boolean;
}

/** What a compare-and-set retry re-reads: one node (and the ipam table) or one cluster record. */
type CasSubject = { readonly node: string } | { readonly cluster: string };

const fail = (code: ErrorBody['code'], message: string, field?: string): { ok: false; error: ErrorBody } => ({
  ok: false,
  error: field === undefined ? { code, message } : { code, field, message },
});

export class Registry {
  /** Who holds which overlay address (ipam entries and live records); kept by the two tables below. */
  private readonly addresses: AddressIndex;
  /** Live node records, indexed (WireGuard key, pod CIDRs, cluster, address) so a registration is O(1) in N. */
  private readonly nodes: NodeTable;
  private readonly clusters = new Map<string, StoredRecord<ClusterRecord>>();
  /** Numbering of clusters deleted this term, so a re-created record keeps counting upwards. */
  private unhealthyGateways: ReadonlySet<string> = new Set();
  private readonly retiredClusters = new Map<string, Pick<ClusterRecord, 'generation' | 'gatewayEpoch'>>();
  private readonly ipam: IpamTable;
  private readonly revocations = new RevocationTable();
  private readonly definitions = new DefinitionTable();
  /** Name bindings and replay marks per identity key (bindings.ts), mirrored from the bucket. */
  private readonly bindings = new BindingTable();
  private readonly locks = new KeyedMutex();
  /** Names whose registration is in flight: their ipam entry may be fresh while no record exists yet (never a reclaim victim). */
  private readonly registering = new Set<string>();
  /** Slots claimed under the clusters' node limits by registrations in flight. */
  private readonly nodeSlots = new SlotClaims();
  private readonly rateLimit: RegistrationRateLimit;
  /** Budget of confirming definition reads (DEFINITION_READ_DEFAULTS), one bucket for every cluster name. */
  private readonly definitionReads: RegistrationRateLimit;
  private readonly throttledLog: RateLimitedLog;
  private readonly policy: RegistrationPolicy;
  private readonly schedule: Schedule;
  private active = true;

  private constructor(private readonly deps: RegistryDeps) {
    this.addresses = new AddressIndex(deps.config.overlayCidr);
    this.nodes = new NodeTable(this.addresses);
    this.schedule = deps.nextTurn ?? nextTurn;
    this.ipam = new IpamTable(this.addresses);
    this.rateLimit = new RegistrationRateLimit(deps.config.registrationRate, deps.config.registrationBurst);
    const reads = deps.definitionReadRate ?? DEFINITION_READ_DEFAULTS;
    this.definitionReads = new RegistrationRateLimit(reads.ratePerSecond, reads.burst);
    this.throttledLog = new RateLimitedLog(deps.logger, deps.clock, REFUSAL_LOG_INTERVAL_MS);
    this.policy = {
      overlay: deps.config.overlayCidr,
      minPodCidrPrefixV4: deps.config.minPodCidrPrefixV4,
      minPodCidrPrefixV6: deps.config.minPodCidrPrefixV6,
      maxClockSkewMs: deps.config.maxClockSkewMs,
    };
  }

  /** Rebuilds state from the bucket; every existing node gets one TTL of grace. */
  static async load(deps: RegistryDeps): Promise<Registry> {
    const r = new Registry(deps);
    const warm = await deps.preloaded?.();
    const snap = warm ?? (await deps.store.loadSnapshot());
    for (const [k, v] of snap.nodes) r.nodes.set(k, v);
    for (const [k, v] of snap.clusters) r.clusters.set(k, v);
    for (const [k, v] of snap.ipam) r.ipam.set(k, v);
    for (const [k, v] of snap.revocations) r.revocations.apply(k, v.value, v.revision);
    for (const [k, v] of snap.definitions) r.definitions.apply(k, v.value, v.revision);
    for (const v of snap.bindings.values()) r.bindings.set(v.value, v.revision);
    deps.liveness.retainMatching([...r.nodes].map(([name, rec]) => [name, rec.value.identityKey] as const));
    deps.liveness.graceAll(r.nodes.keys(), deps.clock.now());
    deps.logger.info(
      { nodes: r.nodes.size, clusters: r.clusters.size, ipam: r.ipam.size, revocations: r.revocations.size, enrolledClusters: r.definitions.size, bindings: r.bindings.size, from: warm ? 'warm copy' : 'bucket read' },
      'state loaded from the bucket',
    );
    await r.resignForeignRecords(snap.revocations);
    // The operator's CLI deletes a revoked node's record itself, but it may have been interrupted, or
    // a registration may have slipped in before the previous leader saw the revocation.
    await r.removeRevokedNodes();
    await r.removeUnenrolledNodes();
    await r.reconcileAllClusters();
    return r;
  }

  /** Ends the term: from now on nothing is written. Waits for in-flight work. */
  async end(): Promise<void> {
    this.active = false;
    await this.locks.idle();
  }

  get isActive(): boolean {
    return this.active;
  }

  /** Names of live nodes (for tests and logs). */
  liveNodeNames(): string[] {
    return [...this.nodes.keys()].sort();
  }

  /** A live node's record (service export admission). */
  liveNode(name: string): NodeRecord | undefined {
    return this.nodes.get(name)?.value;
  }

  /** The pod ranges `cluster` was enrolled with (service export admission); none if not enrolled. */
  enrolledPodRanges(cluster: string): readonly string[] {
    return this.definitions.get(cluster)?.podCidrs ?? [];
  }

  /** The cluster's service export limit (`maxExports` of its definition); undefined: none. */
  exportLimit(cluster: string): number | undefined {
    return this.definitions.get(cluster)?.maxExports;
  }

  /** The live members of a cluster. */
  clusterMembers(cluster: string): NodeRecord[] {
    return this.nodes.members(cluster);
  }

  /** Grants every live node a fresh TTL (after a NATS outage heartbeats could not arrive). */
  graceAll(): void {
    this.deps.liveness.graceAll(this.nodes.keys(), this.deps.clock.now());
  }

  private assertWritable(): void {
    if (!this.active || !this.deps.holdsLease()) throw new NotLeaderError('not the leader (lease lost or stopping)');
  }

  // ---- registration ------------------------------------------------------------------------

  async register(raw: Uint8Array): Promise<RegisterReply> {
    const opened = await openSignedRequest(raw, RegistrationRequest);
    if (!opened.ok) return this.rejected('registration', undefined, opened.error);
    const admitted = await this.admit(opened.value, opened.envelope);
    if (!admitted.ok) return this.rejected('registration', opened.value.name, admitted.error);
    const req = admitted.value;
    // Counted only once the join credential verified: nobody else can spend a cluster's budget.
    const rate = this.rateLimit.take(req.cluster, this.deps.clock.now());
    if (!rate.ok) {
      const { registrationRate, registrationBurst } = this.deps.config;
      this.throttledLog.warn(`rate-limited:${req.cluster}`, { cluster: req.cluster, node: req.name, perSecond: registrationRate, burst: registrationBurst }, 'registrations rate-limited');
      return {
        ok: false,
        error: {
          code: 'rate-limited',
          field: 'cluster',
          message: `cluster "${req.cluster}" is over its registration rate limit (${registrationRate}/s, burst ${registrationBurst}); retry in ${rate.retryAfterMs} ms`,
        },
      };
    }
    try {
      return await this.locks.run(`node:${req.name}`, async () => {
        const slot = this.claimNodeSlot(req);
        if (!slot.ok) return this.rejected('registration', req.name, nodeLimitRefusal(req.cluster, slot));
        this.registering.add(req.name);
        try {
          return await this.withCasRetry((attempt) => this.registerLocked(req, attempt > 1), { node: req.name });
        } finally {
          this.registering.delete(req.name);
          slot.release();
        }
      });
    } catch (err) {
      return this.rejected('registration', req.name, this.errorBody(err));
    }
  }

  /**
   * A slot under the cluster's node limit (`maxNodes` of its definition) for a node that is not one
   * of its live members; a live member re-registering (an agent restart) needs none. Taken under the
   * node's lock and held until its registration is stored or refused, so registrations of other names
   * racing for the last slot cannot both get in (slot-claims.ts). The count is the cluster index's.
   */
  private claimNodeSlot(req: RegistrationRequest): SlotClaim {
    const limit = this.definitions.get(req.cluster)?.maxNodes;
    if (limit === undefined || this.nodes.get(req.name)?.value.cluster === req.cluster) return NO_CLAIM;
    return this.nodeSlots.claim(req.cluster, req.name, limit, this.nodes.memberCount(req.cluster), (n) => this.nodes.get(n)?.value.cluster === req.cluster);
  }

  /**
   * Cluster admission (protocol/admission.ts) against the enrolled definitions; the request comes
   * back with the cluster's topology. A refusal is confirmed with a direct read of the definition
   * first, so an agent started right after `cluster add` is not refused while our watch catches up —
   * within a budget (DEFINITION_READ_DEFAULTS): unauthenticated requests must not buy bucket reads.
   */
  private async admit(req: RegistrationRequest, envelope: RequestEnvelope): Promise<Checked<RegistrationRequest>> {
    const attempt = () =>
      admitToCluster({ request: req, payload: envelope.payload, joinSig: envelope.joinSig, definition: this.definitions.get(req.cluster), definitions: this.definitions.values() });
    let result = await attempt();
    if (!result.ok && result.error.code === 'unauthorized' && this.definitionReads.take('definitions', this.deps.clock.now()).ok) {
      const fresh = await this.deps.store.readDefinition(req.cluster);
      if (fresh) this.definitions.apply(req.cluster, fresh.value, fresh.revision);
      result = await attempt();
    }
    if (!result.ok) return result;
    if (req.topology !== result.value) this.deps.logger.debug({ node: req.name, asked: req.topology, enrolled: result.value }, 'node topology flag ignored: the cluster definition decides');
    return { ok: true, value: { ...req, topology: result.value } };
  }

  /** Applies an enrollment change seen in the bucket (`stored` null: the cluster was removed, and so are its live nodes). */
  async applyDefinition(name: string, stored: StoredRecord<ClusterDefinition> | null, revision: number): Promise<void> {
    const before = this.definitions.get(name);
    if (!this.definitions.apply(name, stored?.value ?? null, revision)) return;
    if (stored) {
      if (before?.joinKey !== stored.value.joinKey) this.deps.logger.info({ cluster: name, credentialGeneration: stored.value.credentialGeneration }, before ? 'cluster join credential rotated' : 'cluster enrolled');
      return;
    }
    if (!before) return;
    this.deps.logger.warn({ cluster: name }, 'cluster enrollment removed; removing its live nodes');
    await this.removeUnenrolledNodes();
  }

  /** Removes live nodes whose cluster is no longer enrolled (cluster remove); retried on every expiry round. */
  private async removeUnenrolledNodes(): Promise<void> {
    const names = [...this.nodes].filter(([, rec]) => this.definitions.get(rec.value.cluster) === undefined).map(([n]) => n);
    for (const name of names.sort()) {
      try {
        await this.locks.run(`node:${name}`, () =>
          this.withCasRetry(async () => {
            const rec = this.nodes.get(name);
            if (rec && this.definitions.get(rec.value.cluster) === undefined) await this.removeNode(name, 'unenrolled');
          }, { node: name }),
        );
      } catch (err) {
        if (!(err instanceof NotLeaderError)) this.deps.logger.warn({ node: name, err: errorMessage(err) }, 'could not remove a node of a removed cluster; will retry');
      }
    }
  }

  /** `retrying`: a CAS-conflict retry of the same request, whose first attempt may already have stored its binding. */
  private async registerLocked(req: RegistrationRequest, retrying = false): Promise<RegisterReply> {
    const revoked = this.revocations.forRegistration(req);
    if (revoked) return this.rejected('registration', req.name, revocationError(revoked));
    const now = this.deps.clock.now();
    const bound = await this.bindingRefusal(req);
    if (bound && !(retrying && bound.code === 'stale' && this.ownBindingOf(req))) return this.rejected('registration', req.name, bound);
    const own = this.nodes.get(req.name);
    const restated = own?.signedByUs ? restatedRecord(req, own.value) : undefined;
    const checked = validateRegistration(req, this.policy, {
      now,
      // Only the nodes it could conflict with (indexed lookups, not a scan of every node); a node
      // restating its own live record cannot conflict with another at all.
      liveNodes: restated ? [restated] : this.nodes.candidatesFor(req),
    });
    if (!checked.ok) return this.rejected('registration', req.name, checked.error);
    const r = checked.value;
    this.assertWritable();

    // The name binding and the replay mark go out together with the ipam entry (one round trip, not
    // two), and both before the node record: once they are stored, the request cannot be replayed.
    const bind = (): Promise<void> => this.putBinding(boundBinding(r, this.bindings.ofKey(r.identityKey)?.value, now));
    // While those two writes are in flight the node record is built and signed (signedAhead), so its
    // write leaves as soon as both are stored; it is still only written after them.
    let ahead: SignedNode | undefined;
    const signAhead = (address: string): void => {
      ahead = this.signedAhead(r, address, now);
    };
    const ip = await this.ensureOverlayIp(r, now, restated, bind, signAhead);
    if (!ip.ok) return this.rejected('registration', r.name, ip.error);
    if (!ip.value.bound) await bind();
    const existing = this.nodes.get(r.name);
    const material = nodeMaterial(r, ip.value.ip);
    if (existing && sameMaterial(existing.value, material) && existing.signedByUs) {
      // Unchanged (e.g. an agent restart): no record write, no churn for watchers; just a sign of life.
      this.deps.liveness.touch(r.name, now, r.identityKey);
      this.deps.logger.debug({ node: r.name }, 'registration unchanged');
      return this.accepted(existing);
    }
    const record = this.recordFor(material, existing?.value, now);
    this.assertWritable();
    // The record signed ahead only if it is exactly this one (the same inputs: nothing changed meanwhile).
    const signed = ahead !== undefined && jsonEqual(ahead.record, record) ? ahead : record;
    const stored = await this.deps.store.putNode(signed, existing?.revision);
    this.nodes.set(r.name, stored);
    this.deps.liveness.touch(r.name, now, r.identityKey);
    this.deps.logger.info(
      {
        node: r.name,
        cluster: r.cluster,
        overlayIp: record.overlayIp,
        generation: record.generation,
        endpoints: record.endpoints,
        podCidrs: record.podCidrs,
        change: existing ? changedFields(existing.value, material) : 'new',
      },
      existing ? 'node re-registered with changes' : 'node registered',
    );
    if (!existing) this.deps.events?.publish(nodeJoinedEvent(record));
    if (existing && existing.value.cluster !== r.cluster) await this.reconcileCluster(existing.value.cluster);
    await this.reconcileCluster(r.cluster);
    return this.accepted(stored);
  }

  /** The record a registration stores: the material, the next generation, the first registration time. */
  private recordFor(material: NodeMaterial, existing: NodeRecord | undefined, now: number): NodeRecord {
    const previousGeneration = Math.max(existing?.generation ?? 0, this.ipam.get(material.name)?.value.generation ?? 0);
    return nodeRecordOf(material, previousGeneration + 1, existing?.registeredAt ?? now, now);
  }

  /**
   * The record registerLocked will store once the ipam entry (with `address`) and the binding are
   * stored, signed now, while they are in flight. Undefined when there will be no record write (the
   * live record already says this) or signing fails (registerLocked signs again and reports it).
   */
  private signedAhead(r: RegistrationRequest, address: string, now: number): SignedNode | undefined {
    const existing = this.nodes.get(r.name);
    const material = nodeMaterial(r, address);
    if (existing && sameMaterial(existing.value, material) && existing.signedByUs) return undefined;
    try {
      return this.deps.store.signNode(this.recordFor(material, existing?.value, now));
    } catch {
      return undefined;
    }
  }

  /**
   * Finds (or keeps) the node's overlay address and makes sure the ipam entry says so. When the entry
   * has to be written, `alongside` (the identity binding) is written concurrently with it — both
   * publishes leave in one socket write and the registration waits one round trip instead of two;
   * `bound` says whether it ran — and `meanwhile(address)` runs on the next turn of the event loop,
   * after both have left and (normally) before their acknowledgements are read. Nothing is written
   * when the address cannot be had (pool exhausted).
   */
  private ensureOverlayIp(
    r: RegistrationRequest,
    now: number,
    restated: NodeRecord | undefined,
    alongside: () => Promise<void>,
    meanwhile: (address: string) => void,
  ): Promise<Checked<Allocated>> {
    const own = this.ipam.get(r.name);
    // The address the node's live record already has, and its ipam entry agrees: keep it without
    // scanning the whole table (the scan is for new and returning nodes).
    const agreed = own?.value.releasedAt === undefined && own?.value.identityKey === r.identityKey && own.value.ip === restated?.overlayIp;
    if (agreed && this.addresses.usable(own.value.ip) !== undefined) return Promise.resolve({ ok: true, value: { ip: own.value.ip, bound: false } });
    const decision = this.decideAddress(r.name, own);
    // Taking over another name's address (the pool is full) deletes that entry first: one such
    // reclaim at a time, decided again under the lock, so two registrations cannot pick one victim.
    if (decision.kind === 'reclaim') {
      return this.locks.run('ipam', () => {
        const current = this.ipam.get(r.name);
        return this.allocate(r, now, current, this.decideAddress(r.name, current), alongside, meanwhile);
      });
    }
    return this.allocate(r, now, own, decision, alongside, meanwhile);
  }

  /** The address decision (coordinator/ipam.ts); names registering right now are never reclaim victims. */
  private decideAddress(name: string, own: StoredIpam | undefined): IpamDecision {
    return decideOverlayIp({
      name,
      own: own?.value,
      addresses: this.addresses,
      released: () => this.ipam.released((n) => this.nodes.has(n) || this.registering.has(n)),
    });
  }

  /**
   * Writes the ipam entry `decision` calls for. Called synchronously after the decision: the address
   * is held in the index from then until the entry is stored, so concurrent registrations neither
   * wait for each other's round trip (no table-wide lock) nor pick the same address.
   */
  private async allocate(
    r: RegistrationRequest,
    now: number,
    own: StoredIpam | undefined,
    decision: IpamDecision,
    alongside: () => Promise<void>,
    meanwhile: (address: string) => void,
  ): Promise<Checked<Allocated>> {
    if (decision.kind === 'exhausted') return fail('unavailable', decision.message, 'overlayIp');
    if (decision.kind === 'keep' && own && own.value.releasedAt === undefined && own.value.identityKey === r.identityKey) {
      return { ok: true, value: { ip: decision.ip, bound: false } };
    }
    this.assertWritable();
    this.addresses.hold(decision.ip, r.name);
    try {
      if (decision.kind === 'reclaim') {
        const victim = this.ipam.get(decision.from);
        if (victim) {
          await this.deps.store.delete(kvKeys.ipam(decision.from), victim.revision);
          this.ipam.delete(decision.from);
        }
        this.deps.logger.warn({ node: r.name, ip: decision.ip, from: decision.from }, 'overlay range full: reclaimed the address of the longest-gone node');
      }
      if (own && own.value.identityKey !== r.identityKey) {
        this.deps.logger.warn({ node: r.name }, 'a new identity key took over the name of an expired node');
      }
      const entry: IpamEntry = {
        v: 1,
        ip: decision.ip,
        identityKey: r.identityKey,
        generation: own?.value.generation ?? 0,
        updatedAt: now,
      };
      // Settled, not Promise.all: a failed write must not leave the other one running unobserved
      // (a CAS retry re-runs the whole registration).
      const writes = Promise.allSettled([this.deps.store.putIpam(r.name, entry, own?.revision), alongside()]);
      this.schedule(() => meanwhile(decision.ip));
      const [ipam, bound] = await writes;
      if (ipam.status === 'fulfilled') this.ipam.set(r.name, ipam.value);
      if (ipam.status === 'rejected') throw ipam.reason;
      if (bound.status === 'rejected') throw bound.reason;
      return { ok: true, value: { ip: decision.ip, bound: true } };
    } finally {
      this.addresses.release(decision.ip, r.name);
    }
  }

  // ---- heartbeats and deregistration -------------------------------------------------------

  /** Answers a verified heartbeat (the caller has checked signature and clock skew). */
  heartbeat(hb: Heartbeat): HeartbeatReply {
    const refused = this.heartbeatRefusal(hb);
    if (refused) return refused;
    const binding = this.bindings.ofKey(hb.identityKey)?.value;
    const now = this.deps.clock.now();
    this.deps.liveness.touch(hb.name, now, hb.identityKey);
    if (binding && binding.aliveAt === undefined && binding.releasedAt === undefined) void this.markAlive(hb.name, hb.identityKey, now);
    return { ok: true };
  }

  /**
   * A verified heartbeat that arrived while our lease lapsed (nothing may be written; the agent is
   * answered "unavailable"): recorded as the node's sign of life if heartbeat() would take it, so a
   * node heard during a lapse the term survives does not expire by a TTL counted from before the
   * lapse. Writes nothing (a first heartbeat's binding mark waits for an answered one). True: recorded.
   */
  noteAlive(hb: Heartbeat): boolean {
    if (this.heartbeatRefusal(hb)) return false;
    this.deps.liveness.touch(hb.name, this.deps.clock.now(), hb.identityKey);
    return true;
  }

  /** Why a verified heartbeat is not the node's sign of life (revoked, not registered, another key, older than its registration); undefined: it is. */
  private heartbeatRefusal(hb: Heartbeat): { ok: false; error: ErrorBody } | undefined {
    // Before the unknown-node check: that answer would make the agent re-register in a loop.
    const revoked = this.revocations.forHeartbeat(hb.name, hb.identityKey);
    if (revoked) return { ok: false, error: revocationError(revoked) };
    const rec = this.nodes.get(hb.name);
    if (!rec) {
      return fail('unknown-node', `node "${hb.name}" is not registered (expired or removed); register again`, 'name');
    }
    if (rec.value.identityKey !== hb.identityKey) {
      return fail('unauthorized', `identityKey: ${JSON.stringify(hb.identityKey)} does not match the identity key of node "${hb.name}"`, 'identityKey');
    }
    const binding = this.bindings.ofKey(hb.identityKey)?.value;
    // A heartbeat captured before the node's last registration (say, replayed after every replica restarted).
    if (binding && hb.sentAt < binding.lastSentAt) return { ok: false, error: staleRefusal(hb.sentAt, binding.lastSentAt) };
    return undefined;
  }

  /** Records that the node came alive (its first heartbeat after registering): it keeps its allocation. */
  private async markAlive(name: string, identityKey: string, at: number): Promise<void> {
    try {
      await this.locks.run(`node:${name}`, async () => {
        const b = this.bindings.ofKey(identityKey)?.value;
        if (!b || b.aliveAt !== undefined || b.releasedAt !== undefined || b.name !== name) return;
        await this.putBinding(aliveBinding(b, at));
      });
    } catch (err) {
      if (!(err instanceof NotLeaderError)) this.deps.logger.debug({ node: name, err: errorMessage(err) }, 'could not record that the node came alive; the next heartbeat retries');
    }
  }

  /**
   * Whether `req`'s key may speak for its name (bindings.ts): a name bound to another key is refused
   * unless a direct read shows it was released meanwhile (`release` writes the bucket directly).
   */
  /** The key's binding is the one this very request stored (its first attempt): same name, same sentAt. */
  private ownBindingOf(req: { name: string; identityKey: string; sentAt: number }): boolean {
    const b = this.bindings.ofKey(req.identityKey)?.value;
    return b !== undefined && b.releasedAt === undefined && b.name === req.name && b.lastSentAt === req.sentAt;
  }

  private async bindingRefusal(req: { name: string; identityKey: string; sentAt: number }): Promise<ErrorBody | undefined> {
    const refusal = (): ErrorBody | undefined => bindingRefusal(req, this.bindings.ofName(req.name)?.value, this.bindings.ofKey(req.identityKey)?.value);
    const first = refusal();
    if (first === undefined || first.code === 'stale') return first;
    for (const key of new Set([this.bindings.ofName(req.name)?.value.identityKey, req.identityKey])) {
      if (key === undefined) continue;
      const fresh = await this.deps.store.readBinding(key);
      if (fresh) this.bindings.set(fresh.value, fresh.revision);
      else this.bindings.delete(key);
    }
    return refusal();
  }

  /** Writes a binding (compare-and-set; on a conflict re-read once, keeping the higher replay mark). */
  private async putBinding(value: IdentityBinding): Promise<void> {
    this.assertWritable();
    const held = this.bindings.ofKey(value.identityKey);
    let stored: StoredRecord<IdentityBinding>;
    try {
      stored = await this.deps.store.putBinding(value, held?.revision);
    } catch (err) {
      if (!isCasConflict(err)) throw err;
      const fresh = await this.deps.store.readBinding(value.identityKey);
      this.assertWritable();
      stored = await this.deps.store.putBinding({ ...value, lastSentAt: Math.max(value.lastSentAt, fresh?.value.lastSentAt ?? 0) }, fresh?.revision);
    }
    this.bindings.set(stored.value, stored.revision);
  }

  /** Releases the name binding of `identityKey` (the high-water mark stays). */
  private async releaseBinding(identityKey: string, cause: ReleaseCause, sentAt?: number): Promise<void> {
    const b = this.bindings.ofKey(identityKey)?.value;
    if (!b) return;
    await this.putBinding(releasedBinding(b, cause, this.deps.clock.now(), sentAt));
    this.deps.logger.info({ node: b.name, identityKey, cause }, 'name binding released');
  }

  async deregister(raw: Uint8Array): Promise<DeregisterReply> {
    const opened = await openSignedRequest(raw, Deregister);
    if (!opened.ok) return this.rejected('deregistration', undefined, opened.error);
    const d = opened.value;
    const skew = checkSentAt(d.sentAt, this.deps.clock.now(), this.deps.config.maxClockSkewMs);
    if (!skew.ok) return this.rejected('deregistration', d.name, skew.error);
    try {
      return await this.locks.run(`node:${d.name}`, () =>
        this.withCasRetry(async (): Promise<DeregisterReply> => {
          const rec = this.nodes.get(d.name);
          const binding = this.bindings.ofKey(d.identityKey)?.value;
          if (binding && d.sentAt <= binding.lastSentAt) return this.rejected('deregistration', d.name, staleRefusal(d.sentAt, binding.lastSentAt));
          if (!rec) {
            // Offline, but the name's owner: the name is free from now on.
            if (binding?.name === d.name && binding.releasedAt === undefined) await this.releaseBinding(d.identityKey, 'deregistered', d.sentAt);
            return { ok: true };
          }
          if (rec.value.identityKey !== d.identityKey) {
            return this.rejected('deregistration', d.name, {
              code: 'unauthorized',
              field: 'identityKey',
              message: `identityKey: ${JSON.stringify(d.identityKey)} does not match the identity key of node "${d.name}"`,
            });
          }
          await this.releaseBinding(d.identityKey, 'deregistered', d.sentAt);
          await this.removeNode(d.name, 'deregistered');
          return { ok: true };
        }, { node: d.name }),
      );
    } catch (err) {
      return this.rejected('deregistration', d.name, this.errorBody(err));
    }
  }

  // ---- expiry and clusters ----------------------------------------------------------------

  /** Deletes nodes silent for a TTL, then brings cluster records up to date. */
  async expireDue(): Promise<void> {
    if (!this.active || !this.deps.holdsLease()) return;
    // Safety net: a revoked node that survived the watch-triggered removal (a failed write, a
    // registration racing the revocation) goes here, within one check interval.
    await this.removeRevokedNodes();
    await this.removeUnenrolledNodes();
    const now = this.deps.clock.now();
    const due = this.deps.liveness.expired(this.nodes.keys(), now, this.deps.config.nodeTtlMs);
    for (const name of due) {
      try {
        await this.locks.run(`node:${name}`, async () => {
          const t = this.deps.clock.now();
          const seen = this.deps.liveness.lastSeenAt(name);
          if (!this.nodes.has(name) || (seen !== undefined && t - seen < this.deps.config.nodeTtlMs)) return;
          await this.withCasRetry(() => this.removeNode(name, 'expired'), { node: name });
        });
      } catch (err) {
        if (!(err instanceof NotLeaderError)) this.deps.logger.warn({ node: name, err: errorMessage(err) }, 'could not expire node; will retry');
      }
    }
    await this.reclaimUnused(now);
    await this.reconcileAllClusters();
  }

  /**
   * Finding 8: names of nodes that registered but never came alive (no heartbeat) within the grace
   * period lose their binding and their address; released bindings past the clock-skew window are
   * dropped (every request they guard against is refused as stale by then).
   */
  private async reclaimUnused(now: number): Promise<void> {
    const { unusedAllocationGraceMs: grace, maxClockSkewMs: skew } = this.deps.config;
    for (const b of this.bindings.values()) {
      const unused = b.releasedAt === undefined && b.aliveAt === undefined && now - b.updatedAt >= grace && !this.nodes.has(b.name);
      const done = b.releasedAt !== undefined && now - b.releasedAt > skew && now - b.lastSentAt > skew;
      if (!unused && !done) continue;
      try {
        await this.locks.run(`node:${b.name}`, async () => {
          if (this.nodes.has(b.name)) return;
          const held = this.bindings.ofKey(b.identityKey);
          if (!held || held.value.updatedAt !== b.updatedAt) return;
          this.assertWritable();
          if (unused) {
            await this.putBinding(releasedBinding(b, 'never-alive', now));
            const entry = this.ipam.get(b.name);
            if (entry && entry.value.identityKey === b.identityKey) {
              await this.locks.run('ipam', async () => {
                await this.deps.store.delete(kvKeys.ipam(b.name), entry.revision);
                this.ipam.delete(b.name);
              });
            }
            this.deps.logger.info({ node: b.name, identityKey: b.identityKey, registeredAt: b.updatedAt }, 'node never came alive: name binding and overlay address reclaimed');
          } else {
            await this.deps.store.delete(kvKeys.identity(b.identityKey), held.revision);
            this.bindings.delete(b.identityKey);
          }
        });
      } catch (err) {
        if (!(err instanceof NotLeaderError)) this.deps.logger.warn({ node: b.name, err: errorMessage(err) }, 'could not reclaim an unused allocation; will retry');
      }
    }
  }

  // ---- revocation ------------------------------------------------------------------------------

  /**
   * Applies a revocation change seen in the bucket (`stored` null: lifted). A new revocation removes
   * the live nodes it covers at once, and their clusters are recomputed (a revoked gateway is
   * replaced now, not after a TTL). Removal failures are logged; expireDue retries them.
   */
  async applyRevocation(name: string, stored: StoredRecord<Revocation> | null, revision: number): Promise<void> {
    const before = this.revocations.get(name);
    if (!this.revocations.apply(name, stored?.value ?? null, revision)) return;
    if (!stored) {
      if (before) this.deps.logger.info({ node: name, revokedAt: before.revokedAt }, 'revocation lifted; the node may register again');
      return;
    }
    const r = stored.value;
    if (before?.revokedAt !== r.revokedAt || before.identityKey !== r.identityKey || before.publicKey !== r.publicKey) {
      this.deps.logger.warn({ node: name, reason: r.reason, identityKey: r.identityKey, publicKey: r.publicKey, revokedAt: r.revokedAt }, 'revocation in force');
    }
    await this.removeRevokedNodes([name]);
  }

  /** Removes every live node a revocation covers; `alsoCheck` names are looked at under their lock
   *  even if not (yet) in memory, in case a registration was writing them. */
  private async removeRevokedNodes(alsoCheck: readonly string[] = []): Promise<void> {
    if (this.revocations.size === 0) return;
    const names = new Set(alsoCheck);
    for (const [name, rec] of this.nodes) if (this.revocations.forRecord(rec.value)) names.add(name);
    for (const name of [...names].sort()) {
      try {
        await this.locks.run(`node:${name}`, () => {
          // A CAS retry re-reads the record from the bucket, where the revoke command may have deleted
          // it already: remember what we held, so it is still released and its cluster recomputed.
          const known = this.nodes.get(name);
          return this.withCasRetry(() => this.removeRevoked(name, known), { node: name });
        });
      } catch (err) {
        if (!(err instanceof NotLeaderError)) this.deps.logger.warn({ node: name, err: errorMessage(err) }, 'could not remove a revoked node; will retry');
      }
    }
  }

  /** Caller holds the node lock. The operator's CLI usually deleted the record already; then only our
   *  memory, the ipam entry and the cluster record change. */
  private async removeRevoked(name: string, known: StoredRecord<NodeRecord> | undefined): Promise<void> {
    const held = this.nodes.get(name) ?? known;
    if (!held || !this.revocations.forRecord(held.value)) return;
    this.assertWritable();
    const current = await this.deps.store.readNode(name);
    if (!current) {
      await this.removeNode(name, 'revoked', { alreadyDeleted: held });
      return;
    }
    // Judge the record as it is now (it may have been rewritten since we read it).
    this.nodes.set(name, current);
    if (this.revocations.forRecord(current.value)) await this.removeNode(name, 'revoked');
  }

  /** Removes a node record (the caller holds the node lock). The ipam entry is updated first, so the
   *  generation survives even if we crash between the two writes. `alreadyDeleted`: the record as we
   *  held it, which someone else (the revoke command) has deleted; forget it without a second DEL. */
  private async removeNode(
    name: string,
    reason: 'expired' | 'deregistered' | 'revoked' | 'unenrolled',
    opts: { alreadyDeleted?: StoredRecord<NodeRecord> } = {},
  ): Promise<void> {
    const rec = opts.alreadyDeleted ?? this.nodes.get(name);
    if (!rec) return;
    const now = this.deps.clock.now();
    this.assertWritable();
    await this.locks.run('ipam', async () => {
      const own = this.ipam.get(name);
      const entry: IpamEntry = {
        v: 1,
        ip: own?.value.ip ?? rec.value.overlayIp,
        identityKey: rec.value.identityKey,
        generation: Math.max(own?.value.generation ?? 0, rec.value.generation),
        updatedAt: now,
        releasedAt: now,
      };
      this.ipam.set(name, await this.deps.store.putIpam(name, entry, own?.revision));
    });
    this.assertWritable();
    if (opts.alreadyDeleted === undefined) await this.deps.store.delete(kvKeys.node(name), rec.revision);
    const seen = this.deps.liveness.lastSeenAt(name);
    this.nodes.delete(name);
    this.deps.liveness.forget(name);
    this.deps.logger.info({ node: name, cluster: rec.value.cluster, overlayIp: rec.value.overlayIp, reason, lastSeenAt: seen }, `node ${reason}`);
    this.deps.metrics?.nodeRemoved(reason);
    this.deps.events?.publish(nodeRemovedEvent(rec.value, reason, seen ?? null, now));
    await this.reconcileCluster(rec.value.cluster);
  }

  async reconcileAllClusters(): Promise<void> {
    const names = new Set([...this.clusters.keys(), ...[...this.nodes.values()].map((n) => n.value.cluster)]);
    for (const c of [...names].sort()) {
      try {
        await this.reconcileCluster(c);
      } catch (err) {
        if (!(err instanceof NotLeaderError)) this.deps.logger.warn({ cluster: c, err: errorMessage(err) }, 'could not update cluster record; will retry');
      }
    }
  }

  /** Gateways a quorum of peers reports down (coordinator/gateway-health.ts): elections avoid them; a change re-elects at once. */
  async setUnhealthyGateways(unhealthy: ReadonlySet<string>): Promise<void> {
    const same = unhealthy.size === this.unhealthyGateways.size && [...unhealthy].every((g) => this.unhealthyGateways.has(g));
    if (same) return;
    this.unhealthyGateways = new Set(unhealthy);
    await this.reconcileAllClusters();
  }

  private reconcileCluster(cluster: string): Promise<void> {
    return this.locks.run(`cluster:${cluster}`, () =>
      this.withCasRetry(async () => {
        const current = this.clusters.get(cluster);
        const members = this.nodes.members(cluster);
        const now = this.deps.clock.now();
        const decision = decideCluster(cluster, members, current?.value, now, this.retiredClusters.get(cluster), this.unhealthyGateways);
        if (decision.kind === 'unchanged') return;
        this.assertWritable();
        if (decision.kind === 'delete') {
          if (!current) return;
          await this.deps.store.delete(kvKeys.cluster(cluster), current.revision);
          this.clusters.delete(cluster);
          this.retiredClusters.set(cluster, { generation: current.value.generation, gatewayEpoch: current.value.gatewayEpoch });
          this.deps.logger.info({ cluster }, 'cluster has no live nodes; record deleted');
          return;
        }
        const stored = await this.deps.store.putCluster(decision.record, current?.revision);
        this.clusters.set(cluster, stored);
        if (decision.gatewayChanged) {
          this.deps.logger.info(
            { cluster, gateway: decision.record.gateway, previous: current?.value.gateway ?? null, gatewayEpoch: decision.record.gatewayEpoch, reason: this.unhealthyGateways.has(current?.value.gateway ?? '') ? 'reported down by a quorum of its peers' : 'membership' },
            decision.record.gateway === null && decision.record.topology === 'gateway' ? 'cluster has no eligible gateway' : 'gateway changed',
          );
          this.deps.events?.publish(gatewayChangedEvent(decision.record, current?.value.gateway ?? null));
        } else {
          this.deps.logger.info({ cluster, topology: decision.record.topology }, 'cluster record updated');
        }
        const topologies = new Set(members.map((m) => m.topology));
        if (topologies.size > 1) {
          this.deps.logger.warn({ cluster, using: decision.record.topology }, 'nodes of one cluster disagree on topology; using the most recently registered');
        }
      }, { cluster }),
    );
  }

  /** Records written under another signing key (key rotation) are re-signed with ours. Revocations
   *  signed by another key are enforced all the same (a deny list fails closed) and re-signed too. */
  private async resignForeignRecords(revocations: ReadonlyMap<string, StoredRecord<Revocation>>): Promise<void> {
    for (const [name, rec] of revocations) {
      if (rec.signedByUs) continue;
      this.assertWritable();
      const stored = await this.deps.store.putRevocation(rec.value, rec.revision);
      this.revocations.apply(name, stored.value, stored.revision);
      this.deps.logger.warn({ node: name }, 're-signed a revocation signed by another key');
    }
    for (const [name, rec] of this.nodes) {
      if (rec.signedByUs) continue;
      this.assertWritable();
      this.nodes.set(name, await this.deps.store.putNode(rec.value, rec.revision));
      this.deps.logger.warn({ node: name }, 're-signed a node record signed by another key');
    }
    for (const [name, rec] of this.clusters) {
      if (rec.signedByUs) continue;
      this.assertWritable();
      this.clusters.set(name, await this.deps.store.putCluster(rec.value, rec.revision));
      this.deps.logger.warn({ cluster: name }, 're-signed a cluster record signed by another key');
    }
  }

  /**
   * Runs `fn`; on a CAS conflict (someone else wrote the key since we read it) re-reads what the
   * subject touches and tries again, a few times.
   */
  private async withCasRetry<T>(fn: (attempt: number) => Promise<T>, subject: CasSubject): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (err) {
        if (!isCasConflict(err) || attempt >= CAS_ATTEMPTS) throw err;
        this.deps.logger.warn({ subject, attempt }, 'concurrent bucket update; re-reading and retrying');
        await this.refresh(subject);
      }
    }
  }

  private async refresh(subject: CasSubject): Promise<void> {
    if ('cluster' in subject) {
      setOrDelete(this.clusters, subject.cluster, await this.deps.store.readCluster(subject.cluster));
      return;
    }
    setOrDelete(this.nodes, subject.node, await this.deps.store.readNode(subject.node));
    // Any ipam entry may have been involved (reclaim), so reload the table.
    const ipam = await this.deps.store.loadIpam();
    this.ipam.clear();
    for (const [k, v] of ipam) this.ipam.set(k, v);
  }

  // ---- replies ---------------------------------------------------------------------------------

  private accepted(stored: StoredRecord<NodeRecord>): RegisterReply {
    return {
      ok: true,
      record: stored.envelope,
      heartbeatIntervalMs: heartbeatIntervalMs(this.deps.config),
      nodeTtlMs: this.deps.config.nodeTtlMs,
    };
  }

  private rejected(what: string, node: string | undefined, error: ErrorBody): { ok: false; error: ErrorBody } {
    const level = error.code === 'unavailable' || error.code === 'internal' ? 'warn' : error.code === 'stale' ? 'debug' : 'info';
    const fields = { node, code: error.code, field: error.field, reason: error.message };
    // Once per interval per kind and code (REFUSAL_LOG_INTERVAL_MS): anyone can have requests refused at will.
    if (level === 'debug') this.deps.logger.debug(fields, `${what} rejected`);
    else this.throttledLog.log(level, `${what}:${error.code}`, fields, `${what} rejected`);
    return { ok: false, error };
  }

  private errorBody(err: unknown): ErrorBody {
    if (err instanceof NotLeaderError) return { code: 'unavailable', message: 'this coordinator is no longer the leader; retry' };
    if (isCasConflict(err)) return { code: 'unavailable', message: 'concurrent update of the same node; retry' };
    if (isJetStreamUnavailable(err)) {
      // A NATS server loss: the bucket's stream elects a new leader (seconds); every request meanwhile
      // fails the same way, so it is logged once per interval, not once per request. Still `internal`
      // (an agent treats it as "maybe partly written" and registers again).
      this.throttledLog.warn('jetstream-unavailable', { err: errorMessage(err) }, 'the bucket cannot be written right now (NATS JetStream unavailable); requests fail until it is served again');
      return { code: 'internal', message: `coordinator error: the bucket cannot be written right now (NATS JetStream unavailable: ${errorMessage(err)}; after a NATS server loss the bucket's stream elects a new leader within seconds); retry` };
    }
    this.deps.logger.error({ err: errorMessage(err) }, 'request failed');
    return { code: 'internal', message: `coordinator error: ${errorMessage(err)}` };
  }
}

/**
 * The node's own live record when `req` restates its keys and pod CIDRs, else undefined. Such a
 * request cannot conflict with another live node (every pair was checked when the later of the two
 * registered), so it is checked against its own record only: a fleet-wide re-registration (agent
 * rollout, restart storm) then costs O(1) per node instead of a scan of every node.
 */
export function restatedRecord(req: RegistrationRequest, own: NodeRecord | undefined): NodeRecord | undefined {
  if (own?.name !== req.name || own.identityKey !== req.identityKey || own.publicKey !== req.publicKey) return undefined;
  const same = own.podCidrs.length === req.podCidrs.length && own.podCidrs.every((c, i) => c === req.podCidrs[i]);
  return same ? own : undefined;
}

function setOrDelete<T>(map: { set(key: string, value: T): unknown; delete(key: string): unknown }, key: string, value: T | undefined): void {
  if (value === undefined) map.delete(key);
  else map.set(key, value);
}

export type NodeMaterial = Omit<NodeRecord, 'generation' | 'registeredAt' | 'updatedAt'>;

/**
 * The record to store: the material plus generation and times. Object.assign, not
 * `{ ...material, generation, … }`: V8 gives every object built by a spread plus new keys its own
 * hidden class (~500 bytes per record: 5 MiB at 10,000 nodes in a heap snapshot of the coordinator,
 * docs/benchmarks.md); assigned onto `{}` they all share one (test/coordinator-shapes.test.ts).
 */
export function nodeRecordOf(material: NodeMaterial, generation: number, registeredAt: number, updatedAt: number): NodeRecord {
  return Object.assign({}, material, { generation, registeredAt, updatedAt });
}

/** The record fields that come from the request (plus the address); time and counters excluded. */
export function nodeMaterial(r: RegistrationRequest, overlayIp: string): NodeMaterial {
  return {
    kind: 'node',
    v: 1,
    name: r.name,
    cluster: r.cluster,
    location: r.location,
    ...(r.zone === undefined ? {} : { zone: r.zone }),
    publicKey: r.publicKey,
    identityKey: r.identityKey,
    endpoints: [...r.endpoints],
    privateAddresses: [...r.privateAddresses],
    podCidrs: [...r.podCidrs],
    listenPort: r.listenPort,
    topology: r.topology,
    gatewayEligible: r.gatewayEligible,
    ...(r.persistentKeepalive === undefined ? {} : { persistentKeepalive: r.persistentKeepalive }),
    ...(r.settings === undefined ? {} : { settings: { ...r.settings } }),
    overlayIp,
  };
}

const MATERIAL_KEYS = [
  'cluster',
  'location',
  'zone',
  'publicKey',
  'identityKey',
  'endpoints',
  'privateAddresses',
  'podCidrs',
  'listenPort',
  'topology',
  'gatewayEligible',
  'persistentKeepalive',
  'settings',
  'overlayIp',
] as const satisfies readonly (keyof NodeMaterial)[];

function changedFields(a: NodeMaterial, b: NodeMaterial): string[] {
  return MATERIAL_KEYS.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
}

function sameMaterial(a: NodeMaterial, b: NodeMaterial): boolean {
  return changedFields(a, b).length === 0;
}
