// An idle converged lab (lab/topologies/default.yaml: real agents, wireguard-go, namespaces) read
// through the agents' own /metrics: over one idle window, the mutating data-plane commands each
// agent ran (must be 0: nothing changed), its reconciles, its probe datagrams per peer per minute
// and its whole process CPU per minute. The lab is torn down afterwards.
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { randomLabId } from '../lab/names.ts';
import { packagePath } from '../lib/package-root.ts';
import { ProcessRunner } from '../lib/runner.ts';
import { printTable } from './report.ts';
import { upLabForBench } from './interrupt.ts';

function scrapeSocket(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/metrics' }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.setTimeout(20_000, () => req.destroy(new Error('scrape timed out')));
    req.end();
  });
}

/** Sum of every series of `family` whose labels contain `match` (all when empty). */
function total(body: string, family: string, match = ''): number {
  let sum = 0;
  for (const line of body.split('\n')) {
    if (!line.startsWith(family) || (line[family.length] !== ' ' && line[family.length] !== '{')) continue;
    if (match !== '' && !line.includes(match)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

export async function runIdleLab(topology = 'default', windowMs = 60_000): Promise<void> {
  const { lab, down } = await upLabForBench({
    id: randomLabId('b'),
    topologyText: readFileSync(packagePath(`lab/topologies/${topology}.yaml`), 'utf8'),
    topologySource: `lab/topologies/${topology}.yaml`,
    runner: new ProcessRunner(),
  });
  const rows: (string | number)[][] = [];
  let sums = { changes: 0, reconciles: 0 };
  try {
    await lab.waitConverged(180_000);
    // Let the joins settle (handshakes, the first resync) before the idle window starts.
    await new Promise((r) => setTimeout(r, 15_000));
    const names = [...lab.runningAgents()].sort();
    const before = new Map(await Promise.all(names.map(async (n) => [n, await scrapeSocket(lab.statusSocket(n))] as const)));
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, windowMs));
    const after = new Map(await Promise.all(names.map(async (n) => [n, await scrapeSocket(lab.statusSocket(n))] as const)));
    const minutes = (Date.now() - t0) / 60_000;
    for (const n of names) {
      const b = before.get(n) ?? '';
      const a = after.get(n) ?? '';
      const d = (family: string, match = ''): number => total(a, family, match) - total(b, family, match);
      const peers = total(a, 'crosslink_agent_peer_up');
      const peerCount = a.split('\n').filter((l) => l.startsWith('crosslink_agent_peer_up{')).length;
      const changes = d('crosslink_agent_dataplane_changes_total');
      const reconciles = d('crosslink_agent_reconciles_total');
      sums = { changes: sums.changes + changes, reconciles: sums.reconciles + reconciles };
      const probes = d('crosslink_agent_probe_packets_total', 'direction="sent"') + d('crosslink_agent_probe_packets_total', 'direction="answered"');
      rows.push([
        n,
        `${peers}/${peerCount}`,
        changes,
        d('crosslink_agent_apply_failures_total'),
        reconciles,
        peerCount === 0 ? '-' : (probes / peerCount / minutes).toFixed(1),
        ((d('process_cpu_seconds_total') * 1000) / minutes).toFixed(0),
      ]);
    }
  } finally {
    await down();
  }
  printTable({
    title: `idle converged lab (${topology}): mutating data-plane commands and probing, from the agents' /metrics`,
    params: { window: `${windowMs / 1000} s`, total_mutating: sums.changes, total_reconciles: sums.reconciles },
    header: ['node', 'peers up', 'mutating cmds', 'apply failures', 'reconciles', 'probe datagrams sent /peer/min', 'agent CPU ms/min'],
    rows,
    notes: [
      'mutating cmds: increase of crosslink_agent_dataplane_changes_total (successful mutating wg/ip commands and relay port changes) over the window; 0 = idle costs no writes.',
      'reconciles: resyncs (every resyncInterval of the topology) and anything else that asked for one; each reads the live state and diffs it.',
      'probe datagrams: our requests + our replies to peers (crosslink_agent_probe_packets_total sent + answered) per peer per minute.',
      'agent CPU: process_cpu_seconds_total of the whole agent (probing, heartbeats, resyncs, scrapes) — not the probing cost alone (see "probing").',
    ],
  });
}
