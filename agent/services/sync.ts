// The seam between the agent's services part and something that mirrors services into another
// system (Kubernetes mode: agent/kubernetes/mcs/controller.ts). ServicesAgent pushes an immutable
// snapshot of the verified state on every change; the sync calls back through ServicesPort to
// export and unexport, the same path `crosslink export` takes.
import type { NodeRecord } from '../../protocol/messages.ts';
import type { MergedService, ServiceExportRecord } from '../../protocol/service.ts';
import type { ExportResult, ExportSpec, UnexportSpec } from './api.ts';

/** What a sync may ask of the agent's services part. */
export interface ServicesPort {
  exportService(spec: ExportSpec): Promise<ExportResult>;
  unexportService(spec: UnexportSpec): Promise<ExportResult>;
}

/** The verified state, once complete (a full mesh snapshot and a synced services watch). */
export interface ServicesSnapshot {
  /** This node's name. */
  readonly self: string;
  /** The live verified nodes. */
  readonly nodes: ReadonlyMap<string, NodeRecord>;
  /** The verified ServiceExport records of every cluster. */
  readonly records: ReadonlyMap<string, ServiceExportRecord>;
  /** The records merged per service (before liveness). */
  readonly merged: readonly MergedService[];
}

export interface ServicesSync {
  start(): void;
  /** null: the state is not complete yet (nothing may be withdrawn on partial knowledge). */
  update(snapshot: ServicesSnapshot | null): void;
  stop(): Promise<void>;
}

export type ServicesSyncFactory = (port: ServicesPort) => ServicesSync;
