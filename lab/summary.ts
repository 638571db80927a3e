// Pure: the mesh summary printed by the demo and `lab status` — nodes, tunnels with a recent
// handshake, and how each cross-cloud node pair is connected (from the agents' `remotes`).
import { peerState, remotePathText } from '../cli/format.ts';
import type { AgentStatus, RemotePath } from '../protocol/status.ts';
import type { LabPlan } from './plan.ts';

export interface PairPath {
  readonly from: string;
  readonly to: string;
  readonly fromCloud: string;
  readonly toCloud: string;
  readonly path: RemotePath['path'] | 'unknown';
  readonly via: string | null;
  readonly reason: string | null;
}

export interface MeshSummary {
  readonly nodes: number;
  readonly ready: number;
  readonly tunnels: number;
  readonly tunnelsUp: number;
  readonly pairs: readonly PairPath[];
}

/** Same wording as `crosslink status`; 'unknown' when the agent has not reported the pair. */
export function describePath(p: PairPath): string {
  return p.path === 'unknown' ? 'unknown' : remotePathText({ node: p.to, cluster: p.toCloud, path: p.path, via: p.via, reason: p.reason });
}

export function meshSummary(plan: LabPlan, statuses: ReadonlyMap<string, AgentStatus>, now = Date.now()): MeshSummary {
  let tunnels = 0;
  let tunnelsUp = 0;
  let ready = 0;
  const pairs: PairPath[] = [];
  for (const node of plan.nodes) {
    const s = statuses.get(node.name);
    if (!s) continue;
    if (s.ready) ready++;
    for (const p of s.peers) {
      tunnels++;
      if (peerState(p, now) === 'up') tunnelsUp++;
    }
    for (const other of plan.nodes) {
      if (other.cloud === node.cloud || !statuses.has(other.name)) continue;
      const r = s.remotes.find((x) => x.node === other.name);
      pairs.push({ from: node.name, to: other.name, fromCloud: node.cloud, toCloud: other.cloud, path: r?.path ?? 'unknown', via: r?.via ?? null, reason: r?.reason ?? null });
    }
  }
  return { nodes: statuses.size, ready, tunnels, tunnelsUp, pairs };
}

/**
 * One line per cross-cloud node pair: "onprem-n1 ↔ edge-n1   via relay aws-n2"; when the two
 * directions differ (gateway clouds), both: "aws-n1 ↔ gcp-n2   → via gateway gcp-n1 | ← via local gateway gcp-n1".
 */
export function formatSummary(s: MeshSummary): string {
  const lines = [`nodes: ${s.ready}/${s.nodes} ready   tunnels: ${s.tunnelsUp}/${s.tunnels} with a recent handshake`];
  const byPair = new Map(s.pairs.map((p) => [`${p.from}>${p.to}`, p]));
  const width = Math.max(0, ...s.pairs.map((p) => p.from.length));
  const rows: [string, string][] = [];
  const done = new Set<string>();
  for (const p of s.pairs) {
    if (done.has(`${p.to}>${p.from}`)) continue;
    done.add(`${p.from}>${p.to}`);
    const back = byPair.get(`${p.to}>${p.from}`);
    const there = describePath(p);
    rows.push([`${p.from.padEnd(width)} ↔ ${p.to}`, !back || describePath(back) === there ? there : `→ ${there} | ← ${describePath(back)}`]);
  }
  const labelWidth = Math.max(0, ...rows.map(([l]) => l.length));
  for (const [label, text] of rows) lines.push(`  ${label.padEnd(labelWidth)}  ${text}`);
  return lines.join('\n');
}
