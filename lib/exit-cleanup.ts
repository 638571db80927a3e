// Children die with us: every child we spawn (lib/runner.ts's short commands, lib/child-process.ts's
// long-lived ones) is registered here while it runs and SIGTERMed when this process exits, or dies
// of a signal it does not handle, before it was stopped — what execa's `cleanup: true` did, through
// the same library (signal-exit). A child is removed from the set at its 'exit': after that its pid
// is reaped and may belong to someone else. runningChildren() lists them for a process that stops
// them itself and waits (lib/child-process.ts stopAllChildren: the bench on Ctrl-C).
import type { ChildProcess } from 'node:child_process';
import { onExit } from 'signal-exit';

const running = new Set<ChildProcess>();
let installed = false;

/** Registers `child` (already spawned) until it exits; SIGTERMs it if we exit first. */
export function killOnExit(child: ChildProcess): void {
  if (!installed) {
    installed = true;
    onExit(() => {
      for (const c of running) c.kill('SIGTERM');
    });
  }
  // A child that could not be started has no pid and emits 'error' (and 'close'), never 'exit'.
  if (child.pid === undefined) return;
  running.add(child);
  child.once('exit', () => running.delete(child));
}


/** The registered children that have not exited yet. */
export function runningChildren(): ChildProcess[] {
  return [...running];
}
