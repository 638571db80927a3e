// `crosslink mesh`, `crosslink graph [--svg]` and the mesh half of `crosslink diagnose --all`: the
// verified KV records plus every node's verified health summary (cli/health-read.ts), rendered by
// cli/mesh-view.ts. Needs only NATS read credentials and the coordinator's public key.
import type { Command } from 'commander';
import { writeFile } from 'node:fs/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Palette } from '../lib/colour.ts';
import { ProcessRunner, type Runner } from '../lib/runner.ts';
import type { KvSnapshot } from './kv-read.ts';
import { readHealthSummaries } from './health-read.ts';
import { brokenHops, formatMeshMatrix, meshDot, type MeshInput } from './mesh-view.ts';

export interface MeshCommandDeps {
  readonly stdout: (text: string) => void;
  readonly setExit: (code: number) => void;
  readonly now: () => number;
  readonly palette: () => Palette;
  readonly addKvFlags: (cmd: Command) => Command;
  /** Reads and verifies the KV (records) with the command's flags. */
  readonly readKv: (cmd: Command) => Promise<KvSnapshot>;
  /** A one-shot NATS connection with the command's flags, and its bucket. */
  readonly connect: (cmd: Command) => Promise<{ readonly nc: NatsConnection; readonly bucket: string }>;
  readonly runner?: Runner;
}

/** Records and summaries, both verified. */
export async function loadMesh(d: Pick<MeshCommandDeps, 'readKv' | 'connect'>, cmd: Command): Promise<MeshInput> {
  const kv = await d.readKv(cmd);
  const { nc, bucket } = await d.connect(cmd);
  try {
    const { summaries, refused } = await readHealthSummaries(nc, bucket, kv.nodes);
    return { nodes: kv.nodes, clusters: kv.clusters, summaries, refused };
  } finally {
    await nc.close();
  }
}

/** The `diagnose --all` report: which node reports which broken hop; exit 0 only when none. */
export function formatMeshDiagnosis(m: MeshInput, p: Palette): { text: string; ok: boolean; json: unknown } {
  const { hops, silent } = brokenHops(m);
  const lines: string[] = [];
  for (const h of hops) {
    lines.push(`${p.red('✗')} ${h.reporter} → ${h.target}${h.via ? ` (relay via ${h.via})` : ''}: ${h.state}${h.reason ? ` — ${h.reason}` : ''}`);
  }
  for (const n of silent) lines.push(`${p.yellow('✗')} ${n}: no health summary${m.refused.has(n) ? ` (refused: ${m.refused.get(n) ?? ''})` : ' in the last minute (agent down, or cannot reach NATS)'}`);
  const reporting = m.summaries.size;
  if (lines.length === 0) lines.push(`${p.green('✓')} ${reporting}/${m.nodes.size} nodes report, every hop up`);
  else lines.unshift(`${reporting}/${m.nodes.size} nodes report; ${hops.length} broken hop${hops.length === 1 ? '' : 's'}, ${silent.length} silent node${silent.length === 1 ? '' : 's'}`);
  return { text: lines.join('\n'), ok: hops.length === 0 && silent.length === 0, json: { ok: hops.length === 0 && silent.length === 0, brokenHops: hops, silent, refused: Object.fromEntries(m.refused) } };
}

export function registerMeshCommands(program: Command, d: MeshCommandDeps): void {
  d.addKvFlags(
    program
      .command('mesh')
      .description('the whole mesh from every node\'s health summary: node × node matrix with clusters, gateways and relays; exit 0 when every node reports and every hop is up')
      .option('--json', 'records and summaries as JSON'),
  ).action(async (opts: { json?: boolean }, cmd: Command) => {
    const m = await loadMesh(d, cmd);
    const diag = formatMeshDiagnosis(m, d.palette());
    if (opts.json) d.stdout(`${JSON.stringify({ summaries: Object.fromEntries(m.summaries), ...(diag.json as object) }, null, 2)}\n`);
    else d.stdout(`${formatMeshMatrix(m, d.now(), d.palette())}\n\n${diag.text}\n`);
    d.setExit(diag.ok ? 0 : 1);
  });

  d.addKvFlags(
    program
      .command('graph')
      .description('the mesh as Graphviz DOT (clusters, gateways, relays, peer health); --svg renders it with `dot`')
      .option('--svg', 'render SVG through Graphviz `dot -Tsvg`')
      .option('-o, --output <file>', 'write to this file instead of stdout'),
  ).action(async (opts: { svg?: boolean; output?: string }, cmd: Command) => {
    const dot = meshDot(await loadMesh(d, cmd));
    const out = opts.svg ? (await (d.runner ?? new ProcessRunner()).run(['dot', '-Tsvg'], { input: dot, timeoutMs: 30_000 })).stdout : dot;
    if (opts.output !== undefined) await writeFile(opts.output, out);
    else d.stdout(out);
    d.setExit(0);
  });
}
