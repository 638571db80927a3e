// Multi-cluster services in the lab (demo and test/lab-services.test.ts): a TCP echo service in a
// pod, `crosslink export` through the node's agent, resolution through a node's agent DNS
// (127.0.0.1:5353 in its namespace) with the real `dig`, and a TCP connection from a pod in
// another cloud over the overlay.
import { spawn, type ChildProcess } from 'node:child_process';
import { runCli } from '../cli/main.ts';
import { CrosslinkError } from '../lib/errors.ts';
import { LAB_DNS_PORT } from './commands.ts';
import type { Lab } from './lab.ts';
import type { NodePlan, PodPlan } from './plan.ts';

/** Answers every connection with one line naming the pod, then closes. */
const SERVER = (port: number, name: string): string =>
  `require('node:net').createServer((s) => s.end(${JSON.stringify(`hello from ${name}\n`)})).listen(${port}, '0.0.0.0')`;

const CLIENT = (ip: string, port: number): string =>
  `const s = require('node:net').connect(${port}, ${JSON.stringify(ip)}); let d = ''; s.setTimeout(3000, () => { process.stdout.write(d); process.exit(1); }); s.on('data', (c) => (d += c)); s.on('end', () => { process.stdout.write(d); process.exit(0); }); s.on('error', (e) => { process.stderr.write(String(e)); process.exit(1); });`;

export interface EchoServer {
  readonly pod: PodPlan;
  readonly port: number;
  stop(): Promise<void>;
}

/** Starts the echo service in `pod` (a child process; stop() before the lab goes down). */
export async function startEchoServer(lab: Lab, pod: PodPlan, port: number): Promise<EchoServer> {
  const child: ChildProcess = spawn('ip', ['netns', 'exec', pod.ns, process.execPath, '-e', SERVER(port, pod.name)], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Listening once a local connection is answered.
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await lab.exec(pod.ns, [process.execPath, '-e', CLIENT('127.0.0.1', port)], { allowFailure: true, timeoutMs: 10_000 });
    if (r.exitCode === 0) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGTERM');
      throw new CrosslinkError(`echo server in ${pod.name} did not start: ${r.stderr}`);
    }
    await new Promise((res) => setTimeout(res, 200));
  }
  return {
    pod,
    port,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** `crosslink export <name>.<ns> --port http:<port>/tcp --address <pod ip>` through the pod's node agent. */
export async function exportFromPod(lab: Lab, service: string, server: EchoServer): Promise<void> {
  let err = '';
  const code = await runCli(['export', service, '--port', `http:${server.port}/tcp`, '--address', server.pod.ip, '--socket', lab.statusSocket(server.pod.node)], {
    stdout: () => undefined,
    stderr: (t) => (err += t),
    env: {},
    now: () => Date.now(),
  });
  if (code !== 0) throw new CrosslinkError(`crosslink export ${service} via ${server.pod.node} failed (exit ${code}): ${err.trim()}`);
}

/** The A records `node`'s agent answers for `<svc>.<ns>.svc.clusterset.local`, in order. */
export async function resolveFrom(lab: Lab, node: NodePlan, service: string): Promise<string[]> {
  const r = await lab.exec(node.ns, ['dig', '@127.0.0.1', '-p', String(LAB_DNS_PORT), '+time=3', '+tries=2', '+short', `${service}.svc.clusterset.local`, 'A'], {
    allowFailure: true,
    timeoutMs: 20_000,
  });
  if (r.exitCode !== 0) throw new CrosslinkError(`dig in ${node.name} failed: ${r.stdout}${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l !== '');
}

/** Connects from `pod` to ip:port over TCP; the echo line, or throws. */
export async function connectFrom(lab: Lab, pod: PodPlan, ip: string, port: number): Promise<string> {
  const r = await lab.exec(pod.ns, [process.execPath, '-e', CLIENT(ip, port)], { allowFailure: true, timeoutMs: 15_000 });
  if (r.exitCode !== 0) throw new CrosslinkError(`${pod.name} → ${ip}:${port}: ${(r.stderr || r.stdout).trim() || `exit ${r.exitCode}`}`);
  return r.stdout.trim();
}

/**
 * The demo's services step: an echo service in the first cloud's first pod, exported through its
 * agent, resolved from a node of the last cloud through that agent's DNS, and connected to from a
 * pod there over the overlay. Returns the lines to print; throws when a step fails.
 */
export async function servicesDemo(lab: Lab, progress: (line: string) => void): Promise<string[]> {
  const pods = lab.plan.pods;
  const from = pods[0];
  const client = [...pods].reverse().find((p) => p.cloud !== from?.cloud);
  if (!from || !client) return [];
  const node = lab.node(client.node);
  const service = 'echo.demo';
  const server = await startEchoServer(lab, from, 8080);
  try {
    progress(`services: ${service} runs in ${from.name} (${from.ip}); crosslink export ${service} --port http:8080/tcp --address ${from.ip} (via ${from.node})`);
    await exportFromPod(lab, service, server);
    const deadline = Date.now() + 15_000;
    let answer: string[] = [];
    while (answer.join() !== from.ip) {
      if (Date.now() > deadline) throw new CrosslinkError(`${node.name} does not resolve ${service} to ${from.ip} (answers: ${answer.join(', ') || 'none'})`);
      answer = await resolveFrom(lab, node, service).catch(() => []);
      if (answer.join() !== from.ip) await new Promise((r) => setTimeout(r, 200));
    }
    let reply = '';
    for (let i = 0; ; i++) {
      try {
        reply = await connectFrom(lab, client, from.ip, 8080);
        break;
      } catch (err) {
        if (i >= 10) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    return [
      `Services (clusterset.local DNS on every agent):`,
      `  ${node.name} (${node.cloud}): dig ${service}.svc.clusterset.local → ${answer.join(', ')}`,
      `  ${client.name} (${client.cloud}) → ${from.ip}:8080 over the overlay: "${reply}"`,
    ];
  } finally {
    await server.stop();
  }
}
