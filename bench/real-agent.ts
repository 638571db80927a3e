// `npm run bench -- agent:1000,3000`: ONE real crosslink-agent process (compiled build, default
// settings, real wireguard-go) among N simulated, correctly signed nodes on a real nats-server and
// coordinator process. Everything runs inside one network namespace of its own (xl-<id>-bench):
// the bench re-executes itself there, so NATS on 127.0.0.1, the WireGuard interface and its 2N
// routes never touch the host. The simulated endpoints (198.51.100.0/24) have no route in the
// namespace: nothing is ever sent towards them.
//
// Figures per N: start → all peers and routes programmed; agent and wireguard-go RSS (current and
// peak); the processes the agent spawned for that first apply; one join / one leave → peer in / out
// of `wg show`, p50/p99, and the commands each cost; idle CPU and mutating commands over a window;
// coordinator SIGKILL + restart with N heartbeating nodes → serving again, every node heard again.
// Commands are counted by `ip`/`wg` shims first on the agent's PATH that log their argv.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { agentClient, benchHeartbeatForm, simulatedAgent, rpc, signed, type AgentClient, type SimulatedAgent } from './simulated-agent.ts';
import { errorMessage } from '../lib/errors.ts';
import { killOnExit } from '../lib/exit-cleanup.ts';
import { NatsServer } from '../lib/nats-server.ts';
import { ProcessRunner } from '../lib/runner.ts';
import { waitFor } from '../lib/wait.ts';
import { mapLimit } from '../lib/pool.ts';
import { parseJoinCredential, type JoinCredential } from '../protocol/join-credential.ts';
import { HeartbeatReply, RegisterReply, type Heartbeat } from '../protocol/messages.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';
import { subjects } from '../protocol/subjects.ts';
import { PROBE_PORT } from '../agent/health/probe-packet.ts';
import { AgentFleet } from './agent-fleet.ts';
import { CoordinatorProcess, processCpuMs, writeSigningKeyFile } from './processes.ts';
import { ms, percentile, printTable } from './report.ts';

const REPO = new URL('..', import.meta.url).pathname;
const NETNS_ENV = 'XL_BENCH_AGENT_NETNS';

/** True in the run inside the namespace (runRealAgent's second half). */
export function insideRealAgentNamespace(): boolean {
  return process.env[NETNS_ENV] !== undefined;
}
const JOINS = 20;
/** The idle window (XL_BENCH_IDLE_S overrides the 60 s, e.g. for a quick try). */
const IDLE_MS = Number(process.env.XL_BENCH_IDLE_S ?? 60) * 1000;

/** Entry point: outside the namespace, creates it and runs the section again inside; inside, measures. */
export async function runRealAgent(sizes: readonly number[]): Promise<void> {
  if (process.env[NETNS_ENV] !== undefined) {
    for (const n of sizes) await measure(n);
    return;
  }
  const id = randomBytes(3).toString('hex');
  const ns = `xl-${id}-bench`;
  const host = new ProcessRunner();
  await host.run(['ip', 'netns', 'add', ns]);
  let child: ChildProcess | undefined;
  const onSignal = (): void => {
    child?.kill('SIGTERM');
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await host.run(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    const argv = ['ip', 'netns', 'exec', ns, process.execPath, '--import', 'tsx', join(REPO, 'bench', 'main.ts'), `agent:${sizes.join(',')}`];
    child = spawn(argv[0] ?? 'ip', argv.slice(1), { stdio: 'inherit', env: { ...process.env, [NETNS_ENV]: ns } });
    killOnExit(child);
    const code = await new Promise<number | null>((resolve) => child?.once('exit', (c) => resolve(c)));
    if (code !== 0) process.exitCode = code ?? 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await stopNamespaceProcesses(host, ns);
    await host.run(['ip', 'netns', 'del', ns], { allowFailure: true });
  }
}

/** Whatever is still running in our namespace (after a crash of the inner run): SIGTERM, wait, SIGKILL; wireguard-go gone before the namespace goes. */
async function stopNamespaceProcesses(host: ProcessRunner, ns: string): Promise<void> {
  const pids = async (): Promise<number[]> =>
    (await host.run(['ip', 'netns', 'pids', ns], { allowFailure: true })).stdout.split('\n').filter((l) => /^[0-9]+$/.test(l.trim())).map(Number);
  const first = await pids();
  if (first.length === 0) return;
  for (const pid of first) signal(pid, 'SIGTERM');
  try {
    await waitFor(async () => (await pids()).length === 0, { timeoutMs: 15_000, intervalMs: 200, what: `processes in ${ns} to exit` });
  } catch {
    for (const pid of await pids()) signal(pid, 'SIGKILL');
    await waitFor(async () => (await pids()).length === 0, { timeoutMs: 10_000, intervalMs: 200, what: `processes in ${ns} to die` }).catch(() => undefined);
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Gone already.
  }
}

/** `ip` and `wg` wrappers that append their argv to `log`, then exec the real tool. */
async function writeShims(dir: string, log: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const runner = new ProcessRunner();
  // XL_BENCH_SPAWN_TIMES=<file>: every ip/wg/sysctl/iptables spawn also appends "<start> <end> <argv>"
  // (wall clock, seconds) there, to see which spawns of the start ran one after the other.
  const times = process.env.XL_BENCH_SPAWN_TIMES;
  for (const tool of times ? ['ip', 'wg', 'sysctl', 'iptables', 'ip6tables'] : ['ip', 'wg']) {
    const real = (await runner.run(['sh', '-c', `command -v ${tool}`])).stdout.trim();
    const count = tool === 'ip' || tool === 'wg' ? `printf '%s\\n' "${tool} $*" >> '${log}'\n` : '';
    const script = times
      ? `#!/bin/bash\n${count}[ "$1" = monitor ] && exec '${real}' "$@"\nt0=$EPOCHREALTIME\n'${real}' "$@"\nrc=$?\nprintf '%s %s %s\\n' "$t0" "$EPOCHREALTIME" "${tool} $*" >> '${times}'\nexit $rc\n`
      : `#!/bin/sh\n${count}exec '${real}' "$@"\n`;
    await writeFile(join(dir, tool), script);
    await chmod(join(dir, tool), 0o755);
  }
}

const isMutating = (line: string): boolean => !/^(wg show|ip -j|ip (-[0-9] )?(route|addr|link) show|ip netns)/.test(line);

async function commandLines(log: string): Promise<string[]> {
  try {
    return (await readFile(log, 'utf8')).split('\n').filter((l) => l !== '');
  } catch {
    return [];
  }
}

function rssMiB(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon' | 'RssFile'): Promise<number> {
  return readFile(`/proc/${pid}/status`, 'utf8').then((s) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(s);
    return m ? Number(m[1]) / 1024 : NaN;
  });
}

/**
 * Resident memory by mapping, from /proc/<pid>/smaps (MiB): the node binary's pages, other files
 * (shared libraries), malloc's main heap, and the anonymous rest (V8's heap, thread arenas, stacks).
 */
async function residentByMapping(pid: number): Promise<string> {
  const sums = { node: 0, files: 0, brk: 0, anon: 0 };
  let into: keyof typeof sums = 'anon';
  for (const line of (await readFile(`/proc/${pid}/smaps`, 'utf8')).split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const name = head[1] ?? '';
      into = name === '[heap]' ? 'brk' : name.endsWith('/node') ? 'node' : name.startsWith('/') ? 'files' : 'anon';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) sums[into] += Number(rss[1]) / 1024;
  }
  return `node binary ${sums.node.toFixed(1)}, other files ${sums.files.toFixed(1)}, malloc heap ${sums.brk.toFixed(1)}, other anonymous ${sums.anon.toFixed(1)}`;
}

/** Simulated node `i` of cluster "sim": a /24 out of 10.64.0.0/10 and a documentation-range endpoint. */
function simNode(i: number, credential: JoinCredential): Promise<SimulatedAgent> {
  return simulatedAgent(`sim-${i}`, {
    cluster: 'sim',
    location: `region-${i % 10}`,
    podCidrs: [`10.${64 + (i >> 8)}.${i & 255}.0/24`],
    endpoints: [`198.51.100.${1 + (i % 250)}:51820`],
    privateAddresses: [`172.16.${(i >> 8) & 255}.${i & 255}`],
    gatewayEligible: false,
  }).then((a) => ({ ...a, joinCredential: credential }));
}

async function measure(n: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'xl-bench-agent-'));
  const id = randomBytes(3).toString('hex');
  const iface = `xl${id}w`;
  const log = join(dir, 'commands.log');
  const server = await NatsServer.start({ name: `xl-bench-agent-${id}` });
  let coordinator: CoordinatorProcess | undefined;
  let agent: ChildProcess | undefined;
  let nc: NatsConnection | undefined;
  let fleet: AgentFleet | undefined;
  const rows: (string | number)[][] = [];
  const agentLog: string[] = [];
  const row = (figure: string, value: string | number): void => {
    rows.push([figure, value]);
  };
  try {
    const key = await generateSigningKeyPair();
    const keyFile = join(dir, 'coordinator.key');
    await writeSigningKeyFile(keyFile, key);
    const startCoordinator = (): CoordinatorProcess =>
      CoordinatorProcess.start({ natsUrl: server.url, bucket: 'crosslink', subjectPrefix: 'crosslink.v1', signingKeyFile: keyFile, nodeTtl: '60s', leaseTtl: '10s', podName: 'coordinator-0',
        // The simulated fleet registers as one storm: the per-cluster admission limit is not measured here.
        registrationRate: 100_000, registrationBurst: 1_000_000 });
    coordinator = startCoordinator();
    nc = await connect({ servers: server.url, name: 'xl-bench-sim', maxReconnectAttempts: -1, reconnectTimeWait: 500 });
    // The simulated nodes heartbeat as the agent does: MAC'd (unless XL_BENCH_HEARTBEAT_FORM=signed).
    const client = agentClient(nc, undefined, { timeoutMs: 10_000, ...(benchHeartbeatForm() === 'mac' ? { heartbeatMac: key.publicKey } : {}) });
    await waitFor(() => serves(nc), { timeoutMs: 60_000, intervalMs: 50, what: 'coordinator to answer' });

    const coordinatorBin = join(REPO, 'bin', 'crosslink-coordinator');
    const cli = new ProcessRunner();
    const enroll = async (name: string, cidr: string): Promise<JoinCredential> => {
      const out = join(dir, `${name}.credential`);
      await cli.run([coordinatorBin, 'cluster', 'add', name, '--pod-cidr', cidr, '--credential-out', out, '--nats-url', server.url, '--signing-key-file', keyFile, '--bucket', 'crosslink'], { timeoutMs: 60_000 });
      return parseJoinCredential(await readFile(out, 'utf8'));
    };
    const simCredential = await enroll('sim', '10.64.0.0/10');
    await enroll('real', '10.250.0.0/16');

    // N simulated nodes, registered and heartbeating.
    const sims = await Promise.all(Array.from({ length: n }, (_, i) => simNode(i, simCredential)));
    const t0 = performance.now();
    let heartbeatIntervalMs = 10_000;
    await mapLimit(sims, 32, async (a) => {
      const reply = await registerWithRetry(client, a);
      heartbeatIntervalMs = reply.heartbeatIntervalMs;
    });
    const registerMs = performance.now() - t0;
    fleet = new AgentFleet({ nc, prefix: 'crosslink.v1', credentialFor: () => undefined, coordinatorKey: key.publicKey }, sims, 5_000);
    fleet.startHeartbeats(heartbeatIntervalMs);

    // The real agent.
    const shims = join(dir, 'shims');
    await writeShims(shims, log);
    const agentArgs = [
      '--no-kubernetes',
      '--nats-url', server.url,
      '--node-name', 'real-0',
      '--cluster', 'real',
      '--location', 'bench',
      '--pod-cidr', '10.250.0.0/24',
      '--endpoint', '192.0.2.1:51820',
      '--private-address', '192.0.2.1',
      '--listen-port', '51820',
      '--interface', iface,
      '--state-dir', join(dir, 'agent'),
      '--wireguard', 'userspace',
      '--coordinator-key', key.publicKey,
      '--join-credential-file', join(dir, 'real.credential'),
      // XL_BENCH_AGENT_LOG=<file>: the agent logs at info (XL_BENCH_AGENT_LOG_LEVEL, e.g. debug for each
      // record's arrival) and its log is written there (where start-up and join time go).
      '--log-level', process.env.XL_BENCH_AGENT_LOG ? (process.env.XL_BENCH_AGENT_LOG_LEVEL ?? 'info') : 'warn',
    ];
    // Where the memory goes: on SIGUSR2 the agent prints process.memoryUsage() and V8's heap spaces
    // (a preloaded hook; NODE_OPTIONS also carries XL_BENCH_AGENT_NODE_OPTIONS, to try node flags).
    const memHook = join(dir, 'memory-report.cjs');
    await writeFile(memHook, MEMORY_HOOK);
    const nodeOptions = [`--require=${memHook}`, process.env.XL_BENCH_AGENT_NODE_OPTIONS ?? ''].join(' ').trim();
    const env = {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CROSSLINK_') && k !== NETNS_ENV && k !== 'NODE_OPTIONS')),
      PATH: `${shims}:${process.env.PATH ?? ''}`,
      NODE_OPTIONS: nodeOptions,
    };
    // The agent's peer prober sends every peer a probe every 2 s. Simulated peers never answer: each
    // probe would make wireguard-go start a handshake towards an unreachable endpoint and queue
    // packets, and every lost probe asks for a full reconcile — neither happens in a live mesh. So,
    // once the agent has its overlay IP, probes into the tunnel are DNATed back to its own prober
    // (which answers; conntrack restores the peer's address as the reply's source), so every peer
    // "answers" as a live one would (our namespace only). XL_BENCH_AGENT_PROBES=1 leaves them alone.
    const probes = process.env.XL_BENCH_AGENT_PROBES === '1';
    const answerProbes = async (): Promise<void> => {
      const ip = await waitFor(
        async () => {
          const r = await new ProcessRunner().run(['ip', '-j', '-4', 'addr', 'show', 'dev', iface], { allowFailure: true });
          const local = r.exitCode === 0 ? (JSON.parse(r.stdout || '[]') as { addr_info?: { local?: string }[] }[])[0]?.addr_info?.[0]?.local : undefined;
          return local;
        },
        { timeoutMs: 120_000, intervalMs: 50, what: 'the agent overlay IP' },
      );
      await new ProcessRunner().run(['/usr/sbin/nft', '-f', '-'], {
        input: `table ip xlbench {\n chain out {\n  type nat hook output priority -100;\n  oifname "${iface}" udp dport ${PROBE_PORT} dnat to ${ip}\n }\n}\n`,
      });
    };
    const startedAt = performance.now();
    if (process.env.XL_BENCH_SPAWN_TIMES) await writeFile(process.env.XL_BENCH_SPAWN_TIMES, `${Date.now() / 1000} - agent spawned\n`);
    agent = spawn(join(REPO, 'bin', 'crosslink-agent'), agentArgs, { stdio: ['ignore', 'pipe', 'pipe'], env });
    killOnExit(agent);
    for (const s of [agent.stdout, agent.stderr]) s?.on('data', (c: Buffer) => agentLog.push(c.toString()));
    const agentPid = agent.pid ?? -1;
    const probesAnswered = probes ? Promise.resolve() : answerProbes();
    const runner = new ProcessRunner();
    const peers = async (): Promise<Set<string>> => {
      const r = await runner.run(['wg', 'show', iface, 'peers'], { allowFailure: true });
      return new Set(r.exitCode === 0 ? r.stdout.split('\n').filter((l) => l !== '') : []);
    };
    const ownedRoutes = async (): Promise<number> => {
      const r = await runner.run(['ip', '-j', 'route', 'show', 'proto', '149'], { allowFailure: true });
      return r.exitCode === 0 && r.stdout.trim() !== '' ? (JSON.parse(r.stdout) as unknown[]).length : 0;
    };
    // Routes first, from /proc/net/route (this namespace's IPv4 main table, no process spawned; every
    // simulated node is IPv4): polled every 25 ms it neither takes CPU from the start measured (an
    // `ip -j route` spawn every 100 ms did) nor adds up to 100 ms of interval to the figure. Then the
    // exact checks: our routes (proto 149), and `wg show peers` (wireguard-go serialises every peer
    // for it; asked during the agent's `wg set`, it answers when that is done).
    const viaInterface = async (): Promise<number> => (await readFile('/proc/net/route', 'utf8').catch(() => '')).split('\n').filter((l) => l.startsWith(`${iface}\t`)).length;
    await waitFor(async () => (await viaInterface()) >= 2 * n && (await ownedRoutes()) >= 2 * n && (await peers()).size >= n, {
      timeoutMs: 300_000,
      intervalMs: 25,
      what: `the agent to program ${n} peers and ${2 * n} routes (agent log: ${agentLog.join('').slice(-800)})`,
    });
    const programmedMs = performance.now() - startedAt;
    if (process.env.XL_BENCH_SPAWN_TIMES) await writeFile(process.env.XL_BENCH_SPAWN_TIMES, `${Date.now() / 1000} - programmed (seen by the bench)\n`, { flag: 'a' });
    await probesAnswered;
    const startLines = await commandLines(log);
    const wgGoPid = await wireguardGoPid(iface);
    const convergedRss = await rssMiB(agentPid, 'VmRSS');
    const memory = await memoryReport(agentPid, agentLog);

    // Joins and leaves, one at a time.
    const joinMs: number[] = [];
    /** Of each join: until the coordinator's registration answer (the rest is KV fan-out, the agent, the poll). */
    const joinRegisterMs: number[] = [];
    const leaveMs: number[] = [];
    const joinCmds: number[] = [];
    for (let j = 0; j < JOINS; j++) {
      const joiner = await simNode(n + j, simCredential);
      const before = (await commandLines(log)).length;
      const tj = performance.now();
      // Markers in the agent's log (XL_BENCH_AGENT_LOG) for the per-join breakdown (docs/benchmarks.md).
      agentLog.push(`${JSON.stringify({ time: Date.now(), msg: 'bench: join sent', node: joiner.name })}\n`);
      await registerWithRetry(client, joiner);
      joinRegisterMs.push(performance.now() - tj);
      agentLog.push(`${JSON.stringify({ time: Date.now(), msg: 'bench: join answered', node: joiner.name })}\n`);
      await waitFor(async () => (await peers()).has(joiner.wireguard.publicKey), { timeoutMs: 30_000, intervalMs: 10, what: `${joiner.name} in wg show` });
      joinMs.push(performance.now() - tj);
      agentLog.push(`${JSON.stringify({ time: Date.now(), msg: 'bench: join seen', node: joiner.name })}\n`);
      // Let the join's apply finish (routes follow in the same apply) before counting.
      await waitFor(async () => (await ownedRoutes()) >= 2 * (n + 1), { timeoutMs: 30_000, intervalMs: 10, what: `${joiner.name}'s routes` });
      joinCmds.push((await commandLines(log)).slice(before).filter(isMutating).length);
      const tl = performance.now();
      await client.deregister(joiner);
      await waitFor(async () => !(await peers()).has(joiner.wireguard.publicKey), { timeoutMs: 30_000, intervalMs: 10, what: `${joiner.name} out of wg show` });
      leaveMs.push(performance.now() - tl);
      await waitFor(async () => (await ownedRoutes()) === 2 * n, { timeoutMs: 30_000, intervalMs: 10, what: `${joiner.name}'s routes gone` });
    }

    // Idle.
    const idleBefore = (await commandLines(log)).length;
    const cpu0 = await processCpuMs(agentPid);
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const idleCpu = (await processCpuMs(agentPid)) - cpu0;
    const idleLines = (await commandLines(log)).slice(idleBefore);
    const afterIdleRss = await rssMiB(agentPid, 'VmRSS');
    // Anonymous (heaps, malloc) vs file-backed (the node binary's pages, ~32–38 MiB whatever we load).
    const afterIdleSplit = `${(await rssMiB(agentPid, 'RssAnon')).toFixed(0)} / ${(await rssMiB(agentPid, 'RssFile')).toFixed(0)}; ${await residentByMapping(agentPid)}`;
    // XL_BENCH_AGENT_SMAPS=<file>: the agent's /proc/<pid>/smaps after idle, per mapping (where the RSS is).
    if (process.env.XL_BENCH_AGENT_SMAPS) await writeFile(process.env.XL_BENCH_AGENT_SMAPS, await readFile(`/proc/${agentPid}/smaps`, 'utf8'));
    // The same breakdown after the joins, leaves and idle window: is RSS growth V8's heap or native memory?
    const memoryAfterIdle = await memoryReport(agentPid, agentLog);
    const peakRss = await rssMiB(agentPid, 'VmHWM');
    const wgGoRss = wgGoPid === undefined ? NaN : await rssMiB(wgGoPid, 'VmRSS');

    // Coordinator crash and restart with N heartbeating nodes (same POD_NAME: it reclaims its lease).
    // A failure here keeps the figures measured above.
    const restartRows: [string, string][] = [];
    try {
      const names = sims.map((a) => a.name);
      const killedAt = performance.now();
      fleet.heardAgain.mark(killedAt);
      await coordinator.stop('SIGKILL');
      coordinator = startCoordinator();
      await waitFor(() => serves(nc), { timeoutMs: 60_000, intervalMs: 20, what: 'the restarted coordinator to answer' });
      const servesMs = performance.now() - killedAt;
      await waitFor(() => fleet?.heardAgain.allHeard(names), { timeoutMs: 120_000, intervalMs: 50, what: 'every simulated node heard again' });
      const heard = fleet.heardAgain.summary(names);
      restartRows.push(
        ['coordinator SIGKILL → serving again (ms)', ms(servesMs)],
        ['  nodes the outage caught / all of them heard again (ms after the kill)', `${heard.caught} / ${ms(heard.caughtHeardMs)}`],
        [`  every node heard again (ms; each at its own phase, heartbeat interval ${heartbeatIntervalMs} ms)`, ms(heard.allHeardMs)],
        ['  delay added to a node\'s heartbeat: p99 / max (ms)', `${ms(heard.addedDelayMs.p99)} / ${ms(heard.addedDelayMs.max)}`],
      );
    } catch (err) {
      restartRows.push(['coordinator SIGKILL → restart', `failed: ${errorMessage(err)}`]);
      process.exitCode = 1;
    }
    row('simulated nodes registered (wall, ms)', ms(registerMs));
    row('start → all peers and routes programmed (ms)', ms(programmedMs));
    row('processes the agent spawned until programmed (mutating)', `${startLines.length} (${startLines.filter(isMutating).length})`);
    row('agent RSS after convergence / after idle / peak (MiB)', `${convergedRss.toFixed(0)} / ${afterIdleRss.toFixed(0)} / ${peakRss.toFixed(0)}`);
    row('agent memory at convergence (MiB): rss, heap used / total, external, array buffers', memory);
    row('agent memory after idle (MiB): rss, heap used / total, external, array buffers', memoryAfterIdle);
    row('agent RSS after idle: anonymous / file-backed (MiB)', afterIdleSplit);
    row('wireguard-go RSS (MiB)', wgGoRss.toFixed(0));
    row(`one join → peer in wg show, p50 / p99 (ms, ${JOINS} joins)`, `${ms(percentile(joinMs, 50))} / ${ms(percentile(joinMs, 99))}`);
    row('  of which the coordinator\'s registration answer, p50 / p99 (ms)', `${ms(percentile(joinRegisterMs, 50))} / ${ms(percentile(joinRegisterMs, 99))}`);
    row('one leave → peer gone from wg show, p50 / p99 (ms)', `${ms(percentile(leaveMs, 50))} / ${ms(percentile(leaveMs, 99))}`);
    row('mutating commands per join, max', Math.max(...joinCmds));
    row(`idle ${IDLE_MS / 1000} s: agent CPU, commands (mutating)`, `${idleCpu} ms, ${idleLines.length} (${idleLines.filter(isMutating).length})`);
    for (const [figure, value] of restartRows) row(figure, value);
  } catch (err) {
    console.error(`agent:${n} failed: ${errorMessage(err)}`);
    process.exitCode = 1;
  } finally {
    if (process.env.XL_BENCH_AGENT_LOG) await writeFile(process.env.XL_BENCH_AGENT_LOG, agentLog.join(''));
    await fleet?.stopHeartbeats();
    if (agent && agent.exitCode === null) {
      const exited = new Promise((r) => agent?.once('exit', r));
      agent.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    }
    await coordinator?.stop();
    await nc?.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const load = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  printTable({
    title: `Real agent among ${n} simulated nodes`,
    params: { nodes: n, 'load average (1/5/15 min, at the end)': load, wireguard: 'userspace (wireguard-go)', 'peer probes': process.env.XL_BENCH_AGENT_PROBES === '1' ? 'sent (unanswered)' : 'answered (DNAT to its own prober)' },
    header: ['figure', 'value'],
    rows,
    notes: [
      'One crosslink-agent (bin/, compiled, default settings) in its own network namespace with nats-server, the coordinator and the simulated nodes.',
      'Commands counted by ip/wg shims on the agent PATH; "mutating" leaves out reads (show, -j).',
    ],
  });
}

/** The wireguard-go serving `iface` (`wireguard-go -f <iface>`; the agent's own argv names the interface too). */
async function wireguardGoPid(iface: string): Promise<number | undefined> {
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const argv: string[] = await readFile(`/proc/${entry}/cmdline`, 'utf8').then((t) => t.split('\0'), () => []);
    if ((argv[0] ?? '').endsWith('wireguard-go') && argv.includes(iface)) return Number(entry);
  }
  return undefined;
}

const MEMORY_HOOK = `let snapshotTaken = false;
process.on('SIGUSR2', () => {
  // XL_BENCH_HEAP_SNAPSHOT=<file>: a V8 heap snapshot at convergence, the first report (open it in Chrome DevTools).
  if (process.env.XL_BENCH_HEAP_SNAPSHOT && !snapshotTaken) require('node:v8').writeHeapSnapshot(process.env.XL_BENCH_HEAP_SNAPSHOT);
  snapshotTaken = true;
  const m = process.memoryUsage();
  const spaces = require('node:v8').getHeapSpaceStatistics().map((s) => s.space_name.replace('_space', '') + '=' + (s.space_used_size / 1048576).toFixed(1) + '/' + (s.space_size / 1048576).toFixed(1));
  const mib = (x) => (x / 1048576).toFixed(1);
  // Node's own modules loaded so far, and the big lazily loaded ones among them (fetch's undici, web streams: each several MiB).
  const internal = process.moduleLoadList.filter((m) => m.startsWith('NativeModule '));
  const big = internal.filter((m) => /undici|webstreams|inspector|wasm/.test(m)).map((m) => m.slice('NativeModule '.length));
  // XL_BENCH_AGENT_MODULES=<file>: every module node has loaded (its built-ins' sources and code caches are pages of the node binary).
  if (process.env.XL_BENCH_AGENT_MODULES) require('node:fs').writeFileSync(process.env.XL_BENCH_AGENT_MODULES, process.moduleLoadList.join('\\n') + '\\n');
  process.stderr.write('XL-MEMORY ' + [mib(m.rss), mib(m.heapUsed) + ' / ' + mib(m.heapTotal), mib(m.external), mib(m.arrayBuffers)].join(', ') + ' | ' + spaces.join(' ') + ' | node modules ' + internal.length + (big.length ? ' incl. ' + big.join(' ') : '') + '\\n');
});
`;

/** Asks the agent (SIGUSR2, MEMORY_HOOK) for its memory breakdown and waits for the line. */
async function memoryReport(pid: number, log: string[]): Promise<string> {
  const before = log.join('').split('XL-MEMORY ').length;
  signal(pid, 'SIGUSR2');
  try {
    return await waitFor(
      () => {
        const parts = log.join('').split('XL-MEMORY ');
        return parts.length > before ? (parts.at(-1) ?? '').split('\n')[0] : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 50, what: 'the agent memory report' },
    );
  } catch {
    return 'n/a';
  }
}

/** Is the coordinator answering? (An unregistered probe gets "unknown-node" from the leader only.) */
async function serves(nc: NatsConnection | undefined): Promise<boolean> {
  if (!nc) return false;
  const probe = await probeAgent;
  const hb: Heartbeat = { v: 1, name: probe.name, identityKey: probe.identity.publicKey, generation: 0, sentAt: Date.now() };
  try {
    await rpc(nc, subjects().heartbeat, await signed(hb, probe.identity.secretKey), HeartbeatReply, 500);
    return true;
  } catch {
    return false;
  }
}
const probeAgent = simulatedAgent('xl-bench-probe');

async function registerWithRetry(client: AgentClient, agent: SimulatedAgent): Promise<Extract<RegisterReply, { ok: true }>> {
  let last = '';
  for (let attempt = 1; attempt <= 10; attempt++) {
    try {
      const reply = await client.register(agent);
      if (reply.ok) return reply;
      last = `${reply.error.code}: ${reply.error.message}`;
      if (reply.error.code !== 'unavailable') break;
    } catch (err) {
      last = errorMessage(err);
    }
    await new Promise((r) => setTimeout(r, 200 * attempt));
  }
  throw new Error(`registration of ${agent.name} failed: ${last}`);
}

