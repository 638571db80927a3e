// One machine-wide slot for the big (8-node, default-topology) test labs. ava runs two test files
// at once; two default labs side by side are 16 agents, 16 wireguard-go and two control planes on
// 2 cores, and convergence deadlines were missed under that load. The files that bring one up take
// the slot first, so they run one after the other while smaller files keep the other worker busy.
//
// The slot is a directory created atomically (mkdir fails if it exists) holding the holder's pid;
// a holder that died (killed test run) is recognised and its slot taken over. Waiting has a deadline:
// past it the lab comes up anyway (logged), slower but never deadlocked.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SLOT = join(tmpdir(), 'crosslink-test-big-lab.slot');

function holderAlive(dir: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
  } catch {
    return true; // just created, pid not written yet: treat as held
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function tryTake(dir: string): boolean {
  try {
    mkdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if (holderAlive(dir)) return false;
    rmSync(dir, { recursive: true, force: true }); // its holder died
    return tryTake(dir);
  }
  writeFileSync(join(dir, 'pid'), String(process.pid));
  return true;
}

/** Waits (polling, with a deadline) for the big-lab slot; returns its release. */
export async function takeBigLabSlot(options: { timeoutMs?: number; log?: (line: string) => void; dir?: string } = {}): Promise<() => void> {
  const dir = options.dir ?? SLOT;
  const deadline = Date.now() + (options.timeoutMs ?? 8 * 60_000);
  const started = Date.now();
  while (!tryTake(dir)) {
    if (Date.now() >= deadline) {
      options.log?.(`big-lab slot still held after ${Date.now() - started} ms: bringing the lab up anyway`);
      return () => undefined;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  if (Date.now() - started > 1000) options.log?.(`waited ${Date.now() - started} ms for the big-lab slot`);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    try {
      if (readFileSync(join(dir, 'pid'), 'utf8') === String(process.pid)) rmSync(dir, { recursive: true, force: true });
    } catch {
      // already gone
    }
  };
}
