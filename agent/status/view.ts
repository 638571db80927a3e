// GET /view (protocol/status-api.ts ViewDocument) ⇄ the MeshView the agent plans from, so
// `crosslink showconf` computes exactly the desired state the agent computes.
import type { ViewDocument } from '../../protocol/status-api.ts';
import type { DataplaneConfig, MeshView } from '../plan/model.ts';

export function toViewDocument(view: MeshView, dataplaneConfig: DataplaneConfig): ViewDocument {
  return {
    self: view.self,
    nodes: [...view.nodes.values()],
    clusters: [...view.clusters.values()],
    dataplaneConfig: { ...dataplaneConfig },
  };
}

export function fromViewDocument(doc: ViewDocument): { view: MeshView; dataplaneConfig: DataplaneConfig } {
  return {
    view: {
      self: doc.self,
      nodes: new Map(doc.nodes.map((n) => [n.name, n])),
      clusters: new Map(doc.clusters.map((c) => [c.name, c])),
    },
    dataplaneConfig: doc.dataplaneConfig,
  };
}
