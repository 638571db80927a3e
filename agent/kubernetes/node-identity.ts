// Pure: a Kubernetes Node object → the NodeIdentity the agent registers with. No I/O, so the whole
// mapping (addresses, labels, annotation overrides, fallbacks) is table-tested.
import { canonicalCidr, formatEndpoint, formatIp, parseIp } from '../../protocol/cidr.ts';
import { LocationName, type Topology } from '../../protocol/messages.ts';
import type { NodeIdentity } from '../plan/model.ts';
import { InputAnnotations, TopologyLabels, ignoredValue, parseOverrides, type IgnoredValue } from './annotations.ts';
import { compareText } from '../../lib/compare.ts';

/** The parts of a Node the identity depends on; anything else (heartbeats, other labels) cannot cause a change. */
export interface NodeFacts {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** spec.podCIDRs, or [spec.podCIDR] on clusters that only set the singular field. */
  readonly podCidrs: readonly string[];
  readonly addresses: readonly { readonly type: string; readonly address: string }[];
}

export interface IdentityDefaults {
  readonly topology: Topology;
  readonly listenPort: number;
  /** Used when the Node has neither a crosslink.dev/location annotation nor a region label. */
  readonly location?: string;
  /** Default when the node has no crosslink.dev/gateway-eligible annotation; unset: eligible iff it has a public endpoint. */
  readonly gatewayEligible?: boolean;
}

export interface IdentityInputs {
  readonly cluster: string;
  readonly defaults: IdentityDefaults;
}

export interface DerivedIdentity {
  /** null while the Node lacks something registration needs; `missing` says what. */
  readonly identity: NodeIdentity | null;
  readonly missing: string | null;
  /** Annotation or label values that were invalid and ignored. */
  readonly ignored: readonly IgnoredValue[];
}

const MAX_ADDRESSES = 4;

/** The slice of a Node (typed client object or raw watch JSON) that nodeFacts reads. */
export interface NodeLike {
  readonly metadata?: { readonly name?: string; readonly labels?: Record<string, string>; readonly annotations?: Record<string, string> };
  readonly spec?: { readonly podCIDR?: string; readonly podCIDRs?: string[] };
  readonly status?: { readonly addresses?: { readonly type: string; readonly address: string }[] };
}

export function nodeFacts(node: NodeLike): NodeFacts {
  const spec = node.spec;
  const podCidrs = spec?.podCIDRs && spec.podCIDRs.length > 0 ? spec.podCIDRs : spec?.podCIDR ? [spec.podCIDR] : [];
  return {
    name: node.metadata?.name ?? '',
    labels: { ...(node.metadata?.labels ?? {}) },
    annotations: { ...(node.metadata?.annotations ?? {}) },
    podCidrs: [...podCidrs],
    addresses: (node.status?.addresses ?? []).map((a) => ({ type: a.type, address: a.address })),
  };
}

export function deriveIdentity(facts: NodeFacts, inputs: IdentityInputs): DerivedIdentity {
  const { overrides, ignored: ignoredAnnotations } = parseOverrides(facts.annotations);
  const ignored: IgnoredValue[] = [...ignoredAnnotations];
  const { defaults } = inputs;

  const region = validLabel(facts.labels, TopologyLabels.region, ignored);
  const zone = validLabel(facts.labels, TopologyLabels.zone, ignored);
  const location = overrides.location ?? region ?? defaults.location;

  const externalIps = addressesOfType(facts.addresses, 'ExternalIP');
  const endpoints = overrides.endpoints ?? externalIps.map((ip) => formatEndpoint(ip, defaults.listenPort));
  const privateAddresses = addressesOfType(facts.addresses, 'InternalIP');

  let podCidrs = overrides.podCidrs;
  if (podCidrs === undefined) {
    podCidrs = [];
    for (const text of facts.podCidrs) {
      const c = canonicalCidr(text);
      if (c === undefined) ignored.push(ignoredValue('spec.podCIDRs', text, 'must be a CIDR with host bits zero'));
      else if (!podCidrs.includes(c)) podCidrs = [...podCidrs, c];
    }
  }

  let missing: string | null = null;
  if (podCidrs.length === 0) {
    missing = `pod CIDRs: the Node has no spec.podCIDRs yet and no ${InputAnnotations.podCidrs} annotation`;
  } else if (location === undefined) {
    missing = `location: the Node has no ${InputAnnotations.location} annotation, no ${TopologyLabels.region} label, and no default location is configured`;
  }
  if (missing !== null || location === undefined) return { identity: null, missing, ignored };

  const identity: NodeIdentity = {
    name: facts.name,
    cluster: inputs.cluster,
    location,
    ...(zone !== undefined ? { zone } : {}),
    endpoints,
    privateAddresses,
    podCidrs,
    topology: defaults.topology,
    gatewayEligible: overrides.gatewayEligible ?? defaults.gatewayEligible ?? endpoints.length > 0,
    ...(overrides.persistentKeepalive !== undefined ? { persistentKeepalive: overrides.persistentKeepalive } : {}),
  };
  return { identity: Object.freeze(identity), missing: null, ignored };
}

/** Deep equality for identities (arrays compared in order: order is meaningful, e.g. the preferred endpoint first). */
export function sameIdentity(a: NodeIdentity | null, b: NodeIdentity | null): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([x], [y]) => compareText(x, y)))
      : v,
  );
}

function addressesOfType(addresses: NodeFacts['addresses'], type: string): string[] {
  const out: string[] = [];
  for (const a of addresses) {
    if (a.type !== type) continue;
    const ip = parseIp(a.address);
    if (!ip) continue;
    const text = formatIp(ip.family, ip.value);
    if (!out.includes(text) && out.length < MAX_ADDRESSES) out.push(text);
  }
  return out;
}

function validLabel(labels: NodeFacts['labels'], key: string, ignored: IgnoredValue[]): string | undefined {
  const v = labels[key];
  if (v === undefined || v === '') return undefined;
  if (LocationName.safeParse(v).success) return v;
  ignored.push(ignoredValue(`label ${key}`, v, 'must be letters, digits, "-", "_" or "." to be used as a location'));
  return undefined;
}
