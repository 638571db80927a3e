// A running lab: the network built from a plan, plus nats-server, coordinator and one agent per
// node, all real processes. Used by `lab up/down/status`, the demo and the end-to-end tests.
import { mkdir, readFile, rm } from 'node:fs/promises';
import { loadOrCreateSigningKey } from '../coordinator/signing-key.ts';
import { CrosslinkError, TimeoutError, ValidationError, errorMessage } from '../lib/errors.ts';
import { ProcessRunner, type RunOptions, type RunResult, type Runner } from '../lib/runner.ts';
import { waitFor } from '../lib/wait.ts';
import { fetchAgentStatus, summarizeStatus } from './agent-status.ts';
import { agentArgv, clusterAddArgv, coordinatorArgv, logFile, natsArgv, nodeDir, signingKeyFile, statusSocket, type LabPaths } from './commands.ts';
import { checkConvergence, type StatusOrError } from './converge.ts';
import { checkLabId } from './names.ts';
import { readNatsHealth, type NatsClusterHealth } from './nats-health.ts';
import { checkNatsServerCount, findNatsMember, type NatsMemberPlan } from './nats-plan.ts';
import { buildNetwork, cutNodeLink, restoreNodeLink } from './network.ts';
import { namespacePids } from './netns-pids.ts';
import { mapLimit } from '../lib/pool.ts';
import { findNode, planLab, type LabPlan, type NodePlan, type PodPlan } from './plan.ts';
import { isAlive, pidOf, roleOf, spawnDetached, terminate, type ProcessRef } from './processes.ts';
import { labDir, readState, REPO_ROOT, writeState, type LabState, type ProcessEntry } from './state.ts';
import { teardownLab, type TeardownReport } from './teardown.ts';
import { parseTopology } from './topology.ts';
import type { AgentStatus } from '../protocol/status.ts';
import type { StatusReadOptions } from '../protocol/fresh-read.ts';

export interface LabUpOptions {
  readonly id: string;
  readonly topologyText: string;
  /** Names the topology in errors and `lab status` (usually the file path). */
  readonly topologySource: string;
  readonly repoRoot?: string;
  readonly runner?: Runner;
  /** Nodes whose agents `up` does not start (tests start them later with startAgent). */
  readonly deferAgents?: readonly string[];
  readonly logLevel?: string;
  /** NATS servers in the control namespace: 1 (default) or a cluster of 3 or 5 (bucket at R3). */
  readonly natsServers?: number;
  readonly onProgress?: (line: string) => void;
  /** Aborting makes `up` stop between steps and tear down what it built. */
  readonly signal?: AbortSignal;
}

export interface PingResult {
  readonly from: string;
  readonly to: string;
  readonly ok: boolean;
  readonly rttMs: number | null;
  readonly detail: string;
}

export class Lab {
  private constructor(
    readonly plan: LabPlan,
    readonly paths: LabPaths,
    readonly runner: Runner,
    private state: LabState,
    private readonly progress: (line: string) => void,
  ) {}

  get id(): string {
    return this.plan.id;
  }

  /** Builds the lab (after removing any leftover of the same id) and starts its processes. */
  static async up(options: LabUpOptions): Promise<Lab> {
    const id = checkLabId(options.id);
    const topology = parseTopology(options.topologyText, options.topologySource);
    const natsServers = checkNatsServerCount(options.natsServers ?? 1);
    const plan = planLab(topology, id, { natsServers });
    const runner = options.runner ?? new ProcessRunner();
    const repoRoot = options.repoRoot ?? REPO_ROOT;
    const paths: LabPaths = { repoRoot, dir: labDir(id) };
    const progress = options.onProgress ?? (() => undefined);
    const leftover = await teardownLab(id, runner);
    if (leftover.namespacesDeleted > 0) progress(`removed a leftover lab ${id} (${leftover.namespacesDeleted} namespaces)`);
    if (leftover.errors.length > 0) throw new CrosslinkError(`could not remove leftovers of lab ${id}: ${leftover.errors.join('; ')}`);

    await mkdir(paths.dir, { recursive: true });
    const state: LabState = {
      id,
      createdAt: Date.now(),
      topologyText: options.topologyText,
      topologySource: options.topologySource,
      coordinatorPublicKey: null,
      natsServers,
      processes: [],
    };
    await writeState(paths.dir, state);
    const lab = new Lab(plan, paths, runner, state, progress);
    const signal = options.signal;
    try {
      signal?.throwIfAborted();
      progress(`network: ${plan.namespaces.length} namespaces (${plan.clouds.length} clouds, ${plan.nodes.length} nodes, ${plan.pods.length} pods)`);
      await buildNetwork(plan, runner);
      signal?.throwIfAborted();
      const n = plan.nats.members.length;
      progress(`control host: ${n === 1 ? 'nats-server' : `${n} nats-servers (cluster ${plan.nats.clusterName}, bucket R${plan.nats.bucketReplicas})`} (JetStream) and coordinator`);
      // One at a time: each start records the lab's state file (and listens before its routes are up).
      for (const m of plan.nats.members) await lab.startNats(m.name);
      const key = await loadOrCreateSigningKey(signingKeyFile(paths));
      lab.state = { ...lab.state, coordinatorPublicKey: key.publicKey };
      await lab.startCoordinator(options.logLevel);
      progress(`enrolling ${plan.clouds.length} clouds (crosslink-coordinator cluster add)`);
      await lab.enrollClouds();
      signal?.throwIfAborted();
      const agents = plan.nodes.filter((n) => !(options.deferAgents ?? []).includes(n.name));
      progress(`agents: starting ${agents.length} (wireguard-go userspace)`);
      for (const n of agents) {
        signal?.throwIfAborted();
        await lab.startAgent(n.name, options.logLevel);
      }
      signal?.throwIfAborted();
      return lab;
    } catch (err) {
      progress(`up failed (${errorMessage(err)}); tearing down`);
      await lab.down();
      throw err;
    }
  }

  /** A handle on a lab started by another process (for `lab status`). */
  static async attach(id: string, options: { repoRoot?: string; runner?: Runner } = {}): Promise<Lab> {
    checkLabId(id);
    const repoRoot = options.repoRoot ?? REPO_ROOT;
    const paths: LabPaths = { repoRoot, dir: labDir(id) };
    const state = await readState(paths.dir);
    if (!state) throw new CrosslinkError(`no lab "${id}" here (${paths.dir}/state.json missing); start one with: npm run lab -- up --id ${id}`);
    const plan = planLab(parseTopology(state.topologyText, state.topologySource), id, { natsServers: state.natsServers ?? 1 });
    return new Lab(plan, paths, options.runner ?? new ProcessRunner(), state, () => undefined);
  }

  get coordinatorPublicKey(): string | null {
    return this.state.coordinatorPublicKey;
  }

  get processes(): readonly ProcessEntry[] {
    return this.state.processes;
  }

  node(name: string): NodePlan {
    return findNode(this.plan, name);
  }

  private async record(entry: ProcessEntry | null, removeName?: string): Promise<void> {
    const kept = this.state.processes.filter((p) => p.name !== (entry?.name ?? removeName));
    this.state = { ...this.state, processes: entry ? [...kept, entry] : kept };
    await writeState(this.paths.dir, this.state);
  }

  private entry(name: string): ProcessEntry | undefined {
    return this.state.processes.find((p) => p.name === name);
  }

  private async launch(role: ProcessEntry['role'], name: string, ns: string, argv: readonly string[]): Promise<ProcessEntry> {
    const log = logFile(this.paths, name);
    const ref = await spawnDetached(argv, log);
    const entry: ProcessEntry = { role, name, ns, pid: ref.pid, startTime: ref.startTime, log };
    await this.record(entry);
    return entry;
  }

  private async stopEntry(name: string, graceMs: number): Promise<void> {
    const e = this.entry(name);
    if (!e) return;
    const alive = await terminate([{ pid: e.pid, startTime: e.startTime }], { graceMs, killAfter: false });
    if (alive.length > 0) throw new CrosslinkError(`${name} (pid ${e.pid}) did not exit within ${graceMs} ms after SIGTERM`);
    await this.record(null, name);
  }

  isRunning(name: string): boolean {
    const e = this.entry(name);
    return e !== undefined && isAlive({ pid: e.pid, startTime: e.startTime });
  }

  /** Starts one NATS server (default: the only one), waiting until it listens. */
  async startNats(name?: string): Promise<void> {
    const member = this.natsMember(name);
    const log = logFile(this.paths, member.name);
    await rm(log, { force: true });
    const e = await this.launch('nats-server', member.name, this.plan.ctlNs, natsArgv(this.plan, this.paths, member));
    await waitFor(
      async () => {
        if (!isAlive({ pid: e.pid, startTime: e.startTime })) throw new CrosslinkError(`${member.name} exited: ${await this.logTail(member.name, 10)}`);
        return (await readFile(log, 'utf8')).includes('Server is ready');
      },
      { timeoutMs: 20_000, what: `${member.name} to be ready` },
    );
  }

  /** SIGTERM and wait; JetStream keeps its store, so startNats() resumes with the same data. */
  async stopNats(name?: string): Promise<void> {
    await this.stopEntry(this.natsMember(name).name, 10_000);
  }

  /** What the lab's NATS cluster members report (leaders, replicas); see lab/nats-health.ts. */
  natsHealth(): Promise<NatsClusterHealth> {
    return readNatsHealth(this.runner, this.plan.ctlNs, this.plan.nats);
  }

  /** A NATS server by process name (`nats-1`); without a name, the lab's only one. */
  natsMember(name?: string): NatsMemberPlan {
    const nats = this.plan.nats;
    const member = name === undefined ? (nats.members.length === 1 ? nats.members[0] : undefined) : findNatsMember(nats, name);
    if (!member) throw new ValidationError('NATS server', name ?? '(none given)', `lab ${this.id} runs ${nats.members.map((m) => m.name).join(', ')}: name one of them`);
    return member;
  }

  async startCoordinator(logLevel = 'info'): Promise<void> {
    await this.launch('coordinator', 'coordinator', this.plan.ctlNs, coordinatorArgv(this.plan, this.paths, logLevel));
  }

  /**
   * Enrolls every cloud as an operator would, with `crosslink-coordinator cluster add` in the control
   * namespace (its nodes' pod CIDRs as the cluster's ranges, its topology). Retried until the
   * coordinator has created the bucket.
   */
  async enrollClouds(): Promise<void> {
    const enroll = async (cloud: (typeof this.plan.clouds)[number]): Promise<void> => {
      let last = '';
      await waitFor(
        async () => {
          const r = await this.runner.run(clusterAddArgv(this.plan, this.paths, cloud), { allowFailure: true, timeoutMs: 60_000 });
          last = `${r.stdout}${r.stderr}`.trim();
          return r.exitCode === 0 || /already enrolled/.test(last);
        },
        { timeoutMs: 90_000, intervalMs: 500, what: `cluster add ${cloud.name} (last: ${last.slice(-300)})` },
      );
    };
    // The first one waits for the coordinator to create the bucket; the others then run side by side
    // (each is a process start; the coordinator checks every definition against all enrolled ones).
    const [first, ...rest] = this.plan.clouds;
    if (first) await enroll(first);
    await mapLimit(rest, 4, enroll);
  }

  async stopCoordinator(): Promise<void> {
    await this.stopEntry('coordinator', 15_000);
  }

  /** `extraArgs` are appended to the agent's command line (e.g. `--policy-enforcement required`). */
  async startAgent(name: string, logLevel = 'info', extraArgs: readonly string[] = []): Promise<void> {
    const node = this.node(name);
    const key = this.state.coordinatorPublicKey;
    if (!key) throw new CrosslinkError('coordinator key unknown: start the coordinator first');
    if (this.isRunning(name)) throw new CrosslinkError(`agent ${name} is already running`);
    await mkdir(nodeDir(this.paths, name), { recursive: true });
    await this.launch('agent', name, node.ns, [...agentArgv(this.plan, node, this.paths, key, logLevel), ...extraArgs]);
  }

  /**
   * SIGTERM the agent and wait for it to exit (with --cleanup it deregisters and removes its
   * interface). Then makes sure no wireguard-go is left in its namespace.
   */
  async stopAgent(name: string, graceMs = 20_000): Promise<void> {
    const node = this.node(name);
    await this.stopEntry(name, graceMs);
    const leftovers = (await namespacePids(node.ns)).filter((pid) => roleOf(pid) === 'wireguard-go');
    if (leftovers.length > 0) {
      const alive = await terminate(leftovers, { graceMs: 10_000, killAfter: true });
      if (alive.length > 0) throw new CrosslinkError(`wireguard-go ${alive.map(pidOf).join(', ')} in ${node.ns} would not exit`);
      throw new CrosslinkError(`agent ${name} exited but left wireguard-go running (pids ${leftovers.join(', ')}; now stopped)`);
    }
  }

  /** Cuts the node off the network (its VPC port at the edge): it looks dead to everyone else. */
  async cutNode(name: string): Promise<void> {
    await cutNodeLink(this.runner, this.node(name));
  }

  async restoreNode(name: string): Promise<void> {
    await restoreNodeLink(this.runner, this.node(name));
  }

  /** Runs a command inside a namespace of this lab. */
  exec(ns: string, argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    return this.runner.run(['ip', 'netns', 'exec', ns, ...argv], options);
  }

  statusSocket(name: string): string {
    return statusSocket(this.paths, name);
  }

  /** `{ fresh: true }`: the kernel as it is now (GET /status?fresh=1), e.g. right after a test changed something. */
  status(name: string, read?: StatusReadOptions): Promise<AgentStatus> {
    return fetchAgentStatus(this.statusSocket(name), undefined, read);
  }

  /** Names of the nodes whose agent process is alive. */
  runningAgents(): Set<string> {
    return new Set(this.plan.nodes.filter((n) => this.isRunning(n.name)).map((n) => n.name));
  }

  async statuses(names: Iterable<string> = this.runningAgents()): Promise<Map<string, StatusOrError>> {
    const out = new Map<string, StatusOrError>();
    await Promise.all(
      [...names].map(async (n) => {
        try {
          out.set(n, await this.status(n));
        } catch (err) {
          out.set(n, err instanceof Error ? err : new Error(String(err)));
        }
      }),
    );
    return out;
  }

  /**
   * Waits until every running agent is ready and has a path to every running node of the other
   * clouds. Throws a TimeoutError naming what is missing, or the abort reason if `signal` fires.
   */
  async waitConverged(timeoutMs: number, signal?: AbortSignal): Promise<Map<string, AgentStatus>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      const running = this.runningAgents();
      const statuses = await this.statuses(running);
      const c = checkConvergence(this.plan, running, statuses);
      if (c.converged) {
        const ok = new Map<string, AgentStatus>();
        for (const [k, v] of statuses) if (!(v instanceof Error)) ok.set(k, v);
        return ok;
      }
      if (Date.now() >= deadline) {
        const more = c.problems.length > 6 ? ` (+${c.problems.length - 6} more)` : '';
        throw new TimeoutError(`lab ${this.id} not converged after ${timeoutMs} ms: ${c.problems.slice(0, 6).join('; ')}${more}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** One ICMP echo from a pod to another pod (by pod name or IP). */
  async ping(from: PodPlan, to: PodPlan | string, timeoutSec = 1): Promise<PingResult> {
    const ip = typeof to === 'string' ? to : to.ip;
    const r = await this.exec(from.ns, ['ping', '-n', '-q', '-c', '1', '-W', String(timeoutSec), ip], {
      allowFailure: true,
      timeoutMs: (timeoutSec + 5) * 1000,
    });
    const rtt = /= [0-9.]+\/([0-9.]+)\//.exec(r.stdout);
    const ok = r.exitCode === 0;
    return {
      from: from.name,
      to: typeof to === 'string' ? to : to.name,
      ok,
      rttMs: ok && rtt?.[1] ? Number(rtt[1]) : null,
      detail: ok ? '' : (r.stdout + r.stderr).trim().split('\n').slice(-2).join(' | '),
    };
  }

  /**
   * One ICMP echo from a pod to each of `targets`, all in parallel inside one `ip netns exec` (one
   * process start per source instead of one per pair: the demo's 240 pairs took ~40 s of spawns on
   * a loaded 2-core machine).
   */
  async pingMany(from: PodPlan, targets: readonly PodPlan[], timeoutSec = 1): Promise<PingResult[]> {
    if (targets.length === 0) return [];
    const script = 'for ip in "$@"; do (out=$(ping -n -q -c 1 -W "$W" "$ip" 2>&1); rc=$?; printf "@@ %s %s %s\\n" "$ip" "$rc" "$(printf "%s" "$out" | tr "\\n" " ")") & done; wait';
    const r = await this.exec(from.ns, ['env', `W=${timeoutSec}`, 'sh', '-c', script, 'sh', ...targets.map((t) => t.ip)], {
      allowFailure: true,
      timeoutMs: (timeoutSec + 10) * 1000,
    });
    const byIp = new Map<string, { rc: number; out: string }>();
    for (const line of r.stdout.split('\n')) {
      const m = /^@@ (\S+) (\d+) ?(.*)$/.exec(line);
      if (m?.[1] && m[2]) byIp.set(m[1], { rc: Number(m[2]), out: m[3] ?? '' });
    }
    return targets.map((to) => {
      const got = byIp.get(to.ip);
      const ok = got?.rc === 0;
      const rtt = got ? /= [0-9.]+\/([0-9.]+)\//.exec(got.out) : null;
      return {
        from: from.name,
        to: to.name,
        ok,
        rttMs: ok && rtt?.[1] ? Number(rtt[1]) : null,
        detail: ok ? '' : got ? got.out.trim().slice(-200) : `no result (${(r.stdout + r.stderr).trim().slice(-200)})`,
      };
    });
  }

  async logTail(name: string, lines = 20): Promise<string> {
    try {
      const text = await readFile(logFile(this.paths, name), 'utf8');
      return text.trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** For failure messages: each agent's status summary (or why it has none) and the tail of its log. */
  async diagnostics(options: { logLines?: number; nodes?: readonly string[] } = {}): Promise<string> {
    const names = options.nodes ?? this.plan.nodes.map((n) => n.name);
    const statuses = await this.statuses(names);
    const parts: string[] = [];
    for (const n of names) {
      const s = statuses.get(n);
      const running = this.isRunning(n) ? '' : ' [agent not running]';
      parts.push(`--- ${n}${running}: ${s === undefined ? 'no status' : s instanceof Error ? s.message : summarizeStatus(s)}`);
      if ((options.logLines ?? 8) > 0) parts.push(await this.logTail(n, options.logLines ?? 8));
    }
    parts.push(`--- coordinator log:\n${await this.logTail('coordinator', options.logLines ?? 8)}`);
    return parts.join('\n');
  }

  /** Tears everything down (see teardown.ts for the order). */
  down(options: { keepState?: boolean } = {}): Promise<TeardownReport> {
    return teardownLab(this.id, this.runner, { onProgress: this.progress, ...options });
  }

  processRef(name: string): ProcessRef | undefined {
    const e = this.entry(name);
    return e ? { pid: e.pid, startTime: e.startTime } : undefined;
  }
}
