// `crosslink ping` on the agent side (GET /ping on the status socket): resolves the target (node
// name, overlay IP or pod IP) against the verified view, says which path the agent's desired state
// sends it on, probes the node's overlay IP with the peer probe protocol and, for a pod IP, pings the
// pod with ICMP from our overlay IP (so the reply comes back through the tunnel). The verdict tells a
// tunnel failure apart from a drop beyond the remote node.
import { errorMessage } from '../../lib/errors.ts';
import type { Runner } from '../../lib/runner.ts';
import { cidrContainsIp, parseCidr, parseIp } from '../../protocol/cidr.ts';
import type { PingReply } from '../../protocol/health.ts';
import type { NodeRecord } from '../../protocol/messages.ts';
import type { DesiredState } from '../plan/model.ts';

export interface PingQuery {
  readonly target: string;
  readonly count: number;
  readonly timeoutMs: number;
  /** Pad probes to this many bytes (path-MTU probe); default the header only. */
  readonly bytes?: number;
}

export interface ResolvedTarget {
  readonly node: NodeRecord | null;
  readonly podIp: string | null;
}

/** Node name, a node's overlay IP, or an IP inside a node's pod CIDR. */
export function resolveTarget(target: string, nodes: ReadonlyMap<string, NodeRecord>): ResolvedTarget {
  const byName = nodes.get(target);
  if (byName) return { node: byName, podIp: null };
  const ip = parseIp(target);
  if (!ip) return { node: null, podIp: null };
  for (const n of nodes.values()) if (n.overlayIp === target) return { node: n, podIp: null };
  for (const n of nodes.values()) {
    for (const c of n.podCidrs) {
      const cidr = parseCidr(c);
      if (cidr && cidrContainsIp(cidr, ip.family, ip.value)) return { node: n, podIp: target };
    }
  }
  return { node: null, podIp: null };
}

export interface PathInfo {
  readonly path: string;
  readonly via: string | null;
  readonly text: string;
}

export function pathTo(node: NodeRecord, self: string, desired: DesiredState | null): PathInfo {
  if (node.name === self) return { path: 'self', via: null, text: 'this node' };
  const r = desired?.remotes.find((x) => x.node === node.name);
  if (!r) return { path: 'none', via: null, text: 'not a remote node (same cluster: reached through the CNI, not Crosslink)' };
  switch (r.path) {
    case 'direct':
      return { path: 'direct', via: null, text: 'direct' };
    case 'relay':
      return { path: 'relay', via: r.via, text: `relay via ${r.via ?? '?'}` };
    case 'gateway':
      return { path: 'gateway', via: r.via, text: `gateway ${r.via ?? '?'}` };
    case 'local-gateway':
      return { path: 'local-gateway', via: r.via, text: `local gateway ${r.via ?? '?'}` };
    case 'none':
      return { path: 'none', via: null, text: `none: ${r.reason ?? 'no path'}` };
  }
}

export interface IcmpResult {
  readonly sent: number;
  readonly received: number;
  readonly rttMs: number[];
  readonly detail: string;
}

/** `ping -c N -W T -I <source> <ip>` in this node's network namespace, parsed. */
export async function icmpPing(runner: Runner, ip: string, source: string | null, count: number, timeoutMs: number): Promise<IcmpResult> {
  const argv = ['ping', '-n', '-c', String(count), '-i', '0.2', '-W', String(Math.max(1, Math.round(timeoutMs / 1000))), ...(source ? ['-I', source] : []), ip];
  try {
    const r = await runner.run(argv, { allowFailure: true });
    const rttMs = [...r.stdout.matchAll(/time=([0-9.]+) ms/g)].map((m) => Number(m[1]));
    const stats = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
    const sent = stats ? Number(stats[1]) : count;
    const received = stats ? Number(stats[2]) : rttMs.length;
    const detail = received > 0 ? `${received}/${sent} ICMP echo replies` : `no ICMP echo reply (${(r.stderr || r.stdout).trim().split('\n').pop() ?? ''})`;
    return { sent, received, rttMs, detail };
  } catch (err) {
    return { sent: 0, received: 0, rttMs: [], detail: `cannot run ping: ${errorMessage(err)}` };
  }
}

/**
 * The seam for "why": e.g. a network policy engine can say "denied by policy rule 3" for a target;
 * that reason is put in the verdict instead of guessing. null: nothing to say.
 */
export type PingExplainer = (target: { node: string; ip: string; podIp: string | null }) => string | null;

export interface VerdictInput {
  readonly target: string;
  readonly node: NodeRecord | null;
  readonly path: PathInfo;
  readonly probe: { sent: number; received: number; rttMs: number[] };
  readonly pod: (IcmpResult & { ip: string }) | null;
  readonly explanation: string | null;
}

/** Pure: the answer document. ok only when what was asked answered (the pod for a pod IP). */
export function pingVerdict(v: VerdictInput): PingReply {
  const node = v.node;
  const base = {
    target: v.target,
    node: node?.name ?? null,
    overlayIp: node?.overlayIp ?? null,
    path: v.path.path,
    via: v.path.via,
    pathText: v.path.text,
    sent: v.probe.sent,
    received: v.probe.received,
    rttMs: v.probe.rttMs,
    pod: v.pod === null ? null : { ip: v.pod.ip, sent: v.pod.sent, received: v.pod.received, rttMs: v.pod.rttMs, detail: v.pod.detail },
  };
  const why = v.explanation === null ? '' : ` (${v.explanation})`;
  if (node === null) return { ...base, path: 'unknown', summary: `${v.target} is not a known node, overlay IP or pod IP in the verified view`, ok: false };
  const nodeOk = v.probe.received > 0;
  const nodeText = nodeOk
    ? `${node.name} answered ${v.probe.received}/${v.probe.sent} probes via ${v.path.text}`
    : `${node.name} did not answer ${v.probe.sent} probe${v.probe.sent === 1 ? '' : 's'} via ${v.path.text}${why}`;
  if (v.pod === null) return { ...base, summary: nodeText, ok: nodeOk };
  const podOk = v.pod.received > 0;
  if (podOk) return { ...base, summary: `pod ${v.pod.ip} answered ${v.pod.received}/${v.pod.sent}; ${nodeText}`, ok: true };
  if (nodeOk) {
    return {
      ...base,
      summary: `the node ${node.name} answered but pod ${v.pod.ip} did not: the tunnel works, the drop is beyond the node (pod down, or a policy/firewall inside the node or pod)${why}`,
      ok: false,
    };
  }
  return { ...base, summary: `pod ${v.pod.ip} did not answer, and neither did its node: ${nodeText}`, ok: false };
}

/** GET /ping?target=X&count=N&timeout=MS&bytes=B → a validated query, or the error to answer with (400). */
export function parsePingQuery(url: string): PingQuery | { error: string } {
  const q = new URL(url, 'http://agent').searchParams;
  const target = q.get('target') ?? '';
  if (target === '' || target.length > 253) return { error: 'target: required, a node name, overlay IP or pod IP' };
  const int = (name: string, dflt: number, min: number, max: number): number | string => {
    const raw = q.get(name);
    if (raw === null) return dflt;
    const n = Number(raw);
    return Number.isInteger(n) && n >= min && n <= max ? n : `${name}: ${JSON.stringify(raw)} is not valid; must be an integer ${min}-${max}`;
  };
  const count = int('count', 3, 1, 100);
  const timeoutMs = int('timeout', 1000, 100, 10_000);
  const bytes = int('bytes', 0, 0, 9000);
  for (const v of [count, timeoutMs, bytes]) if (typeof v === 'string') return { error: v };
  return { target, count: Number(count), timeoutMs: Number(timeoutMs), ...(bytes === 0 ? {} : { bytes: Number(bytes) }) };
}
