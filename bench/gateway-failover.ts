// Health-driven gateway failover on the default lab (real agents, wireguard-go, namespaces): UDP to
// the WireGuard port of gcp's active gateway is dropped (nft in that node's namespace), then
// measured, polling every 50 ms: until aws-n1 routes into gcp through the other gcp node (the
// gateway record replaced and applied), and until an aws pod's ICMP echo to a pod on the new
// gateway is answered again. The rule is removed, the lab settles, and the next trial runs. The
// lab is torn down afterwards.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Lab } from '../lab/lab.ts';
import { randomLabId } from '../lab/names.ts';
import { findPod, WIREGUARD_PORT } from '../lab/plan.ts';
import { packagePath } from '../lib/package-root.ts';
import { ProcessRunner } from '../lib/runner.ts';
import { waitFor } from '../lib/wait.ts';
import { failoverBreakdown, parsePinoLog, reportedDown, type FailoverBreakdown, type LogLine } from './failover-breakdown.ts';
import { median, ms, printTable } from './report.ts';
import { upLabForBench } from './interrupt.ts';

const DROP = (port: number): string => `table inet xlbench {\n chain input { type filter hook input priority -10; udp dport ${port} drop; }\n}\n`;
const CLEAR = 'delete table inet xlbench\n';
const POLL_MS = 50;

/** The lab's pino logs (agents by node name, and the coordinator), for the per-phase breakdown. */
async function readLabLogs(lab: Lab): Promise<{ agents: Map<string, LogLine[]>; coordinator: LogLine[] }> {
  const agents = new Map<string, LogLine[]>();
  let coordinator: LogLine[] = [];
  for (const p of lab.processes) {
    if (p.role === 'nats-server') continue;
    const lines = parsePinoLog(await readFile(p.log, 'utf8').catch(() => ''));
    if (p.role === 'coordinator') coordinator = lines;
    else agents.set(p.name, lines);
  }
  return { agents, coordinator };
}

async function gatewayInto(lab: Lab, cloud: string): Promise<string | null> {
  const s = await lab.status('aws-n1');
  return s.remotes.find((r) => r.cluster === cloud && r.path === 'gateway')?.via ?? null;
}

export async function runGatewayFailover(trials = 5): Promise<void> {
  const { lab, down } = await upLabForBench({
    id: randomLabId('bf'),
    topologyText: readFileSync(packagePath('lab/topologies/default.yaml'), 'utf8'),
    topologySource: 'lab/topologies/default.yaml',
    runner: new ProcessRunner(),
  });
  const rows: (string | number)[][] = [];
  const replaced: number[] = [];
  const flowing: number[] = [];
  const phases: FailoverBreakdown[] = [];
  const phaseRows: (string | number)[][] = [];
  try {
    await lab.waitConverged(180_000);
    const aws = findPod(lab.plan, 'aws-n1-p1');
    for (let i = 1; i <= trials; i++) {
      // Settled: a gateway, and traffic into gcp through it.
      const old = await waitFor(async () => (await gatewayInto(lab, 'gcp')) ?? undefined, { timeoutMs: 60_000, intervalMs: 200, what: 'a gcp gateway seen by aws-n1' });
      const survivor = old === 'gcp-n1' ? 'gcp-n2' : 'gcp-n1';
      const target = findPod(lab.plan, `${survivor}-p1`);
      await waitFor(async () => (await lab.ping(aws, target, 1)).ok, { timeoutMs: 60_000, intervalMs: 200, what: `${aws.name} → ${target.name} before trial ${i}` });
      await new Promise((r) => setTimeout(r, 5000));
      // Each trial starts from a clean slate: the previous trial's deposed gateway (now the one to
      // fail over to) no longer reported down (its verdicts age out ≤ 10 s after the last report,
      // docs/coordinator.md); until then the election would rightly keep the current gateway.
      await waitFor(async () => !reportedDown((await readLabLogs(lab)).coordinator, survivor), { timeoutMs: 60_000, intervalMs: 250, what: `${survivor} no longer reported down at the coordinator` });
      const ns = lab.node(old).ns;
      await lab.exec(ns, ['/usr/sbin/nft', '-f', '-'], { input: DROP(WIREGUARD_PORT) });
      const t0 = Date.now();
      // Traffic: one echo every 50 ms until the first reply (ping -D stamps it), so the figure is
      // not rounded up to a 1 s echo timeout.
      const pinger = lab.exec(aws.ns, ['ping', '-n', '-D', '-c', '1', '-i', '0.05', '-w', '60', target.ip], { allowFailure: true, timeoutMs: 70_000 });
      pinger.catch(() => undefined); // awaited below; not left unhandled if the trial fails first
      let replacedMs = NaN;
      let flowingMs = NaN;
      try {
        await waitFor(
          async () => {
            if (Number.isNaN(replacedMs) && (await gatewayInto(lab, 'gcp')) === survivor) replacedMs = Date.now() - t0;
            return !Number.isNaN(replacedMs);
          },
          { timeoutMs: 60_000, intervalMs: POLL_MS, what: `gateway ${old} replaced` },
        );
        const echo = await pinger;
        const stamp = /^\[(\d+\.\d+)\] \d+ bytes from/m.exec(echo.stdout)?.[1];
        if (stamp === undefined) throw new Error(`${aws.name} → ${target.name}: no echo answered within 60 s after the failover: ${echo.stdout.slice(-300)}`);
        flowingMs = Math.round(Number(stamp) * 1000 - t0);
      } finally {
        await lab.exec(ns, ['/usr/sbin/nft', '-f', '-'], { input: CLEAR });
      }
      replaced.push(replacedMs);
      flowing.push(flowingMs);
      rows.push([i, `${old} → ${survivor}`, replacedMs, flowingMs]);
      const b = failoverBreakdown(await readLabLogs(lab), { t0, oldGateway: old, newGateway: survivor, cluster: 'gcp', observer: 'aws-n1', quorum: 2 });
      phases.push(b);
      phaseRows.push([i, ms(b.reporters[0]?.[1] ?? NaN), ms(b.detect), ms(b.quorum), ms(b.elected), ms(b.applyStart), ms(b.applied), ms(b.gatewayApplied), ms(replacedMs), ms(flowingMs), b.reporters.map(([n, t]) => `${n} ${ms(t)}`).join(', ')]);
    }
  } finally {
    await down();
  }
  rows.push(['median', '', median(replaced), median(flowing)]);
  const med = (f: (b: FailoverBreakdown) => number): string => ms(median(phases.map(f).filter((x) => Number.isFinite(x))));
  phaseRows.push(['median', med((b) => b.reporters[0]?.[1] ?? NaN), med((b) => b.detect), med((b) => b.quorum), med((b) => b.elected), med((b) => b.applyStart), med((b) => b.applied), med((b) => b.gatewayApplied), ms(median(replaced)), ms(median(flowing)), '']);
  printTable({
    title: 'gateway failover breakdown (ms after the nft rule, from the processes\' logs)',
    header: ['trial', 'first down', 'quorum-th down', 'coord quorum', 'gateway changed', 'aws-n1 apply start', 'aws-n1 applied', 'new gw applied', 'status shows', 'traffic', 'reporters (down verdict at)'],
    rows: phaseRows,
    notes: [
      'first down / quorum-th down: a reporter\'s `peer probe state down` about the old gateway (its verdict is published then); quorum-th: the one that completed the quorum',
      'coord quorum: the coordinator\'s `gateway reported down by a quorum of its peers`; gateway changed: the new cluster record written',
      'aws-n1 apply start/applied: its first `reconciled` after the change (start = end − durationMs); new gw applied: the same at the new gateway; status shows: the bench\'s 50 ms status poll; traffic: the first answered echo',
    ],
  });
  printTable({
    title: 'gateway failover on the default lab: UDP to the active gcp gateway dropped → replaced (aws-n1 routes via the other node) → aws pod → gcp pod answered',
    params: { trials, poll: `${POLL_MS} ms`, timers: 'lab defaults (node TTL 5 s; probes: peers every 2 s, gateways every 300 ms)' },
    header: ['trial', 'gateway', 'replaced ms', 'traffic flowing ms'],
    rows,
    notes: ['replaced: from the nft rule to aws-n1 routing into gcp via the other node (record replaced by the coordinator and applied by aws-n1)', 'traffic flowing: from the nft rule to the first answered ICMP echo aws-n1-p1 → a pod on the new gateway (one echo every 50 ms from the fault on, ping -D time stamp)'],
  });
}
