// `crosslink ping <node | overlay IP | pod IP>`: asks the agent (GET /ping on its status socket) to
// probe the target through the overlay; prints the path taken, RTTs and loss. For a pod IP it also
// says whether the node answered while the pod did not (tunnel fine, drop beyond the node).
import { Option, type Command } from 'commander';
import { durationFlag } from '../lib/duration.ts';
import { ValidationError } from '../lib/errors.ts';
import { PingReply } from '../protocol/health.ts';
import { getFromAgent } from './client.ts';

function stats(rtts: readonly number[]): string {
  if (rtts.length === 0) return '';
  const min = Math.min(...rtts);
  const max = Math.max(...rtts);
  const avg = rtts.reduce((a, b) => a + b, 0) / rtts.length;
  return `, rtt min/avg/max ${min.toFixed(2)}/${avg.toFixed(2)}/${max.toFixed(2)} ms`;
}

const loss = (sent: number, received: number): string => (sent === 0 ? 'n/a' : `${Math.round(((sent - received) / sent) * 100)}% loss`);

/** Pure: the human answer. */
export function formatPing(r: PingReply): string {
  const lines: string[] = [];
  const where = r.node === null ? r.target : `${r.node}${r.overlayIp ? ` (${r.overlayIp})` : ''}`;
  lines.push(`PING ${r.target}${r.target === r.node ? '' : ` → node ${where}`}, path: ${r.pathText}`);
  if (r.node !== null) lines.push(`  node ${r.node}: ${r.received}/${r.sent} probes answered, ${loss(r.sent, r.received)}${stats(r.rttMs)}`);
  if (r.pod !== null) lines.push(`  pod ${r.pod.ip}: ${r.pod.received}/${r.pod.sent} ICMP echoes answered, ${loss(r.pod.sent, r.pod.received)}${stats(r.pod.rttMs)}`);
  lines.push(`${r.ok ? '✓' : '✗'} ${r.summary}`);
  return lines.join('\n');
}

export function registerPingCommand(program: Command, socketOption: Option, socketOf: (cmd: Command) => string, io: { stdout: (t: string) => void }, setExit: (code: number) => void): void {
  program
    .command('ping')
    .description('probe a node, overlay IP or pod IP through the overlay from this node: path taken, RTT, loss; exit 0 only if answered')
    .argument('<target>', 'node name, overlay IP or pod IP')
    .addOption(socketOption)
    .option('--count <n>', 'probes to send (1-100)', '3')
    .option('--timeout <duration>', 'wait for each answer, e.g. 1s', '1s')
    .option('--size <bytes>', 'pad node probes to this many bytes (path-MTU test)')
    .option('--json', 'print the agent\'s answer as JSON')
    .action(async (target: string, o: { count: string; timeout: string; size?: string; json?: boolean }, cmd: Command) => {
      const socket = socketOf(cmd);
      const count = Number(o.count);
      if (!Number.isInteger(count) || count < 1 || count > 100) throw new ValidationError('--count', o.count, 'must be an integer 1-100');
      const timeoutMs = durationFlag('--timeout', o.timeout, { minMs: 100, maxMs: 10_000 });
      const size = o.size === undefined ? undefined : Number(o.size);
      if (size !== undefined && (!Number.isInteger(size) || size < 24 || size > 9000)) throw new ValidationError('--size', o.size, 'must be an integer 24-9000');
      const q = new URLSearchParams({ target, count: String(count), timeout: String(timeoutMs), ...(size === undefined ? {} : { bytes: String(size) }) });
      const reply = await getFromAgent(socket, `/ping?${q.toString()}`, PingReply, count * (timeoutMs + 300) + 10_000);
      io.stdout(o.json ? `${JSON.stringify(reply, null, 2)}\n` : `${formatPing(reply)}\n`);
      setExit(reply.ok ? 0 : 1);
    });
}
