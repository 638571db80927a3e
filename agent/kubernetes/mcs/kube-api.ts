// The Kubernetes calls of multi-cluster services, through the real @kubernetes/client-node:
// list ServiceExports, Services, EndpointSlices and Crosslink's ServiceImports across namespaces;
// create, replace and delete ServiceImports; replace ServiceImport and ServiceExport status.
// Every call has a timeout (requestOptions); failures surface as the client's ApiException.
import { CoreV1Api, CustomObjectsApi, DiscoveryV1Api, type KubeConfig } from '@kubernetes/client-node';
import { requestOptions } from '../api-requests.ts';
import type { JsonValue } from './json.ts';
import { MANAGED_BY, MANAGED_BY_LABEL, MCS_GROUP, MCS_VERSION, SERVICE_EXPORTS, SERVICE_IMPORTS } from './resources.ts';

export interface McsKubeApi {
  listServiceExports(): Promise<unknown[]>;
  listServices(): Promise<unknown[]>;
  listEndpointSlices(): Promise<unknown[]>;
  /** Only the ServiceImports labelled as Crosslink's. */
  listServiceImports(): Promise<unknown[]>;
  createServiceImport(namespace: string, body: JsonValue): Promise<unknown>;
  replaceServiceImport(namespace: string, name: string, body: JsonValue): Promise<unknown>;
  replaceServiceImportStatus(namespace: string, name: string, body: JsonValue): Promise<unknown>;
  deleteServiceImport(namespace: string, name: string): Promise<void>;
  replaceServiceExportStatus(namespace: string, name: string, body: JsonValue): Promise<unknown>;
}

const itemsOf = (list: unknown): unknown[] => {
  const items = (list as { items?: unknown } | null)?.items;
  return Array.isArray(items) ? (items as unknown[]) : [];
};

export function mcsKubeApi(kc: KubeConfig, o: { readonly timeoutMs: number; readonly signal?: AbortSignal }): McsKubeApi {
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const opts = () => requestOptions({ timeoutMs: o.timeoutMs, ...(o.signal ? { signal: o.signal } : {}) });
  const mcs = { group: MCS_GROUP, version: MCS_VERSION } as const;
  return {
    listServiceExports: async () => itemsOf(await custom.listClusterCustomObject({ ...mcs, plural: SERVICE_EXPORTS }, opts())),
    listServices: async () => itemsOf(await core.listServiceForAllNamespaces({}, opts())),
    listEndpointSlices: async () => itemsOf(await discovery.listEndpointSliceForAllNamespaces({}, opts())),
    listServiceImports: async () =>
      itemsOf(await custom.listClusterCustomObject({ ...mcs, plural: SERVICE_IMPORTS, labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY}` }, opts())),
    createServiceImport: (namespace, body) => custom.createNamespacedCustomObject({ ...mcs, plural: SERVICE_IMPORTS, namespace, body }, opts()),
    replaceServiceImport: (namespace, name, body) => custom.replaceNamespacedCustomObject({ ...mcs, plural: SERVICE_IMPORTS, namespace, name, body }, opts()),
    replaceServiceImportStatus: (namespace, name, body) =>
      custom.replaceNamespacedCustomObjectStatus({ ...mcs, plural: SERVICE_IMPORTS, namespace, name, body }, opts()),
    deleteServiceImport: async (namespace, name) => {
      await custom.deleteNamespacedCustomObject({ ...mcs, plural: SERVICE_IMPORTS, namespace, name }, opts());
    },
    replaceServiceExportStatus: (namespace, name, body) =>
      custom.replaceNamespacedCustomObjectStatus({ ...mcs, plural: SERVICE_EXPORTS, namespace, name, body }, opts()),
  };
}
