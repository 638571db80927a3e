// Worker of the `probing` bench section, run inside its own network namespace (bench/probing.ts
// starts it with `ip netns exec`): `nodes` real Probers (agent/health/prober.ts) on 127.0.1.1…,
// each probing every other one on real UDP sockets at the agent's default interval. Measures, over
// one window, the namespace's loopback counters (every probe datagram crosses lo exactly once, and
// nothing else runs in the namespace), the probers' own counters and this process' CPU time; then
// the same window's CPU with the probers stopped (the runtime's idle cost, subtracted). Prints one
// JSON line.
import { readFile } from 'node:fs/promises';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { Prober, PROBE_DEFAULTS } from '../agent/health/prober.ts';

export interface ProbeCostResult {
  readonly nodes: number;
  readonly intervalMs: number;
  readonly windowMs: number;
  readonly loTxPackets: number;
  readonly loTxBytes: number;
  readonly requestsSent: number;
  readonly repliesReceived: number;
  readonly requestsAnswered: number;
  readonly cpuMs: number;
  readonly idleCpuMs: number;
}

async function loCounters(): Promise<{ packets: number; bytes: number }> {
  const read = async (f: string): Promise<number> => Number((await readFile(`/sys/class/net/lo/statistics/${f}`, 'utf8')).trim());
  return { packets: await read('tx_packets'), bytes: await read('tx_bytes') };
}

const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function main(): Promise<void> {
  const nodes = Number(process.argv[2] ?? 11);
  const windowMs = Number(process.argv[3] ?? 30_000);
  const intervalMs = Number(process.argv[4] ?? PROBE_DEFAULTS.intervalMs);
  const ips = Array.from({ length: nodes }, (_, i) => `127.0.${1 + (i >> 8)}.${1 + (i & 255)}`);
  const probers = ips.map((ip) => {
    const p = new Prober({ clock: systemClock, logger: silentLogger(), intervalMs });
    p.setLocalIp(ip);
    p.setTargets(ips.filter((x) => x !== ip).map((x) => ({ name: x, ip: x })));
    return p;
  });
  for (const p of probers) p.start();
  await waitFor(() => probers.every((p, i) => ips.every((ip, j) => i === j || p.health(ip)?.state === 'up')), { timeoutMs: 60_000, intervalMs: 100, what: 'every prober to see every peer up' });
  const before = probers.map((p) => ({ ...p.counters }));
  const lo0 = await loCounters();
  const cpu0 = cpuMs();
  await systemClock.sleep(windowMs);
  const cpu1 = cpuMs();
  const lo1 = await loCounters();
  const after = probers.map((p) => ({ ...p.counters }));
  await Promise.all(probers.map((p) => p.stop()));
  const idle0 = cpuMs();
  await systemClock.sleep(windowMs);
  const idleCpuMs = cpuMs() - idle0;
  const sum = (k: keyof Prober['counters']): number => after.reduce((s, c, i) => s + c[k] - (before[i]?.[k] ?? 0), 0);
  const result: ProbeCostResult = {
    nodes,
    intervalMs,
    windowMs,
    loTxPackets: lo1.packets - lo0.packets,
    loTxBytes: lo1.bytes - lo0.bytes,
    requestsSent: sum('requestsSent'),
    repliesReceived: sum('repliesReceived'),
    requestsAnswered: sum('requestsAnswered'),
    cpuMs: cpu1 - cpu0,
    idleCpuMs,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
