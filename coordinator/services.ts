// The leader's side of multi-cluster services: admits export/unexport requests from agents (signed
// by the node's identity key, like registration) and writes coordinator-signed ServiceExport
// records into the KV (services.<namespace>.<name>.<cluster>). Admission is the same trust rule as
// node registration: a live node exports only for its own cluster, and only addresses inside that
// cluster's ENROLLED pod ranges (its signed `enrollments.<cluster>` definition), never the ranges
// node records claim.
import type { Clock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { ErrorBody, NodeRecord } from '../protocol/messages.ts';
import {
  ServiceExportRecord,
  ServiceExportRequest,
  ServiceUnexportRequest,
  admitServiceExport,
  checkRequester,
  serviceKeys,
  serviceRef,
  type ServiceReply,
} from '../protocol/service.ts';
import { checkSentAt, openSignedRequest } from '../protocol/validate-registration.ts';
import { KeyedMutex } from './keyed-mutex.ts';
import { RateLimitedLog } from '../lib/rate-limited-log.ts';
import { REFUSAL_LOG_INTERVAL_MS } from './config.ts';
import { isCasConflict, type StateStore } from './store.ts';
import { exportLimitRefusal } from './cluster-limits.ts';
import { ExportCounts, bucketExportKeys } from './export-counts.ts';
import { NO_CLAIM, SlotClaims, type HeldSlot } from './slot-claims.ts';

/** What admission needs from the registry: live nodes by name, and the enrolled clusters' pod ranges. */
export interface LiveNodes {
  liveNode(name: string): NodeRecord | undefined;
  /** The pod ranges the cluster was enrolled with (`cluster add --pod-cidr`); none if not enrolled. */
  enrolledPodRanges(cluster: string): readonly string[];
  /** The cluster's service export limit (`cluster add|set --max-exports`); undefined: none. */
  exportLimit(cluster: string): number | undefined;
}

export interface ServiceDirectoryDeps {
  readonly store: StateStore;
  readonly nodes: LiveNodes;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly maxClockSkewMs: number;
  /** Whether this term may still write (lease held, term active). */
  readonly writable: () => boolean;
  /** Every export key in the bucket (read once per term, for the export limits); default: the bucket's `services.>` keys. */
  readonly exportKeys?: () => Promise<Iterable<string>>;
}

const CAS_ATTEMPTS = 4;

const fail = (code: ErrorBody['code'], message: string, field?: string): ServiceReply => ({
  ok: false,
  error: field === undefined ? { code, message } : { code, field, message },
});

export class ServiceDirectory {
  private readonly locks = new KeyedMutex();
  /** sentAt of the last accepted request per KV key: an older (replayed) request is refused. */
  private readonly lastSentAt = new Map<string, number>();
  /** Refusals at info once per interval per kind and code (REFUSAL_LOG_INTERVAL_MS). */
  private readonly refusals: RateLimitedLog;
  /** Export keys per cluster, for the export limits: read once per term, then kept by our own writes. */
  private readonly counts: ExportCounts;
  /** Slots claimed under the export limits by new exports in flight. */
  private readonly slots = new SlotClaims();

  constructor(private readonly deps: ServiceDirectoryDeps) {
    this.refusals = new RateLimitedLog(deps.logger, deps.clock, REFUSAL_LOG_INTERVAL_MS);
    this.counts = new ExportCounts(deps.exportKeys ?? (() => bucketExportKeys(deps.store.kv)));
  }

  async export(raw: Uint8Array | string): Promise<ServiceReply> {
    const opened = await openSignedRequest(raw, ServiceExportRequest);
    if (!opened.ok) return this.refused('export', undefined, opened.error);
    const req = opened.value;
    const key = serviceKeys.export(req.namespace, req.name, req.cluster);
    return this.locks.run(key, async () => {
      const early = this.precheck(req, key);
      if (early) return this.refused('export', req, early);
      const admitted = admitServiceExport(req, this.deps.nodes.liveNode(req.node), this.deps.nodes.enrolledPodRanges(req.cluster));
      if (!admitted.ok) return this.refused('export', req, admitted.error);
      if (!this.deps.writable()) return fail('unavailable', 'not the leader (lease lost or stopping); retry');
      const slot = await this.claimSlot(req.cluster, key);
      if (!slot.ok) return this.refused('export', req, slot.error);
      try {
        return await this.write(req, key, admitted.value.addresses);
      } finally {
        slot.claim.release();
      }
    });
  }

  /**
   * A slot under the cluster's export limit for a key that is not one of its exports yet; an update
   * of an existing export needs none. Held until the write is done, so new exports of different
   * services racing for the last slot cannot both get in (slot-claims.ts).
   */
  private async claimSlot(cluster: string, key: string): Promise<{ ok: true; claim: HeldSlot } | { ok: false; error: ErrorBody }> {
    // Counted even without a limit (read once per term), so a limit set later counts what is there.
    const counted = await this.counted(cluster);
    const limit = this.deps.nodes.exportLimit(cluster);
    if (limit === undefined) return { ok: true, claim: NO_CLAIM };
    if (!counted.ok) return { ok: false, error: { code: 'unavailable', message: `could not count the exports of cluster ${JSON.stringify(cluster)}: ${counted.error}; retry` } };
    const held = counted.keys;
    if (held.has(key)) return { ok: true, claim: NO_CLAIM };
    const claim = this.slots.claim(cluster, key, limit, held.size, (k) => held.has(k));
    return claim.ok ? { ok: true, claim } : { ok: false, error: exportLimitRefusal(cluster, claim) };
  }

  /** The cluster's export keys (the first request of a term reads them from the bucket). */
  private async counted(cluster: string): Promise<{ ok: true; keys: ReadonlySet<string> } | { ok: false; error: string }> {
    try {
      return { ok: true, keys: await this.counts.of(cluster) };
    } catch (err) {
      this.deps.logger.warn({ err: errorMessage(err) }, 'could not read the service export keys; retrying with the next request');
      return { ok: false, error: errorMessage(err) };
    }
  }

  /** Writes the export record (created, or updated when it changed). */
  private async write(req: ServiceExportRequest, key: string, addresses: readonly string[]): Promise<ServiceReply> {
    for (let attempt = 1; ; attempt++) {
      try {
        const now = this.deps.clock.now();
        const existing = await this.deps.store.readSignedAt(key, ServiceExportRecord);
        const record: ServiceExportRecord = {
          kind: 'service-export',
          v: 1,
          namespace: req.namespace,
          name: req.name,
          cluster: req.cluster,
          ports: req.ports,
          addresses: [...addresses],
          exportedBy: req.node,
          createdAt: existing?.value.createdAt ?? now,
          updatedAt: now,
          generation: (existing?.value.generation ?? 0) + 1,
        };
        const same =
          existing?.signedByUs === true &&
          JSON.stringify({ ...existing.value, exportedBy: '', updatedAt: 0, generation: 0 }) === JSON.stringify({ ...record, exportedBy: '', updatedAt: 0, generation: 0 });
        this.lastSentAt.set(key, req.sentAt);
        if (same) return { ok: true, record: existing.envelope };
        const stored = await this.deps.store.putSignedAt(key, record, existing?.revision);
        this.counts.added(req.cluster, key);
        this.deps.logger.info(
          { service: serviceRef(req), cluster: req.cluster, node: req.node, addresses: record.addresses.length, ports: record.ports, generation: record.generation },
          existing ? 'service export updated' : 'service exported',
        );
        return { ok: true, record: stored.envelope };
      } catch (err) {
        if (isCasConflict(err) && attempt < CAS_ATTEMPTS) continue;
        this.deps.logger.warn({ service: serviceRef(req), err: errorMessage(err) }, 'service export failed');
        return fail('unavailable', `could not store the export: ${errorMessage(err)}`);
      }
    }
  }

  async unexport(raw: Uint8Array | string): Promise<ServiceReply> {
    const opened = await openSignedRequest(raw, ServiceUnexportRequest);
    if (!opened.ok) return this.refused('unexport', undefined, opened.error);
    const req = opened.value;
    const key = serviceKeys.export(req.namespace, req.name, req.cluster);
    return this.locks.run(key, async () => {
      const early = this.precheck(req, key);
      if (early) return this.refused('unexport', req, early);
      const who = checkRequester(req, this.deps.nodes.liveNode(req.node));
      if (!who.ok) return this.refused('unexport', req, who.error);
      if (!this.deps.writable()) return fail('unavailable', 'not the leader (lease lost or stopping); retry');
      // Counted before the delete (the first request of a term reads the keys), so it is not counted after it.
      await this.counted(req.cluster);
      for (let attempt = 1; ; attempt++) {
        try {
          const existing = await this.deps.store.readSignedAt(key, ServiceExportRecord);
          this.lastSentAt.set(key, req.sentAt);
          if (existing) await this.deps.store.delete(key, existing.revision);
          this.counts.removed(req.cluster, key);
          if (existing) this.deps.logger.info({ service: serviceRef(req), cluster: req.cluster, node: req.node }, 'service unexported');
          return { ok: true, record: null };
        } catch (err) {
          if (isCasConflict(err) && attempt < CAS_ATTEMPTS) continue;
          return fail('unavailable', `could not remove the export: ${errorMessage(err)}`);
        }
      }
    });
  }

  /** Clock skew and replay: a request older than the last one accepted for the key is refused. */
  private precheck(req: { readonly sentAt: number }, key: string): ErrorBody | undefined {
    const skew = checkSentAt(req.sentAt, this.deps.clock.now(), this.deps.maxClockSkewMs);
    if (!skew.ok) return { code: 'stale', field: 'sentAt', message: skew.error.message };
    const last = this.lastSentAt.get(key);
    if (last !== undefined && req.sentAt < last) return { code: 'stale', field: 'sentAt', message: `sentAt: ${req.sentAt} is older than the last accepted request (${last}); replayed?` };
    return undefined;
  }

  private refused(what: string, req: { readonly node: string; readonly name: string; readonly namespace: string } | undefined, error: ErrorBody): ServiceReply {
    this.refusals.log('info', `${what}:${error.code}`, { node: req?.node, service: req ? serviceRef(req) : undefined, code: error.code, reason: error.message }, `service ${what} refused`);
    return { ok: false, error };
  }
}
