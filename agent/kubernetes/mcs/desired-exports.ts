// Pure: the cluster's ServiceExports, Services and EndpointSlices → what this cluster exports to the
// mesh (one ExportSpec per exported Service: its ready endpoint addresses and ports) and the
// `Valid` condition of every ServiceExport (KEP-1645). Without a ClusterSetIP, DNS answers with the
// endpoints' pod IPs, so the exported ports are the endpoints' ports (the Service's targetPorts),
// named like the Service ports, as for a headless Service.
import { parseIp } from '../../../protocol/cidr.ts';
import { MAX_SERVICE_ADDRESSES, MAX_SERVICE_PORTS, ServiceLabel, compareIps, type ServicePort } from '../../../protocol/service.ts';
import type { ExportSpec } from '../../services/api.ts';
import { SERVICE_NAME_LABEL, type EndpointSliceObject, type ServiceExportObject, type ServiceObject } from './resources.ts';

export interface ValidCondition {
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message: string;
}

export interface DesiredExports {
  /** Keyed by `<namespace>/<name>`. */
  readonly exports: ReadonlyMap<string, ExportSpec>;
  /** Per ServiceExport `<namespace>/<name>`: its Valid condition. */
  readonly valid: ReadonlyMap<string, ValidCondition>;
}

export const keyOf = (o: { readonly namespace: string; readonly name: string }): string => `${o.namespace}/${o.name}`;

const invalid = (reason: string, message: string): ValidCondition => ({ status: 'False', reason, message });

function slicePorts(slices: readonly EndpointSliceObject[]): { ports: ServicePort[]; skipped: string[] } {
  const byKey = new Map<string, ServicePort>();
  const skipped: string[] = [];
  for (const s of slices) {
    for (const p of s.ports ?? []) {
      const protocol = p.protocol ?? 'TCP';
      if (p.port === null || p.port === undefined) continue;
      if (protocol !== 'TCP' && protocol !== 'UDP') {
        skipped.push(`${p.port}/${protocol}`);
        continue;
      }
      const port: ServicePort = { name: p.name ?? '', port: p.port, protocol };
      byKey.set(`${port.name}|${port.port}|${port.protocol}`, port);
    }
  }
  // One definition per name (the KEP merges by name); the lowest port wins inside one cluster.
  const byName = new Map<string, ServicePort>();
  for (const p of [...byKey.values()].sort((a, b) => a.port - b.port)) if (!byName.has(p.name)) byName.set(p.name, p);
  const unique = new Map<string, ServicePort>();
  for (const p of byName.values()) if (!unique.has(`${p.port}/${p.protocol}`)) unique.set(`${p.port}/${p.protocol}`, p);
  return { ports: [...unique.values()].sort((a, b) => a.port - b.port || (a.protocol < b.protocol ? -1 : 1)), skipped };
}

/** Before any endpoint exists the Service says which ports there will be (numeric targetPort, else port). */
function servicePorts(svc: ServiceObject): { ports: ServicePort[]; skipped: string[] } {
  const ports: ServicePort[] = [];
  const skipped: string[] = [];
  for (const p of svc.spec.ports ?? []) {
    const protocol = p.protocol ?? 'TCP';
    if (protocol !== 'TCP' && protocol !== 'UDP') {
      skipped.push(`${p.port}/${protocol}`);
      continue;
    }
    ports.push({ name: p.name ?? '', port: typeof p.targetPort === 'number' ? p.targetPort : p.port, protocol });
  }
  return { ports, skipped };
}

/** Ready addresses (`conditions.ready` unset counts as ready, as the API specifies), IP slices only. */
function readyAddresses(slices: readonly EndpointSliceObject[]): string[] {
  const out = new Set<string>();
  for (const s of slices) {
    if (s.addressType !== 'IPv4' && s.addressType !== 'IPv6') continue;
    for (const e of s.endpoints ?? []) {
      if (e.conditions?.ready === false) continue;
      for (const a of e.addresses) if (parseIp(a)) out.add(a);
    }
  }
  return [...out].sort(compareIps);
}

export function desiredExports(input: {
  readonly serviceExports: readonly ServiceExportObject[];
  readonly services: readonly ServiceObject[];
  readonly endpointSlices: readonly EndpointSliceObject[];
}): DesiredExports {
  const services = new Map(input.services.map((s) => [keyOf(s.metadata), s]));
  const slices = new Map<string, EndpointSliceObject[]>();
  for (const s of input.endpointSlices) {
    const svc = s.metadata.labels?.[SERVICE_NAME_LABEL];
    if (svc === undefined) continue;
    const k = `${s.metadata.namespace}/${svc}`;
    slices.set(k, [...(slices.get(k) ?? []), s]);
  }
  const exports = new Map<string, ExportSpec>();
  const valid = new Map<string, ValidCondition>();
  for (const se of input.serviceExports) {
    const k = keyOf(se.metadata);
    const { namespace, name } = se.metadata;
    if (!ServiceLabel.safeParse(name).success || !ServiceLabel.safeParse(namespace).success) {
      valid.set(k, invalid('InvalidName', `"${name}" in namespace "${namespace}" is not a DNS label (RFC 1123): it cannot be a clusterset.local name`));
      continue;
    }
    const svc = services.get(k);
    if (!svc) {
      valid.set(k, invalid('ServiceNotFound', `there is no Service "${name}" in namespace "${namespace}" to export`));
      continue;
    }
    if (svc.spec.type === 'ExternalName') {
      valid.set(k, invalid('ServiceTypeNotSupported', `Service "${name}" is of type ExternalName; only services with endpoints can be exported`));
      continue;
    }
    const own = slices.get(k) ?? [];
    const fromSlices = slicePorts(own);
    const { ports, skipped } = fromSlices.ports.length > 0 ? fromSlices : servicePorts(svc);
    if (ports.length === 0) {
      valid.set(
        k,
        invalid('NoSupportedPorts', skipped.length > 0 ? `only TCP and UDP ports can be exported (found ${skipped.join(', ')})` : `Service "${name}" has no ports`),
      );
      continue;
    }
    const addresses = readyAddresses(own);
    const notes = [
      skipped.length > 0 ? `ports ${skipped.join(', ')} skipped (only TCP and UDP)` : '',
      ports.length > MAX_SERVICE_PORTS ? `only the first ${MAX_SERVICE_PORTS} ports are exported` : '',
      addresses.length > MAX_SERVICE_ADDRESSES ? `only ${MAX_SERVICE_ADDRESSES} of ${addresses.length} ready endpoints are exported` : '',
    ].filter((n) => n !== '');
    exports.set(k, { namespace, name, ports: ports.slice(0, MAX_SERVICE_PORTS), addresses: addresses.slice(0, MAX_SERVICE_ADDRESSES) });
    valid.set(k, { status: 'True', reason: 'ServiceExported', message: [`${Math.min(addresses.length, MAX_SERVICE_ADDRESSES)} ready endpoint(s) exported`, ...notes].join('; ') });
  }
  return { exports, valid };
}
