// Bulk TCP across the overlay with a tiny Node sink/source run inside the pod namespaces: the
// source writes N bytes and half-closes; the sink answers with the count it read, so success means
// every byte arrived end to end. Large writes make full-size segments: a path MTU black hole stalls.
import { spawn } from 'node:child_process';
import { errorMessage } from '../lib/errors.ts';
import { waitForOutput } from '../lib/output-marker.ts';
import type { Runner } from '../lib/runner.ts';
import type { PodPlan } from './plan.ts';

export interface BulkResult {
  readonly from: string;
  readonly to: string;
  readonly ok: boolean;
  /** Bytes the sink confirmed. */
  readonly bytes: number;
  readonly ms: number;
  readonly detail: string;
}

const PORT = 5201;

// argv: port ip. Prints "listening", then answers each connection's EOF with its byte count.
const SINK = `
const net = require('node:net');
const [port, ip] = process.argv.slice(1);
const server = net.createServer((c) => {
  let n = 0;
  c.on('data', (d) => { n += d.length; });
  c.on('end', () => { c.end(String(n)); server.close(); });
  c.on('error', () => server.close());
});
server.listen(Number(port), ip, () => console.log('listening'));
`;

// argv: port ip bytes. Prints {"confirmed": n} once the sink has answered.
const SOURCE = `
const net = require('node:net');
const [port, ip, total] = process.argv.slice(1);
const chunk = Buffer.alloc(65536, 0x5a);
let left = Number(total);
let answer = '';
const c = net.connect(Number(port), ip, () => {
  const pump = () => {
    while (left > 0) {
      const k = Math.min(left, chunk.length);
      left -= k;
      if (!c.write(chunk.subarray(0, k))) { c.once('drain', pump); return; }
    }
    c.end();
  };
  pump();
});
c.on('data', (d) => { answer += d; });
c.on('end', () => console.log(JSON.stringify({ confirmed: Number(answer) })));
c.on('error', (e) => { console.error(e.message); process.exit(1); });
`;

/** Sends `bytes` from `from` to `to` over TCP; fails if not every byte is confirmed within `timeoutMs`. */
export async function bulkTransfer(runner: Runner, from: PodPlan, to: PodPlan, bytes: number, timeoutMs: number): Promise<BulkResult> {
  const sink = spawn('ip', ['netns', 'exec', to.ns, process.execPath, '-e', SINK, String(PORT), to.ip], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => sink.once('exit', () => resolve()));
  try {
    await waitForOutput(sink, 'listening', { timeoutMs: 10_000, what: `TCP sink in ${to.name}` });
    const started = Date.now();
    const r = await runner
      .run(['ip', 'netns', 'exec', from.ns, process.execPath, '-e', SOURCE, String(PORT), to.ip, String(bytes)], { allowFailure: true, timeoutMs })
      .catch((err: unknown) => ({ stdout: '', stderr: errorMessage(err), exitCode: -1 }));
    return parseBulk(from.name, to.name, bytes, r.stdout, r.stderr, r.exitCode, Date.now() - started);
  } finally {
    if (sink.exitCode === null && sink.signalCode === null) sink.kill('SIGTERM');
    await exited;
  }
}

/** Pure: the source's report → result. */
export function parseBulk(from: string, to: string, wanted: number, stdout: string, stderr: string, exitCode: number, ms: number): BulkResult {
  let confirmed = 0;
  try {
    confirmed = Number((JSON.parse(stdout.trim().split('\n').pop() ?? '') as { confirmed?: unknown }).confirmed) || 0;
  } catch {
    // no report: the source failed; stderr says why
  }
  const ok = exitCode === 0 && confirmed === wanted;
  const detail = ok
    ? `${confirmed} bytes in ${ms} ms`
    : stderr.trim() || `exit ${exitCode}, sink confirmed ${confirmed} of ${wanted} bytes`;
  return { from, to, ok, bytes: confirmed, ms, detail };
}
