// Tiny Node TCP server/clients run inside lab pod namespaces (nc/socat are not installed): a
// server that greets each connection and, at its end, reports how many bytes it read; a probe that
// says whether a connection got the greeting; and a paced long transfer (for "a long TCP flow keeps
// going while the policy changes").
import { spawn } from 'node:child_process';
import type { Runner } from '../../lib/runner.ts';
import { waitForOutput } from '../../lib/output-marker.ts';
import type { PodPlan } from '../../lab/plan.ts';

// argv: port ip. Greets with "hello\n"; on the client's half-close answers "count=<bytes>\n".
const SERVER = `
const net = require('node:net');
const [port, ip] = process.argv.slice(1);
const server = net.createServer((c) => {
  let n = 0;
  c.write('hello\\n');
  c.on('data', (d) => { n += d.length; });
  c.on('end', () => c.end('count=' + n + '\\n'));
  c.on('error', () => undefined);
});
server.listen(Number(port), ip, () => console.log('listening'));
`;

// argv: ip port timeoutMs. Prints ok | timeout | <error code>.
const PROBE = `
const net = require('node:net');
const [ip, port, ms] = process.argv.slice(1);
const c = net.connect(Number(port), ip);
const done = (s) => { console.log(s); c.destroy(); process.exit(0); };
const timer = setTimeout(() => done('timeout'), Number(ms));
c.on('data', (d) => { if (String(d).includes('hello')) { clearTimeout(timer); done('ok'); } });
c.on('error', (e) => { clearTimeout(timer); done(e.code || e.message); });
`;

// argv: ip port durationMs. Sends 16 KiB every 10 ms for durationMs, half-closes, prints {"sent","confirmed","error"}.
const PACED = `
const net = require('node:net');
const [ip, port, ms] = process.argv.slice(1);
const chunk = Buffer.alloc(16384, 0x61);
let sent = 0, answer = '', error = null;
const c = net.connect(Number(port), ip);
c.on('error', (e) => { error = e.code || e.message; });
c.once('data', () => {
  const until = Date.now() + Number(ms);
  const tick = setInterval(() => {
    if (error) { clearInterval(tick); return; }
    if (Date.now() >= until) { clearInterval(tick); c.end(); return; }
    c.write(chunk); sent += chunk.length;
  }, 10);
  c.on('data', (d) => { answer += d; });
});
c.on('close', () => {
  const m = /count=([0-9]+)/.exec(answer);
  console.log(JSON.stringify({ sent, confirmed: m ? Number(m[1]) : 0, error }));
});
`;

export interface TcpServer {
  stop(): Promise<void>;
}

/** Starts the greeting server in `pod` on `port`; resolves once it listens. */
export async function startTcpServer(pod: PodPlan, port: number): Promise<TcpServer> {
  const child = spawn('ip', ['netns', 'exec', pod.ns, process.execPath, '-e', SERVER, String(port), pod.ip], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitForOutput(child, 'listening', { timeoutMs: 15_000, what: `TCP server in ${pod.name}` });
  return {
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Connects from `from` to `to`:`port`; 'ok' when the greeting arrived, else 'timeout' or the error code. */
export async function tcpProbe(runner: Runner, from: PodPlan, to: PodPlan, port: number, timeoutMs = 1500): Promise<string> {
  const r = await runner.run(['ip', 'netns', 'exec', from.ns, process.execPath, '-e', PROBE, to.ip, String(port), String(timeoutMs)], { allowFailure: true, timeoutMs: timeoutMs + 15_000 });
  return r.stdout.trim() || `exit ${r.exitCode}: ${r.stderr.trim()}`;
}

export interface PacedResult {
  readonly sent: number;
  readonly confirmed: number;
  readonly error: string | null;
}

/** A paced transfer of about `durationMs`; resolves with what was sent and what the server confirmed. */
export async function pacedTransfer(runner: Runner, from: PodPlan, to: PodPlan, port: number, durationMs: number): Promise<PacedResult> {
  const r = await runner.run(['ip', 'netns', 'exec', from.ns, process.execPath, '-e', PACED, to.ip, String(port), String(durationMs)], { allowFailure: true, timeoutMs: durationMs + 60_000 });
  try {
    return JSON.parse(r.stdout.trim()) as PacedResult;
  } catch {
    return { sent: 0, confirmed: 0, error: `no report (exit ${r.exitCode}): ${r.stderr.trim()}` };
  }
}
