// Shared by the network-namespace end-to-end tests: bring a lab up with a fresh id, poll pings
// with deadlines, explain failures (which pair, agent status, log tails), and prove that teardown
// left nothing behind.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { ProcessRunner } from '../../lib/runner.ts';
import { waitFor } from '../../lib/wait.ts';
import { Lab, type PingResult } from '../../lab/lab.ts';
import { listNamespaces } from '../../lab/network.ts';
import { namespacePrefix, randomLabId, wireguardSocketPattern } from '../../lab/names.ts';
import type { PodPlan } from '../../lab/plan.ts';
import { labDir, REPO_ROOT } from '../../lab/state.ts';
import { WIREGUARD_SOCKET_DIR } from '../../lab/teardown.ts';
import { takeBigLabSlot } from './lab-slot.ts';

export function topologyFile(name: string): string {
  return join(REPO_ROOT, 'lab', 'topologies', `${name}.yaml`);
}

export interface LabOptions {
  /** Agents not started with the lab (a test starts them later). */
  readonly deferAgents?: readonly string[];
  /** `lab up --nats-servers`: 1 (default) or a cluster of 3. */
  readonly natsServers?: number;
  readonly log?: (line: string) => void;
}

/** Builds a lab from lab/topologies/<name>.yaml under a fresh id starting with `lead`. */
export async function bringUpLab(name: string, lead: string, options: LabOptions = {}): Promise<Lab> {
  const file = topologyFile(name);
  return Lab.up({
    id: randomLabId(lead),
    topologyText: readFileSync(file, 'utf8'),
    topologySource: `lab/topologies/${name}.yaml`,
    runner: new ProcessRunner(),
    ...(options.deferAgents ? { deferAgents: options.deferAgents } : {}),
    ...(options.natsServers ? { natsServers: options.natsServers } : {}),
    ...(options.log ? { onProgress: options.log } : {}),
  });
}

/**
 * One lab for the whole test file: brought up before the first test, torn down after the last
 * (also when a test failed), and checked to have left nothing behind. Returns the lab accessor.
 */
export function useLab(name: string, lead: string, options: LabOptions = {}): () => Lab {
  let lab: Lab | undefined;
  // The 8-node default labs take turns (test/helpers/lab-slot.ts): two at once overload 2 cores.
  let release: (() => void) | undefined;
  test.before(async (t) => {
    if (name === 'default') release = await takeBigLabSlot({ log: (line) => t.log(line) });
    lab = await bringUpLab(name, lead, options);
  });
  test.after.always(async (t) => {
    try {
      const report = await lab?.down();
      t.deepEqual(report?.errors ?? [], []);
      if (lab) t.deepEqual(await leftoversOf(lab.id), []);
    } finally {
      release?.();
    }
  });
  return () => {
    if (!lab) throw new Error('lab not up');
    return lab;
  };
}

/** Waits for every agent to converge; on timeout fails the test with the lab's diagnostics. */
export async function assertConverged(t: ExecutionContext, lab: Lab, timeoutMs: number, context = ''): Promise<void> {
  await lab.waitConverged(timeoutMs).catch(async (err: unknown) => t.fail(`${context}${String(err)}\n${await lab.diagnostics()}`));
}

/** Asserts every (from, to) pair pings within timeoutMs, explaining each failure. */
export async function assertReachable(t: ExecutionContext, lab: Lab, pairs: readonly (readonly [PodPlan, PodPlan])[], timeoutMs: number): Promise<void> {
  for (const [from, to] of pairs) {
    const r = await pingUntil(lab, from, to, timeoutMs);
    t.true(r.ok, r.ok ? '' : await explainPair(lab, from, to, r));
  }
}

/** Pings until one echo comes back or the deadline passes; returns the last result. */
export async function pingUntil(lab: Lab, from: PodPlan, to: PodPlan, timeoutMs: number): Promise<PingResult> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await lab.ping(from, to, 1);
    if (r.ok || Date.now() >= deadline) return r;
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** Pings until the echo stops coming back (e.g. after a node died) or the deadline passes. */
export async function pingFailsWithin(lab: Lab, from: PodPlan, to: PodPlan, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await lab.ping(from, to, 1);
    if (!r.ok) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** A failure message that says which pair failed and why: ping output plus both agents' status and log tails. */
export async function explainPair(lab: Lab, from: PodPlan, to: PodPlan, r: PingResult): Promise<string> {
  const d = await lab.diagnostics({ nodes: [...new Set([from.node, to.node])], logLines: 12 });
  return `${from.name} (${from.ip}) → ${to.name} (${to.ip}) failed: ${r.detail}\n${d}`;
}

/** Everything a lab could leave behind: namespaces, UAPI sockets, state dir, processes naming it. */
export async function leftoversOf(id: string): Promise<string[]> {
  const found: string[] = [];
  for (const ns of await listNamespaces(new ProcessRunner(), namespacePrefix(id))) found.push(`namespace ${ns}`);
  const pattern = wireguardSocketPattern(id);
  if (existsSync(WIREGUARD_SOCKET_DIR)) for (const s of readdirSync(WIREGUARD_SOCKET_DIR)) if (pattern.test(s)) found.push(`socket ${s}`);
  if (existsSync(labDir(id))) found.push(`state dir ${labDir(id)}`);
  const marks = [`${labDir(id)}/`, `xl${id}w`, `xl-${id}-`];
  for (const pid of readdirSync('/proc').filter((p) => /^[0-9]+$/.test(p))) {
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if (marks.some((m) => cmd.includes(m))) found.push(`process ${pid}: ${cmd.slice(0, 120)}`);
  }
  return found;
}

/**
 * Polls `probe` (lib/wait.ts, with a deadline) until it yields a value; at the deadline fails the
 * test with the timeout and `explain()` (the lab's view of what went wrong) and returns undefined.
 */
export async function pollOrExplain<T>(t: ExecutionContext, what: string, timeoutMs: number, probe: () => Promise<T | undefined | false>, explain: () => Promise<string>, intervalMs = 250): Promise<T | undefined> {
  try {
    return await waitFor(probe, { timeoutMs, intervalMs, what });
  } catch (err) {
    t.fail(`${String(err)}\n${await explain()}`);
    return undefined;
  }
}
