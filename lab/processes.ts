// Long-running lab processes (nats-server, coordinator, agents): started detached in their own
// session with output to a log file, so `lab up` can exit and leave them running; found again by
// pid (+ start time, against pid reuse) or by the namespace they live in; stopped with the shared
// escalation of lib/child-process.ts (SIGTERM, wait, SIGKILL, wait), the waits polling /proc with a
// deadline. They are not our children once `lab up` exits, so node's spawn (detached, unref'd) starts
// them rather than lib's Child, whose handle lives and dies with this process.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, readlinkSync } from 'node:fs';
import { stopEscalating } from '../lib/child-process.ts';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';

export interface ProcessRef {
  readonly pid: number;
  /** /proc/<pid>/stat field 22 (clock ticks since boot): tells a reused pid apart. */
  readonly startTime: number;
}

export type ProcessRole = 'agent' | 'wireguard-go' | 'coordinator' | 'nats-server' | 'other';

/**
 * Starts `argv` detached (setsid: its own session, so a Ctrl-C of `lab up` reaches only the lab
 * CLI, which then tears down in order) with stdout+stderr appended to `logFile`.
 */
export async function spawnDetached(argv: readonly string[], logFile: string, env: NodeJS.ProcessEnv = process.env): Promise<ProcessRef> {
  const [file, ...args] = argv;
  if (!file) throw new CrosslinkError('empty command');
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn(file, args, { detached: true, stdio: ['ignore', fd, fd], env });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new CrosslinkError(`could not start ${argv.join(' ')}: ${errorMessage(err)}`, { cause: err })));
    });
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new CrosslinkError(`could not start ${argv.join(' ')}`);
    return { pid, startTime: startTimeOf(pid) ?? 0 };
  } finally {
    closeSync(fd);
  }
}

function readStat(pid: number): { state: string; startTime: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '?', startTime: Number(rest[19]) };
  } catch {
    return undefined;
  }
}

export function startTimeOf(pid: number): number | undefined {
  return readStat(pid)?.startTime;
}

/** Alive = exists, is not a zombie, and (if known) started when we recorded it. */
export function isAlive(ref: ProcessRef | number): boolean {
  const pid = typeof ref === 'number' ? ref : ref.pid;
  const st = readStat(pid);
  if (!st || st.state === 'Z' || st.state === 'X') return false;
  return typeof ref === 'number' || ref.startTime === 0 || st.startTime === ref.startTime;
}

export function commandLineOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
  } catch {
    return [];
  }
}

/** Inode of the process's network namespace ("net:[4026532]"), to check it is one of ours. */
export function netnsOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

export function roleOf(pid: number): ProcessRole {
  return roleOfCommandLine(commandLineOf(pid));
}

/** What a process is, from its command line: bin/ scripts, the compiled entries (agent main.cjs, coordinator main.js) or the TypeScript ones. */
export function roleOfCommandLine(argv: readonly string[]): ProcessRole {
  const text = argv.join(' ');
  const exe = (argv[0] ?? '').split('/').pop() ?? '';
  if (exe === 'wireguard-go' || /(^|\/)wireguard-go( |$)/.test(text)) return 'wireguard-go';
  if (/crosslink-agent|\/agent\/main\.(?:c?js|ts)( |$)/.test(text)) return 'agent';
  if (/crosslink-coordinator|\/coordinator\/main\.(?:c?js|ts)( |$)/.test(text)) return 'coordinator';
  if (exe === 'nats-server' || /(^|\/)nats-server /.test(text)) return 'nats-server';
  return 'other';
}

export function signal(ref: ProcessRef | number, sig: NodeJS.Signals): boolean {
  if (!isAlive(ref)) return false;
  try {
    process.kill(typeof ref === 'number' ? ref : ref.pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Waits (polling /proc) until none of `refs` is alive; returns those still alive at the deadline. */
export async function waitForExit(refs: readonly (ProcessRef | number)[], timeoutMs: number): Promise<(ProcessRef | number)[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const alive = refs.filter((r) => isAlive(r));
    if (alive.length === 0 || Date.now() >= deadline) return alive;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * SIGTERM, wait up to `graceMs`; then (if `killAfter`) SIGKILL and wait again (lib's stopEscalating).
 * Returns the processes that are still alive (the caller must not delete their namespace).
 */
export async function terminate(
  refs: readonly (ProcessRef | number)[],
  options: { graceMs: number; killAfter: boolean },
): Promise<(ProcessRef | number)[]> {
  const group = {
    signal: (sig: NodeJS.Signals): void => {
      for (const r of refs) signal(r, sig);
    },
    waitExit: async (ms: number): Promise<boolean> => (await waitForExit(refs, ms)).length === 0,
  };
  if (options.killAfter) await stopEscalating(group, { graceMs: options.graceMs });
  else {
    group.signal('SIGTERM');
    await group.waitExit(options.graceMs);
  }
  return refs.filter((r) => isAlive(r));
}

export function pidOf(ref: ProcessRef | number): number {
  return typeof ref === 'number' ? ref : ref.pid;
}
