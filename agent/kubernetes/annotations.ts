// The Node annotations, labels and condition Crosslink reads and writes, and the pure parsing of the
// per-node overrides. One prefix (crosslink.dev/) so `kubectl get node -o yaml` shows everything at a glance.
import { canonicalCidr, formatEndpoint, parseEndpoint } from '../../protocol/cidr.ts';
import { LocationName } from '../../protocol/messages.ts';
import { ValidationError } from '../../lib/errors.ts';

export const ANNOTATION_PREFIX = 'crosslink.dev/';

/** Read by the agent: per-node overrides of what it derives from the Node object. */
export const InputAnnotations = {
  endpoint: 'crosslink.dev/endpoint',
  location: 'crosslink.dev/location',
  gatewayEligible: 'crosslink.dev/gateway-eligible',
  persistentKeepalive: 'crosslink.dev/persistent-keepalive',
  podCidrs: 'crosslink.dev/pod-cidrs',
} as const;

/** Written by the agent (publish). */
export const OutputAnnotations = {
  publicKey: 'crosslink.dev/public-key',
  overlayIp: 'crosslink.dev/overlay-ip',
} as const;

/**
 * Topology is cluster-level (every agent of a cluster must agree, the coordinator keeps one per
 * cluster), so it is set once in the DaemonSet (--topology), never per node. The annotation is
 * recognised only to explain that.
 */
export const TOPOLOGY_ANNOTATION = 'crosslink.dev/topology';

export const TopologyLabels = {
  region: 'topology.kubernetes.io/region',
  zone: 'topology.kubernetes.io/zone',
} as const;

export const CONDITION_TYPE = 'CrosslinkReady';

const KNOWN = new Set<string>([...Object.values(InputAnnotations), ...Object.values(OutputAnnotations), TOPOLOGY_ANNOTATION]);

/** Caps from the registration schema (protocol/messages.ts). */
const MAX_ENDPOINTS = 4;
const MAX_POD_CIDRS = 8;

/** An annotation (or label) whose value was ignored; the node still registers from the rest. */
export interface IgnoredValue {
  readonly field: string;
  readonly value: string;
  readonly allowed: string;
  /** `crosslink.dev/location: "eu west" is not valid; must be …; ignored` */
  readonly message: string;
}

export function ignoredValue(field: string, value: string, allowed: string): IgnoredValue {
  return { field, value, allowed, message: `${new ValidationError(field, value, allowed).message}; ignored` };
}

export interface NodeOverrides {
  /** [] means "none": the node is behind NAT and advertises no endpoint. */
  readonly endpoints?: readonly string[];
  readonly location?: string;
  readonly gatewayEligible?: boolean;
  readonly persistentKeepalive?: number;
  readonly podCidrs?: readonly string[];
}

export interface ParsedOverrides {
  readonly overrides: NodeOverrides;
  readonly ignored: readonly IgnoredValue[];
}

/** Parses the crosslink.dev/ input annotations. Invalid values are reported and left out, never thrown. */
export function parseOverrides(annotations: Readonly<Record<string, string>>): ParsedOverrides {
  const overrides: { -readonly [K in keyof NodeOverrides]: NodeOverrides[K] } = {};
  const ignored: IgnoredValue[] = [];
  const get = (key: string): string | undefined => {
    const v = annotations[key];
    return v === undefined ? undefined : v.trim();
  };

  const endpoint = get(InputAnnotations.endpoint);
  if (endpoint !== undefined) {
    const parsed = parseEndpointList(endpoint);
    if (parsed) overrides.endpoints = parsed;
    else
      ignored.push(
        ignoredValue(
          InputAnnotations.endpoint,
          endpoint,
          `must be "none" or up to ${MAX_ENDPOINTS} comma-separated "ip:port" / "[ipv6]:port" with an IP literal and a port 1-65535`,
        ),
      );
  }

  const location = get(InputAnnotations.location);
  if (location !== undefined) {
    if (LocationName.safeParse(location).success) overrides.location = location;
    else ignored.push(ignoredValue(InputAnnotations.location, location, 'must be 1-63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit'));
  }

  const gatewayEligible = get(InputAnnotations.gatewayEligible);
  if (gatewayEligible !== undefined) {
    if (gatewayEligible === 'true' || gatewayEligible === 'false') overrides.gatewayEligible = gatewayEligible === 'true';
    else ignored.push(ignoredValue(InputAnnotations.gatewayEligible, gatewayEligible, 'must be "true" or "false"'));
  }

  const keepalive = get(InputAnnotations.persistentKeepalive);
  if (keepalive !== undefined) {
    const n = /^[0-9]{1,4}$/.test(keepalive) ? Number(keepalive) : NaN;
    if (Number.isInteger(n) && n <= 3600) overrides.persistentKeepalive = n;
    else ignored.push(ignoredValue(InputAnnotations.persistentKeepalive, keepalive, 'must be whole seconds from 0 (off) to 3600'));
  }

  const podCidrs = get(InputAnnotations.podCidrs);
  if (podCidrs !== undefined) {
    const parsed = parseCidrList(podCidrs);
    if (parsed) overrides.podCidrs = parsed;
    else
      ignored.push(
        ignoredValue(InputAnnotations.podCidrs, podCidrs, `must be 1 to ${MAX_POD_CIDRS} comma-separated CIDRs like 10.244.1.0/24 with host bits zero`),
      );
  }

  const topology = annotations[TOPOLOGY_ANNOTATION];
  if (topology !== undefined) {
    ignored.push(ignoredValue(TOPOLOGY_ANNOTATION, topology, 'topology is cluster-wide: set --topology on the agent DaemonSet (crosslink manifests --topology), not per node'));
  }

  for (const key of Object.keys(annotations).sort()) {
    if (key.startsWith(ANNOTATION_PREFIX) && !KNOWN.has(key)) {
      ignored.push(ignoredValue(key, annotations[key] ?? '', `unknown annotation; known inputs are ${Object.values(InputAnnotations).join(', ')}`));
    }
  }
  return { overrides, ignored };
}

function parseEndpointList(text: string): string[] | undefined {
  if (text === 'none') return [];
  const parts = splitList(text);
  if (parts.length === 0 || parts.length > MAX_ENDPOINTS) return undefined;
  const out: string[] = [];
  for (const part of parts) {
    const ep = parseEndpoint(part);
    if (!ep) return undefined;
    const canonical = formatEndpoint(ep.host, ep.port);
    if (!out.includes(canonical)) out.push(canonical);
  }
  return out;
}

function parseCidrList(text: string): string[] | undefined {
  const parts = splitList(text);
  if (parts.length === 0 || parts.length > MAX_POD_CIDRS) return undefined;
  const out: string[] = [];
  for (const part of parts) {
    const c = canonicalCidr(part);
    if (c === undefined) return undefined;
    if (!out.includes(c)) out.push(c);
  }
  return out;
}

function splitList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}
