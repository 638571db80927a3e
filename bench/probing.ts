// The cost of peer health probing (agent/health/prober.ts), measured on real sockets: per node and
// per peer, the datagrams and bytes it sends and receives and the CPU it spends per minute, at the
// agent's default probe interval. The probers run in bench/probe-cost-worker.ts inside a network
// namespace of their own (xl-bench-<id>-probe, deleted afterwards), whose loopback carries only
// probe traffic, so its kernel counters are the measurement.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { PROBE_DEFAULTS } from '../agent/health/prober.ts';
import { killOnExit } from '../lib/exit-cleanup.ts';
import { ProcessRunner } from '../lib/runner.ts';
import type { ProbeCostResult } from './probe-cost-worker.ts';
import { printTable } from './report.ts';

const WORKER = fileURLToPath(new URL('./probe-cost-worker.ts', import.meta.url));

/** WireGuard's overhead on one probe datagram: the inner IP packet padded to 16 bytes, + 32 (header + tag) + outer UDP/IPv4 28. */
export function wireguardWireBytes(innerIpBytes: number): number {
  return Math.ceil(innerIpBytes / 16) * 16 + 32 + 28;
}

function runWorker(ns: string, nodes: number, windowMs: number): Promise<ProbeCostResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', WORKER, String(nodes), String(windowMs), String(PROBE_DEFAULTS.intervalMs)], { stdio: ['ignore', 'pipe', 'pipe'] });
    killOnExit(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), windowMs * 2 + 120_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`probe worker exited ${code}: ${err.trim()}`));
      else resolve(JSON.parse(out.trim().split('\n').pop() ?? '{}') as ProbeCostResult);
    });
  });
}

export async function runProbingCost(peerCounts: readonly number[] = [10, 50], windowMs = 30_000): Promise<void> {
  const root = new ProcessRunner();
  const ns = `xl-bench-${randomBytes(3).toString('hex')}-probe`;
  const rows: (string | number)[][] = [];
  try {
    await root.run(['ip', 'netns', 'add', ns]);
    await root.run(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    for (const peers of peerCounts) {
      const r = await runWorker(ns, peers + 1, windowMs);
      const perPeerMin = (x: number): number => x / r.nodes / peers / (r.windowMs / 60_000);
      const datagrams = perPeerMin(r.loTxPackets);
      const innerBytes = r.loTxPackets > 0 ? r.loTxBytes / r.loTxPackets : 0;
      rows.push([
        peers,
        datagrams.toFixed(1),
        perPeerMin(r.requestsSent + r.requestsAnswered).toFixed(1),
        perPeerMin(r.loTxBytes).toFixed(0),
        (datagrams * wireguardWireBytes(innerBytes)).toFixed(0),
        perPeerMin(r.cpuMs - r.idleCpuMs).toFixed(2),
        ((r.repliesReceived / Math.max(1, r.requestsSent)) * 100).toFixed(1),
      ]);
    }
  } finally {
    await root.run(['ip', 'netns', 'delete', ns]).catch(() => undefined);
  }
  printTable({
    title: 'peer probing cost per node and peer, per minute (real UDP sockets)',
    params: { interval: `${PROBE_DEFAULTS.intervalMs} ms`, window: `${windowMs / 1000} s`, probe: '24-byte payload' },
    header: ['peers', 'datagrams sent (= received)', 'prober count', 'IP bytes sent', 'wire bytes via WireGuard', 'CPU ms', 'answered %'],
    rows,
    notes: [
      'Each node sends per peer and interval one request and one reply to the peer\'s request, and receives the same: sent = received.',
      'datagrams and IP bytes: the namespace\'s loopback tx counters over the window (only probe traffic runs there), divided by nodes × peers.',
      'prober count: the probers\' own counters (requests sent + requests answered), a cross-check.',
      'wire bytes: IP bytes per datagram padded to 16 + 32 (WireGuard header and tag) + 28 (outer UDP/IPv4), × datagrams.',
      'CPU: the worker process\' CPU time over the window minus the same window idle (probers stopped), divided by nodes × peers.',
    ],
  });
}
