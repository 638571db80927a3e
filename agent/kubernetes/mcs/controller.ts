// Multi-cluster services in Kubernetes mode (KEP-1645): one agent per cluster (servicesLeader)
// makes the cluster's ServiceExports + EndpointSlices into signed exports through the same path as
// `crosslink export` (the coordinator admits them), withdraws exports whose ServiceExport or
// Service is gone, writes the Valid and Conflict conditions on each ServiceExport, and keeps the
// cluster's ServiceImports equal to the merged services of the whole mesh.
//
// Level-triggered: every round reads the Kubernetes objects (three lists, one more for imports)
// and the latest verified mesh snapshot (pushed with update()), computes the desired state with
// pure functions and makes the difference; a round runs when the snapshot changes and every
// `resyncMs` for changes on the Kubernetes side. Rounds never overlap; a failed round is retried
// at the next one.
import { ApiException } from '@kubernetes/client-node';
import type { Clock } from '../../../lib/clock.ts';
import type { Logger } from '../../../lib/logger.ts';
import { RateLimitedLog } from '../../../lib/rate-limited-log.ts';
import type { ServiceExportRecord } from '../../../protocol/service.ts';
import type { ExportSpec } from '../../services/api.ts';
import type { ServicesPort, ServicesSnapshot, ServicesSync } from '../../services/sync.ts';
import { ServiceRequestError } from '../../services/export-client.ts';
import { apiErrorMessage, apiStatus } from '../api-requests.ts';
import { desiredExports, keyOf, type ValidCondition } from './desired-exports.ts';
import { conflictConditions, desiredImports, serviceImportObject, type DesiredImport } from './desired-imports.ts';
import type { JsonValue } from './json.ts';
import type { McsKubeApi } from './kube-api.ts';
import { servicesLeader } from './leader.ts';
import {
  EndpointSliceObject,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  ServiceExportObject,
  ServiceImportObject,
  ServiceObject,
  parseItems,
  type KubeCondition,
} from './resources.ts';

export interface McsControllerOptions {
  readonly cluster: string;
  readonly api: McsKubeApi;
  readonly services: ServicesPort;
  readonly clock: Clock;
  readonly logger: Logger;
  /** How often the Kubernetes objects are re-read (default 2000 ms). */
  readonly resyncMs?: number;
}

export interface McsControllerState {
  readonly leader: string | null;
  readonly isLeader: boolean;
  readonly rounds: number;
  readonly lastError: string | null;
}

const DEFAULT_RESYNC_MS = 2000;

/** Conditions equal apart from lastTransitionTime (which only moves when status changes). */
const sameCondition = (a: KubeCondition | undefined, b: ValidCondition): boolean => a?.status === b.status && a.reason === b.reason && (a.message ?? '') === b.message;

const exportJson = (s: { readonly ports: unknown; readonly addresses: unknown }): string => JSON.stringify({ ports: s.ports, addresses: s.addresses });

export class McsController implements ServicesSync {
  private snapshot: ServicesSnapshot | null = null;
  private readonly abort = new AbortController();
  private wake = new AbortController();
  private dirty = true;
  private loop: Promise<void> | undefined;
  private rounds = 0;
  private lastError: string | null = null;
  /** Exports the coordinator refused, by key → the refused spec (not re-sent until it changes) and why. */
  private readonly refused = new Map<string, { spec: string; message: string }>();
  private readonly warnings: RateLimitedLog;

  constructor(private readonly o: McsControllerOptions) {
    this.warnings = new RateLimitedLog(o.logger, o.clock);
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.wake.abort();
    await this.loop;
  }

  /** The agent's verified state changed (null: not complete yet; nothing is done until it is). */
  update(snapshot: ServicesSnapshot | null): void {
    this.snapshot = snapshot;
    this.dirty = true;
    this.wake.abort();
  }

  state(): McsControllerState {
    const leader = this.snapshot ? (servicesLeader(this.snapshot.nodes.values(), this.o.cluster) ?? null) : null;
    return { leader, isLeader: leader !== null && leader === this.snapshot?.self, rounds: this.rounds, lastError: this.lastError };
  }

  private async run(): Promise<void> {
    while (!this.abort.signal.aborted) {
      this.dirty = false;
      const snapshot = this.snapshot;
      if (snapshot && servicesLeader(snapshot.nodes.values(), this.o.cluster) === snapshot.self) {
        try {
          await this.round(snapshot);
          this.lastError = null;
          this.warnings.reset('round');
        } catch (err) {
          this.lastError = apiErrorMessage(err);
          this.warnings.warn('round', { err: this.lastError }, 'multi-cluster services: round failed; retrying');
        }
        this.rounds++;
      }
      if (this.dirty || this.abort.signal.aborted) continue;
      this.wake = new AbortController();
      await this.o.clock.sleep(this.o.resyncMs ?? DEFAULT_RESYNC_MS, this.wake.signal);
    }
  }

  private async round(snapshot: ServicesSnapshot): Promise<void> {
    const [exportsRaw, servicesRaw, slicesRaw] = await Promise.all([
      this.o.api.listServiceExports().catch((err: unknown) => {
        if (apiStatus(err) === 404) throw new Error(`the ServiceExport CRD (multicluster.x-k8s.io/v1alpha1) is not installed: apply deploy/mcs/crds.yaml (${apiErrorMessage(err)})`, { cause: err });
        throw err;
      }),
      this.o.api.listServices(),
      this.o.api.listEndpointSlices(),
    ]);
    const serviceExports = this.parsed(ServiceExportObject, exportsRaw, 'ServiceExport');
    const desired = desiredExports({
      serviceExports,
      services: this.parsed(ServiceObject, servicesRaw, 'Service'),
      endpointSlices: this.parsed(EndpointSliceObject, slicesRaw, 'EndpointSlice'),
    });
    const valid = new Map(desired.valid);
    await this.syncExports(snapshot, desired.exports, valid);
    await this.writeExportConditions(serviceExports, valid, conflictConditions(snapshot.merged, this.o.cluster));
    await this.syncImports(desiredImports(snapshot.merged, snapshot.nodes.values()));
  }

  private parsed<T>(schema: Parameters<typeof parseItems<T>>[0], raw: readonly unknown[], kind: string): T[] {
    const { items, skipped } = parseItems(schema, raw);
    if (skipped.length > 0) this.warnings.warn(`parse-${kind}`, { kind, skipped }, `multi-cluster services: ${kind} objects skipped (malformed)`);
    return items;
  }

  /** Exports what changed, unexports this cluster's records nothing asks for any more. */
  private async syncExports(snapshot: ServicesSnapshot, exports: ReadonlyMap<string, ExportSpec>, valid: Map<string, ValidCondition>): Promise<void> {
    const mine = new Map<string, ServiceExportRecord>();
    for (const r of snapshot.records.values()) if (r.cluster === this.o.cluster) mine.set(keyOf(r), r);
    for (const [k, spec] of exports) {
      const want = exportJson(spec);
      const have = mine.get(k);
      if (have && exportJson(have) === want) {
        this.refused.delete(k);
        continue;
      }
      const refused = this.refused.get(k);
      if (refused?.spec === want) {
        valid.set(k, { status: 'False', reason: 'ExportRefused', message: refused.message });
        continue;
      }
      try {
        await this.o.services.exportService(spec);
        this.refused.delete(k);
        this.o.logger.info({ service: k, addresses: spec.addresses.length, ports: spec.ports.length }, 'multi-cluster services: exported from ServiceExport');
      } catch (err) {
        if (err instanceof ServiceRequestError && err.failure !== 'unavailable') {
          this.refused.set(k, { spec: want, message: err.message });
          valid.set(k, { status: 'False', reason: 'ExportRefused', message: err.message });
          this.o.logger.warn({ service: k, err: err.message }, 'multi-cluster services: export refused');
        } else throw err;
      }
    }
    for (const [k, r] of mine) {
      if (exports.has(k)) continue;
      await this.o.services.unexportService({ namespace: r.namespace, name: r.name });
      this.o.logger.info({ service: k }, 'multi-cluster services: unexported (ServiceExport or Service gone)');
    }
    for (const k of this.refused.keys()) if (!exports.has(k)) this.refused.delete(k);
  }

  private async writeExportConditions(serviceExports: readonly ServiceExportObject[], valid: ReadonlyMap<string, ValidCondition>, conflict: ReadonlyMap<string, ValidCondition>): Promise<void> {
    const now = new Date(this.o.clock.now()).toISOString().replace(/\.\d{3}Z$/, 'Z');
    for (const se of serviceExports) {
      const k = keyOf(se.metadata);
      const wanted = new Map<string, ValidCondition>();
      const v = valid.get(k);
      if (v) wanted.set('Valid', v);
      const c = v?.status === 'True' ? conflict.get(k) : undefined;
      if (c) wanted.set('Conflict', c);
      const current = se.status?.conditions ?? [];
      const byType = new Map(current.map((x) => [x.type, x]));
      if ([...wanted].every(([type, w]) => sameCondition(byType.get(type), w)) && (wanted.has('Conflict') || !byType.has('Conflict'))) continue;
      const conditions: JsonValue[] = [...wanted].map(([type, w]) => {
        const prev = byType.get(type);
        return { type, status: w.status, reason: w.reason, message: w.message, lastTransitionTime: prev?.status === w.status && prev.lastTransitionTime ? prev.lastTransitionTime : now };
      });
      const others = current.filter((x) => !wanted.has(x.type) && x.type !== 'Conflict' && x.type !== 'Valid') as unknown as JsonValue[];
      const body = { ...(se as unknown as { [k: string]: JsonValue }), status: { ...((se.status ?? {}) as { [k: string]: JsonValue }), conditions: [...conditions, ...others] } };
      try {
        await this.o.api.replaceServiceExportStatus(se.metadata.namespace, se.metadata.name, body);
      } catch (err) {
        // 409: the ServiceExport changed meanwhile; 404: deleted. The next round writes again.
        if (apiStatus(err) !== 409 && apiStatus(err) !== 404) throw err;
      }
    }
  }

  private async syncImports(desired: ReadonlyMap<string, DesiredImport>): Promise<void> {
    const existing = new Map<string, ServiceImportObject>();
    for (const si of this.parsed(ServiceImportObject, await this.o.api.listServiceImports(), 'ServiceImport')) {
      if (si.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY) existing.set(keyOf(si.metadata), si);
    }
    for (const [k, d] of desired) {
      const have = existing.get(k);
      try {
        if (!have) {
          const created = (await this.o.api.createServiceImport(d.namespace, serviceImportObject(d))) as ServiceImportObject;
          // Create ignores status (a subresource): write it separately.
          await this.o.api.replaceServiceImportStatus(d.namespace, d.name, serviceImportObject(d, created.metadata.resourceVersion));
          this.o.logger.info({ service: k, clusters: d.status['clusters'] }, 'multi-cluster services: ServiceImport created');
          continue;
        }
        let rv = have.metadata.resourceVersion;
        if (JSON.stringify(have.spec) !== JSON.stringify(d.spec)) {
          const replaced = (await this.o.api.replaceServiceImport(d.namespace, d.name, serviceImportObject(d, rv))) as ServiceImportObject;
          rv = replaced.metadata.resourceVersion;
        }
        if (JSON.stringify(have.status) !== JSON.stringify(d.status)) await this.o.api.replaceServiceImportStatus(d.namespace, d.name, serviceImportObject(d, rv));
      } catch (err) {
        // A namespace this cluster does not have: KEP namespace sameness, nothing to import into.
        if (apiStatus(err) === 404 && !have) {
          this.warnings.warn(`ns-${d.namespace}`, { service: k, namespace: d.namespace }, 'multi-cluster services: no such namespace here; ServiceImport not created');
          continue;
        }
        if (err instanceof ApiException && apiStatus(err) === 409) continue;
        throw err;
      }
    }
    for (const [k, si] of existing) {
      if (desired.has(k)) continue;
      try {
        await this.o.api.deleteServiceImport(si.metadata.namespace, si.metadata.name);
        this.o.logger.info({ service: k }, 'multi-cluster services: ServiceImport deleted (no cluster exports it)');
      } catch (err) {
        if (apiStatus(err) !== 404) throw err;
      }
    }
  }
}
