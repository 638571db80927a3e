// The whole mesh from the health summaries (protocol/health-summary.ts): a node × node matrix
// (`crosslink mesh`), Graphviz DOT (`crosslink graph`) and the broken hops (`diagnose --all`).
// Pure functions over verified records and verified summaries; table-tested.
import type { Palette } from '../lib/colour.ts';
import { renderTable } from '../lib/text-format.ts';
import type { HealthSummary } from '../protocol/health-summary.ts';
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';

export interface MeshInput {
  readonly nodes: ReadonlyMap<string, NodeRecord>;
  readonly clusters: ReadonlyMap<string, ClusterRecord>;
  /** Verified summaries by node; a node without one is "silent". */
  readonly summaries: ReadonlyMap<string, HealthSummary>;
  /** Why a node's summary was refused (bad signature, unknown node). */
  readonly refused: ReadonlyMap<string, string>;
}

/** What `from` says about reaching `to`: the peer that carries `to` in from's summary. */
export interface Cell {
  readonly state: string;
  readonly via: string | null;
  readonly path: 'direct' | 'relay' | 'gateway' | null;
  readonly rttMs: number | null;
  readonly reason: string | null;
}

export function cellOf(summary: HealthSummary | undefined, to: string): Cell | null {
  if (!summary) return null;
  for (const p of summary.peers) {
    if (p.peer === to || p.carries.includes(to)) {
      const via = p.path === 'relay' ? p.via : p.path === 'gateway' && p.peer !== to ? p.peer : null;
      return { state: p.state, via, path: p.path, rttMs: p.rttMs, reason: p.reason };
    }
  }
  return null;
}

const sortedNodes = (m: MeshInput): NodeRecord[] =>
  [...m.nodes.values()].sort((a, b) => (a.cluster === b.cluster ? (a.name < b.name ? -1 : 1) : a.cluster < b.cluster ? -1 : 1));

function roleOf(n: NodeRecord, m: MeshInput): string {
  const c = m.clusters.get(n.cluster);
  if (c?.gateway === n.name) return 'gateway';
  if (n.endpoints.length === 0) return 'nat';
  return c?.topology === 'gateway' ? 'member' : 'mesh';
}

function cellText(c: Cell | null, fromCluster: string, toCluster: string, p: Palette): string {
  if (fromCluster === toCluster) return p.dim('·');
  if (c === null) return p.dim('-');
  const mark = c.state === 'up' || c.state === 'idle' ? p.green('✓') : c.state === 'pending' ? p.yellow('?') : p.red('✗');
  const via = c.via === null ? '' : c.path === 'relay' ? `r:${c.via}` : `g:${c.via}`;
  return `${mark}${via ? ` ${via}` : ''}`;
}

/** Rows: reporting node; columns: target node (numbered). ✓ up, ✗ down, ? pending, - no report, · same cluster. */
export function formatMeshMatrix(m: MeshInput, now: number, p: Palette): string {
  const nodes = sortedNodes(m);
  if (nodes.length === 0) return 'No nodes.';
  const header = ['#', 'NODE', 'CLUSTER', 'ROLE', 'SUMMARY', ...nodes.map((_, i) => String(i + 1))];
  const rows = nodes.map((from, i) => {
    const s = m.summaries.get(from.name);
    const age = s ? `${Math.max(0, Math.round((now - s.at) / 1000))}s ago` : m.refused.has(from.name) ? p.red('refused') : p.yellow('none');
    return [String(i + 1), from.name, from.cluster, roleOf(from, m), age, ...nodes.map((to) => (s ? cellText(cellOf(s, to.name), from.cluster, to.cluster, p) : from.cluster === to.cluster ? p.dim('·') : p.dim('-')))];
  });
  const legend = '✓ up  ✗ down/stale  ? pending  - no report  · same cluster (the CNI)  r:R via relay R  g:G via gateway G';
  const refused = [...m.refused].map(([n, why]) => `  ✗ summary of ${n} refused: ${why}`);
  return [renderTableAnsi(header, rows), '', legend, ...refused].join('\n');
}

/** renderTable with ANSI codes not counted in the widths. */
function renderTableAnsi(header: readonly string[], rows: readonly (readonly string[])[]): string {
  // eslint-disable-next-line no-control-regex
  const strip = (s: string): string => s.replace(/\u001b\[[0-9;]*m/g, '');
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => strip(r[i] ?? '').length)));
  if (rows.every((r) => r.every((c) => strip(c) === c))) return renderTable(header, rows);
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat((widths[i] ?? 0) - strip(c).length))).join('  ').trimEnd()).join('\n');
}

export interface BrokenHop {
  readonly reporter: string;
  readonly target: string;
  readonly state: string;
  readonly via: string | null;
  readonly reason: string | null;
}

/** Every hop a node reports as not up (down/stale/never), plus nodes with no (valid) summary. */
export function brokenHops(m: MeshInput): { readonly hops: BrokenHop[]; readonly silent: string[] } {
  const hops: BrokenHop[] = [];
  const silent: string[] = [];
  for (const n of sortedNodes(m)) {
    const s = m.summaries.get(n.name);
    if (!s) {
      silent.push(n.name);
      continue;
    }
    for (const p of s.peers) {
      if (p.state === 'up' || p.state === 'idle' || p.state === 'pending') continue;
      hops.push({ reporter: n.name, target: p.peer, state: p.state, via: p.path === 'relay' ? p.via : null, reason: p.reason });
    }
  }
  return { hops, silent };
}

/** A DOT quoted string. Names are DNS names (no quotes or backslashes); `\n` in labels is DOT's line break. */
const q = (s: string): string => `"${s.replace(/"/g, '\\"')}"`;

/** Graphviz DOT: one subgraph per cluster, gateways as double octagons, NATed nodes dashed; one
 *  edge per reported peer (green up, red down, grey pending), relay hops labelled. */
export function meshDot(m: MeshInput): string {
  const lines = ['digraph crosslink {', '  rankdir=LR;', '  node [shape=box, fontname="Helvetica"];', '  edge [fontname="Helvetica", fontsize=10];'];
  const byCluster = new Map<string, NodeRecord[]>();
  for (const n of sortedNodes(m)) byCluster.set(n.cluster, [...(byCluster.get(n.cluster) ?? []), n]);
  let i = 0;
  for (const [cluster, nodes] of byCluster) {
    const topology = m.clusters.get(cluster)?.topology ?? 'mesh';
    lines.push(`  subgraph ${q(`cluster_${i++}`)} {`, `    label=${q(`${cluster} (${topology})`)};`);
    for (const n of nodes) {
      const role = roleOf(n, m);
      const attrs = [`label=${q(`${n.name}\\n${n.overlayIp}`)}`];
      if (role === 'gateway') attrs.push('shape=doubleoctagon');
      if (role === 'nat') attrs.push('style=dashed');
      if (!m.summaries.has(n.name)) attrs.push('color=orange');
      lines.push(`    ${q(n.name)} [${attrs.join(', ')}];`);
    }
    lines.push('  }');
  }
  for (const n of sortedNodes(m)) {
    const s = m.summaries.get(n.name);
    if (!s) continue;
    for (const p of [...s.peers].sort((a, b) => (a.peer < b.peer ? -1 : 1))) {
      if (!m.nodes.has(p.peer) || n.name > p.peer && m.summaries.get(p.peer)?.peers.some((o) => o.peer === n.name && o.state === p.state)) continue;
      const colour = p.state === 'up' || p.state === 'idle' ? 'darkgreen' : p.state === 'pending' ? 'grey' : 'red';
      const label = [p.path === 'relay' && p.via ? `relay ${p.via}` : '', p.rttMs === null ? '' : `${p.rttMs.toFixed(1)} ms`].filter(Boolean).join(' ');
      const both = m.summaries.get(p.peer)?.peers.some((o) => o.peer === n.name && o.state === p.state) === true;
      lines.push(`  ${q(n.name)} -> ${q(p.peer)} [color=${colour}${both ? ', dir=both' : ''}${label ? `, label=${q(label)}` : ''}${p.path === 'relay' ? ', style=dashed' : ''}];`);
    }
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}
