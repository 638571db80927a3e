// `npm run lab -- up|down|status|matrix|stop|start|restart`: the multi-cloud lab from the command line.
import { readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { errorMessage, ValidationError } from '../lib/errors.ts';
import { ProcessRunner } from '../lib/runner.ts';
import { summarizeStatus } from './agent-status.ts';
import { catchInterrupts, progressPrinter } from './interrupt.ts';
import { Lab } from './lab.ts';
import { connectivityMatrix, formatMatrix } from './matrix.ts';
import { listNamespaces } from './network.ts';
import { checkLabId, namespacePrefix } from './names.ts';
import { drill } from './drill.ts';
import { formatNatsHealth } from './nats-health.ts';
import { checkNatsServerCount } from './nats-plan.ts';
import { REPO_ROOT } from './state.ts';
import { formatSummary, meshSummary } from './summary.ts';
import { findLabIds, teardownLab } from './teardown.ts';
import type { AgentStatus } from '../protocol/status.ts';

export const DEFAULT_TOPOLOGY = join(REPO_ROOT, 'lab', 'topologies', 'default.yaml');
const DEFAULT_ID = 'lab';
const CONVERGE_TIMEOUT_MS = 90_000;

const rel = (p: string): string => {
  const r = relative(process.cwd(), p);
  return r === '' ? '.' : r.startsWith('..') ? p : r;
};

async function up(opts: { topology: string; id: string; wait: boolean; logLevel: string; natsServers: string }): Promise<void> {
  const id = checkLabId(opts.id);
  const natsServers = checkNatsServerCount(opts.natsServers);
  const file = resolve(opts.topology);
  const text = await readFile(file, 'utf8').catch((err: unknown) => {
    throw new ValidationError('--topology', opts.topology, `must be a readable YAML file (${errorMessage(err)})`);
  });
  const progress = progressPrinter();
  const runner = new ProcessRunner();
  // Ctrl-C aborts `up` between steps; whatever was built is then torn down in order.
  const interrupt = catchInterrupts((sig) => progress(`${sig}: stopping, then tearing the lab down…`));
  progress(`lab ${id}: ${rel(file)}`);
  let lab: Lab | undefined;
  try {
    lab = await Lab.up({ id, topologyText: text, topologySource: rel(file), runner, onProgress: progress, signal: interrupt.signal, logLevel: opts.logLevel, natsServers });
    if (opts.wait) {
      try {
        const statuses = await lab.waitConverged(CONVERGE_TIMEOUT_MS, interrupt.signal);
        progress(`converged: ${statuses.size} agents ready, every cross-cloud path known`);
        process.stdout.write(`${formatSummary(meshSummary(lab.plan, statuses))}\n`);
      } catch (err) {
        if (interrupt.signal.aborted) throw err;
        progress(`not converged yet: ${errorMessage(err)}`);
        process.stdout.write(`${await lab.diagnostics({ logLines: 0 })}\n`);
      }
    }
  } catch (err) {
    if (!interrupt.signal.aborted) throw err;
    const report = lab ? await lab.down() : await teardownLab(id, runner, { onProgress: progress });
    progress(report.errors.length ? `teardown left problems: ${report.errors.join('; ')}` : 'lab removed');
    process.exitCode = interrupt.exitCode() ?? 130;
    return;
  } finally {
    interrupt.dispose();
  }
  printUsage(lab);
}

function printUsage(lab: Lab): void {
  const p = lab.plan;
  const pod = p.pods[0];
  const far = p.pods.find((x) => x.cloud !== pod?.cloud);
  const node = p.nodes[0];
  const lines = [
    '',
    `Lab "${lab.id}" is running: ${p.clouds.length} clouds, ${p.nodes.length} nodes, ${p.pods.length} pods; state and logs in ${rel(lab.paths.dir)}/`,
    '',
    ...(pod && far ? [`  ping across clouds:  ip netns exec ${pod.ns} ping -c 3 ${far.ip}        # ${pod.name} → ${far.name}`] : []),
    ...(node
      ? [
          `  agent status:        bin/crosslink status --socket ${rel(lab.statusSocket(node.name))}   (--json for JSON)`,
          `  path check:          bin/crosslink diagnose --socket ${rel(lab.statusSocket(node.name))}`,
          `  WireGuard:           ip netns exec ${node.ns} wg show`,
          `  routes:              ip -n ${node.ns} route`,
        ]
      : []),
    `  lab status:          npm run lab -- status --id ${lab.id}`,
    `  pod matrix:          npm run lab -- matrix --id ${lab.id}`,
    ...(p.nats.members.length > 1 ? [`  lose a NATS server:  npm run lab -- stop ${p.nats.members[0]?.name} --id ${lab.id}   (start it again the same way)`] : []),
    `  tear down:           npm run lab -- down --id ${lab.id}`,
    '',
    'Pods:',
    ...p.pods.map((x) => `  ${x.name.padEnd(14)} ${x.ip.padEnd(12)} ns ${x.ns}`),
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function down(opts: { id?: string; all: boolean }): Promise<void> {
  const runner = new ProcessRunner();
  const progress = progressPrinter();
  const ids = opts.all ? await findLabIds(runner) : [checkLabId(opts.id ?? DEFAULT_ID)];
  if (ids.length === 0) progress('no labs found');
  let failed = false;
  for (const id of ids) {
    progress(`lab ${id}: tearing down`);
    const report = await teardownLab(id, runner, { onProgress: progress });
    const n = Object.values(report.stopped).reduce((a, b) => a + b, 0);
    progress(`lab ${id}: ${report.namespacesDeleted} namespaces deleted, ${n} processes stopped`);
    for (const e of report.errors) {
      failed = true;
      process.stderr.write(`  problem: ${e}\n`);
    }
  }
  if (failed) process.exitCode = 1;
}

async function status(opts: { id?: string; json: boolean }): Promise<void> {
  const runner = new ProcessRunner();
  const ids = opts.id ? [checkLabId(opts.id)] : await findLabIds(runner);
  if (ids.length === 0) {
    process.stdout.write('no labs running (start one with: npm run lab -- up)\n');
    return;
  }
  const out: Record<string, unknown> = {};
  for (const id of ids) {
    const namespaces = await listNamespaces(runner, namespacePrefix(id));
    let lab: Lab;
    try {
      lab = await Lab.attach(id, { runner });
    } catch (err) {
      if (opts.json) out[id] = { error: errorMessage(err), namespaces: namespaces.length };
      else process.stdout.write(`lab ${id}: ${errorMessage(err)} (${namespaces.length} namespaces; remove with: npm run lab -- down --id ${id})\n`);
      continue;
    }
    const statuses = await lab.statuses(lab.plan.nodes.map((n) => n.name));
    const nats = lab.plan.nats.members.length > 1 ? await lab.natsHealth() : undefined;
    const ok = new Map<string, AgentStatus>();
    for (const [k, v] of statuses) if (!(v instanceof Error)) ok.set(k, v);
    if (opts.json) {
      out[id] = {
        namespaces: namespaces.length,
        processes: lab.processes.map((p) => ({ ...p, alive: lab.isRunning(p.name) })),
        ...(nats ? { nats } : {}),
        agents: Object.fromEntries([...statuses].map(([k, v]) => [k, v instanceof Error ? { error: v.message } : v])),
      };
      continue;
    }
    process.stdout.write(`lab ${id}: ${namespaces.length} namespaces, state ${rel(lab.paths.dir)}/\n`);
    for (const p of lab.processes) process.stdout.write(`  ${p.name.padEnd(12)} pid ${String(p.pid).padEnd(8)} ${lab.isRunning(p.name) ? 'running' : 'NOT RUNNING'}\n`);
    if (nats) for (const line of formatNatsHealth(lab.plan.nats, nats)) process.stdout.write(`  ${line}\n`);
    for (const [n, s] of statuses) process.stdout.write(`  ${s instanceof Error ? `${n}: ${s.message}` : summarizeStatus(s)}\n`);
    process.stdout.write(`${formatSummary(meshSummary(lab.plan, ok))}\n`);
  }
  if (opts.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

async function matrix(opts: { id: string }): Promise<void> {
  const lab = await Lab.attach(checkLabId(opts.id));
  const m = await connectivityMatrix(lab, lab.plan.pods, { concurrency: 4, retryForMs: 5000 });
  process.stdout.write(`${formatMatrix(m)}\n${m.pairs - m.failures.length}/${m.pairs} pod pairs connected\n`);
  for (const f of m.failures) process.stdout.write(`  FAIL ${f.from} → ${f.to}: ${f.detail}\n`);
  if (m.failures.length > 0) process.exitCode = 1;
}

export function buildProgram(): Command {
  const program = new Command('lab').description('Crosslink multi-cloud lab: network namespaces, NAT, real NATS, coordinator, agents and wireguard-go');
  program
    .command('up')
    .description('build a lab and start its processes (first removes any leftover with the same id); leaves it running')
    .addOption(new Option('--topology <file>', 'topology YAML').default(DEFAULT_TOPOLOGY))
    .addOption(new Option('--id <id>', 'lab id, 1-6 lowercase letters/digits (namespaces xl-<id>-*)').default(DEFAULT_ID))
    .option('--no-wait', 'do not wait for the agents to converge')
    .addOption(new Option('--log-level <level>', 'coordinator and agent log level').default('info'))
    .addOption(new Option('--nats-servers <n>', 'NATS servers in the control namespace: 1, or a routed cluster of 3 or 5 (nats-0…; bucket at R3)').default('1'))
    .action(up);
  program
    .command('down')
    .description('stop every process of a lab in order and delete its namespaces, sockets and state')
    .option('--id <id>', `lab id (default ${DEFAULT_ID})`)
    .option('--all', 'every lab on this machine', false)
    .action(down);
  program.command('status').description('processes, agents and paths of running labs').option('--id <id>', 'only this lab').option('--json', 'JSON output', false).action(status);
  for (const action of ['stop', 'start', 'restart'] as const) {
    program
      .command(`${action} <process>`)
      .description(`${action} one process of a running lab (nats-server or nats-<i>, coordinator or a node's agent), recorded in its state`)
      .addOption(new Option('--id <id>', 'lab id').default(DEFAULT_ID))
      .addOption(new Option('--log-level <level>', 'log level when starting').default('info'))
      .action(async (name: string, opts: { id: string; logLevel: string }) => {
        const lab = await Lab.attach(checkLabId(opts.id));
        process.stdout.write(`${await drill(lab, action, name, opts.logLevel)}\n`);
      });
  }
  program
    .command('matrix')
    .description('ping every pod from every pod of a running lab')
    .addOption(new Option('--id <id>', 'lab id').default(DEFAULT_ID))
    .action(matrix);
  return program;
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  process.stderr.write(`lab: ${errorMessage(err)}\n`);
  process.exitCode = err instanceof ValidationError ? 2 : 1;
}
