// Executes a LabPlan's network part through the Runner: namespaces, links, addresses, routes,
// sysctls, NAT. Also the link cuts the tests use to simulate a dead node.
import type { Runner } from '../lib/runner.ts';
import { mapLimit } from '../lib/pool.ts';
import type { LabPlan, NodePlan } from './plan.ts';

const CONCURRENCY = 4;

export async function buildNetwork(plan: LabPlan, runner: Runner): Promise<void> {
  await runner.run(['ip', '-batch', '-'], { input: plan.namespaces.map((ns) => `netns add ${ns}\n`).join('') });
  // Sysctls first: interfaces created later inherit `default.*` (no IPv6 noise, no rp_filter).
  await mapLimit(plan.sysctls, CONCURRENCY, (s) => runner.run(['ip', 'netns', 'exec', s.ns, 'sysctl', '-q', '-w', ...s.settings]));
  await mapLimit(plan.createLinks, CONCURRENCY, (b) => ipBatch(runner, b.ns, b.lines));
  await mapLimit(plan.configure, CONCURRENCY, (b) => ipBatch(runner, b.ns, b.lines));
  await mapLimit(plan.natRules, CONCURRENCY, (r) =>
    runner.run(['ip', 'netns', 'exec', r.ns, 'iptables-restore', '--noflush'], { input: r.rules }),
  );
}

function ipBatch(runner: Runner, ns: string, lines: readonly string[]): Promise<unknown> {
  return runner.run(['ip', '-n', ns, '-batch', '-'], { input: lines.map((l) => `${l}\n`).join('') });
}

/** Namespaces that currently exist with `prefix`. */
export async function listNamespaces(runner: Runner, prefix: string): Promise<string[]> {
  const { stdout } = await runner.run(['ip', 'netns', 'list']);
  return stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}

export async function deleteNamespaces(runner: Runner, names: readonly string[]): Promise<void> {
  if (names.length === 0) return;
  // -force: keep going past a namespace that is already gone.
  await runner.run(['ip', '-force', '-batch', '-'], { input: names.map((ns) => `netns del ${ns}\n`).join(''), allowFailure: true });
}

/** Cuts a node off its VPC at the edge's switch port: heartbeats and tunnels stop, the node's own config stays. */
export async function cutNodeLink(runner: Runner, node: NodePlan): Promise<void> {
  await runner.run(['ip', '-n', node.edgeNs, 'link', 'set', 'dev', node.edgePort, 'down']);
}

export async function restoreNodeLink(runner: Runner, node: NodePlan): Promise<void> {
  await runner.run(['ip', '-n', node.edgeNs, 'link', 'set', 'dev', node.edgePort, 'up']);
}
