// Removes everything of one lab, in the only safe order:
//   agents (SIGTERM, wait: they stop their own wireguard-go) → leftover wireguard-go (SIGTERM, wait)
//   → other processes in our namespaces → coordinator → nats-server → namespaces → UAPI sockets → state dir.
// A wireguard-go whose namespace disappears under it can spin in the kernel forever, so a namespace
// that still holds a live process is never deleted (reported instead).
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Runner } from '../lib/runner.ts';
import { shortSocketDir } from './commands.ts';
import { deleteNamespaces, listNamespaces } from './network.ts';
import { pidsInNamespaces } from './netns-pids.ts';
import { checkLabId, labIdOfNamespace, namespaceName, namespacePrefix, wireguardSocketPattern } from './names.ts';
import { isAlive, pidOf, roleOf, signal, terminate, type ProcessRef, type ProcessRole } from './processes.ts';
import { labDir, labRoot, readState } from './state.ts';

export const WIREGUARD_SOCKET_DIR = '/var/run/wireguard';

export interface TeardownReport {
  readonly id: string;
  readonly namespacesDeleted: number;
  readonly stopped: Readonly<Record<ProcessRole, number>>;
  /** Problems that left something behind (e.g. a process that would not exit). */
  readonly errors: readonly string[];
}

export interface TeardownOptions {
  /** Keep the lab's state dir (logs) instead of removing it. */
  readonly keepState?: boolean;
  readonly onProgress?: (line: string) => void;
}

export async function teardownLab(id: string, runner: Runner, options: TeardownOptions = {}): Promise<TeardownReport> {
  checkLabId(id);
  const progress = options.onProgress ?? (() => undefined);
  const dir = labDir(id);
  const errors: string[] = [];
  const stopped: Record<ProcessRole, number> = { agent: 0, 'wireguard-go': 0, coordinator: 0, 'nats-server': 0, other: 0 };
  let state;
  try {
    state = await readState(dir);
  } catch (err) {
    errors.push(`state file unreadable, relying on namespace discovery: ${String(err)}`);
  }
  const namespaces = await listNamespaces(runner, namespacePrefix(id));
  const recorded: ProcessRef[] = (state?.processes ?? []).map((p) => ({ pid: p.pid, startTime: p.startTime })).filter((r) => isAlive(r));

  const discover = async (): Promise<Map<number, ProcessRef | number>> => {
    const found = new Map<number, ProcessRef | number>();
    for (const r of recorded) if (isAlive(r)) found.set(r.pid, r);
    for (const pids of (await pidsInNamespaces(namespaces)).values()) for (const pid of pids) if (!found.has(pid)) found.set(pid, pid);
    return found;
  };
  const ofRole = (all: Map<number, ProcessRef | number>, role: ProcessRole): (ProcessRef | number)[] =>
    [...all.values()].filter((r) => roleOf(pidOf(r)) === role);

  const stop = async (role: ProcessRole, graceMs: number): Promise<void> => {
    const targets = ofRole(await discover(), role);
    if (targets.length === 0) return;
    progress(`stopping ${targets.length} ${role} process${targets.length === 1 ? '' : 'es'}`);
    const alive = await terminate(targets, { graceMs, killAfter: true });
    stopped[role] += targets.length - alive.length;
    for (const r of alive) errors.push(`${role} pid ${pidOf(r)} did not exit`);
  };

  // A stopped (SIGSTOP) process would not see SIGTERM.
  for (const r of (await discover()).values()) signal(r, 'SIGCONT');
  await stop('agent', 20_000);
  await stop('wireguard-go', 10_000);
  await stop('other', 3000);
  await stop('coordinator', 10_000);
  await stop('nats-server', 10_000);

  const deletable: string[] = [];
  const inside = await pidsInNamespaces(namespaces);
  for (const ns of namespaces) {
    const left = inside.get(ns) ?? [];
    if (left.length === 0) deletable.push(ns);
    else errors.push(`namespace ${ns} kept: processes ${left.join(', ')} still inside`);
  }
  if (deletable.length > 0) progress(`deleting ${deletable.length} namespaces`);
  await deleteNamespaces(runner, deletable);
  const remaining = new Set(await listNamespaces(runner, namespacePrefix(id)));
  for (const ns of deletable) if (remaining.has(ns)) errors.push(`namespace ${ns} could not be deleted`);

  await removeWireguardSockets(id, errors);
  await rm(shortSocketDir(id), { recursive: true, force: true });
  if (!options.keepState && errors.length === 0) await rm(dir, { recursive: true, force: true });
  return { id, namespacesDeleted: deletable.length - [...remaining].filter((n) => deletable.includes(n)).length, stopped, errors };
}

async function removeWireguardSockets(id: string, errors: string[]): Promise<void> {
  const pattern = wireguardSocketPattern(id);
  let entries: string[];
  try {
    entries = await readdir(WIREGUARD_SOCKET_DIR);
  } catch {
    return;
  }
  for (const e of entries.filter((n) => pattern.test(n))) {
    try {
      await rm(join(WIREGUARD_SOCKET_DIR, e), { force: true });
    } catch (err) {
      errors.push(`could not remove ${e}: ${String(err)}`);
    }
  }
}

/** Ids of every lab on this machine: a state dir under the lab root or a lab's internet namespace. */
export async function findLabIds(runner: Runner, root = labRoot()): Promise<string[]> {
  const ids = new Set<string>();
  try {
    for (const e of await readdir(root, { withFileTypes: true })) {
      if (e.isDirectory() && /^[a-z0-9]{1,6}$/.test(e.name)) ids.add(e.name);
    }
  } catch {
    // no lab root yet
  }
  for (const ns of await listNamespaces(runner, 'xl-')) {
    const id = labIdOfNamespace(ns);
    // Only labs (they always have an internet namespace), never other tools' xl-* namespaces.
    if (id !== undefined && ns === namespaceName(id, 'inet')) ids.add(id);
  }
  return [...ids].sort();
}
