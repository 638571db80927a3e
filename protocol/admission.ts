// Cluster admission: may this (signature- and shape-checked) registration join the cluster it names?
// The operator's enrollment decides (a coordinator-signed ClusterDefinition): the registration must
// carry a valid signature of that cluster's join credential, its pod CIDRs must lie inside the
// cluster's declared ranges and outside special-purpose space, and its endpoints and private
// addresses must not fall inside any enrolled pod range (a pod route must never capture the path to
// a node). Topology comes from the definition, never from the node. Also the checks `cluster add`
// runs on a new definition: ranges valid, private unless allowed, and disjoint from every other cluster.
import { cidrContainsIp, cidrsOverlap, parseCidr, parseEndpoint, parseIp, type Cidr } from './cidr.ts';
import { joinVerify } from './join-credential.ts';
import type { ClusterDefinition, ErrorBody, RegistrationRequest, Topology } from './messages.ts';
import { cidrWithin, forbiddenOverlap, isPrivateRange } from './special-purpose.ts';

type Result<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ErrorBody };

const reject = (code: ErrorBody['code'], field: string, message: string): { ok: false; error: ErrorBody } => ({ ok: false, error: { code, field, message } });

/**
 * A definition's pod ranges, parsed once per definition object (definitions are immutable values; a
 * changed one is a new object). Every registration checks its endpoints and private addresses
 * against every enrolled cluster's ranges: parsing them each time made this path hot enough for V8 to
 * spend ~20 ms of compilation on it in a fresh coordinator's first 100 registrations (issue 7).
 */
const parsedRanges = new WeakMap<ClusterDefinition, readonly Cidr[]>();
function ranges(d: ClusterDefinition): readonly Cidr[] {
  let r = parsedRanges.get(d);
  if (r === undefined) {
    r = Object.freeze(d.podCidrs.map((t) => parseCidr(t)).filter((c): c is Cidr => c !== undefined));
    parsedRanges.set(d, r);
  }
  return r;
}

export interface AdmissionInput {
  readonly request: RegistrationRequest;
  /** The envelope payload (base64) the join signature covers. */
  readonly payload: string;
  readonly joinSig: string | undefined;
  /** The definition of request.cluster, if enrolled (verified with the coordinator key set). */
  readonly definition: ClusterDefinition | undefined;
  /** Every enrolled cluster (the endpoint check looks at all of them). */
  readonly definitions: Iterable<ClusterDefinition>;
}

/** Admits the registration into its cluster; the value is the topology the cluster was enrolled with. */
export async function admitToCluster(i: AdmissionInput): Promise<Result<Topology>> {
  const { request: req, definition: def } = i;
  if (!def) {
    return reject(
      'unauthorized',
      'cluster',
      `cluster: ${JSON.stringify(req.cluster)} is not enrolled; an operator enrolls it with \`crosslink-coordinator cluster add ${req.cluster} --pod-cidr … --credential-out FILE\` and gives its agents --join-credential-file`,
    );
  }
  if (i.joinSig === undefined) {
    return reject('unauthorized', 'joinSig', `joinSig: the registration is not signed with a join credential; give the agent --join-credential-file (cluster ${JSON.stringify(req.cluster)})`);
  }
  if (!(await joinVerify(i.payload, i.joinSig, def.joinKey))) {
    return reject(
      'unauthorized',
      'joinSig',
      `joinSig: not signed by the join credential of cluster ${JSON.stringify(req.cluster)} (a credential of another cluster, or one rotated away with \`cluster rotate-credential\`)`,
    );
  }
  const declared = ranges(def);
  for (const [k, text] of req.podCidrs.entries()) {
    const field = `podCidrs[${k}]`;
    const c = parseCidr(text);
    if (!c) return reject('invalid', field, `${field}: ${JSON.stringify(text)} is not a CIDR`);
    const bad = forbiddenOverlap(c);
    if (bad) return reject('invalid', field, `${field}: ${JSON.stringify(text)} overlaps the reserved range ${bad.cidr.text} (${bad.what})`);
    if (!declared.some((d) => cidrWithin(c, d))) {
      return reject(
        'unauthorized',
        field,
        `${field}: ${JSON.stringify(text)} is outside the pod ranges cluster ${JSON.stringify(req.cluster)} was enrolled with (${def.podCidrs.join(', ')})`,
      );
    }
  }
  const all = [...i.definitions];
  const inEnrolled = (ipText: string): { cluster: string; range: string } | undefined => {
    const ip = parseIp(ipText);
    if (!ip) return undefined;
    for (const d of all) for (const r of ranges(d)) if (cidrContainsIp(r, ip.family, ip.value)) return { cluster: d.name, range: r.text };
    return undefined;
  };
  for (const [k, text] of req.endpoints.entries()) {
    const host = parseEndpoint(text)?.host;
    const hit = host === undefined ? undefined : inEnrolled(host);
    if (hit) return reject('invalid', `endpoints[${k}]`, `endpoints[${k}]: ${JSON.stringify(text)} is inside the pod range ${hit.range} of cluster ${JSON.stringify(hit.cluster)}`);
  }
  for (const [k, text] of req.privateAddresses.entries()) {
    const hit = inEnrolled(text);
    if (hit) {
      return reject('invalid', `privateAddresses[${k}]`, `privateAddresses[${k}]: ${JSON.stringify(text)} is inside the pod range ${hit.range} of cluster ${JSON.stringify(hit.cluster)}`);
    }
  }
  return { ok: true, value: def.topology };
}

/**
 * Checks the pod ranges of a new cluster definition: valid CIDRs with host bits zero, outside
 * special-purpose space, in private space unless `allowPublic`, disjoint from each other and from
 * every other enrolled cluster's ranges. Returns the canonical ranges or a message naming the range.
 */
export function checkDefinitionRanges(
  name: string,
  podCidrs: readonly string[],
  allowPublic: boolean,
  others: Iterable<ClusterDefinition>,
): { ok: true; value: string[] } | { ok: false; message: string } {
  if (podCidrs.length === 0) return { ok: false, message: 'give at least one --pod-cidr' };
  if (podCidrs.length > 32) return { ok: false, message: 'at most 32 --pod-cidr ranges' };
  const out: Cidr[] = [];
  for (const text of podCidrs) {
    const c = parseCidr(text.trim());
    if (!c) return { ok: false, message: `--pod-cidr ${JSON.stringify(text)} is not a CIDR with host bits zero (like 10.1.0.0/16)` };
    const bad = forbiddenOverlap(c);
    if (bad) return { ok: false, message: `--pod-cidr ${c.text} overlaps the special-purpose range ${bad.cidr.text} (${bad.what}); pods cannot live there` };
    if (!allowPublic && !isPrivateRange(c)) {
      return {
        ok: false,
        message: `--pod-cidr ${c.text} is not private space (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7); add --allow-public if this cluster really routes pods in public or shared (100.64.0.0/10) space`,
      };
    }
    const j = out.find((p) => cidrsOverlap(p, c));
    if (j) return { ok: false, message: `--pod-cidr ${c.text} overlaps --pod-cidr ${j.text} of the same definition` };
    out.push(c);
  }
  for (const d of others) {
    if (d.name === name) continue;
    for (const theirs of ranges(d)) {
      const clash = out.find((c) => cidrsOverlap(c, theirs));
      if (clash) return { ok: false, message: `--pod-cidr ${clash.text} overlaps ${theirs.text} of cluster ${JSON.stringify(d.name)}; cluster pod ranges must be disjoint` };
    }
  }
  return { ok: true, value: out.map((c) => c.text) };
}
