// A child's 'close' waits for its stdout and stderr to close, not only for its exit: a background
// grandchild that inherited them (`cmd &`, a daemon that forgot to close its fds) holds them open
// for as long as it lives, and a wait on 'close' with it. Once the child itself has exited, its
// output is read for a bounded time and then its pipes are let go, so 'close' follows at once.
import type { ChildProcess } from 'node:child_process';

/** How long after the child's exit its pipes are still read (what is already buffered arrives well within it). */
export const PIPE_DRAIN_MS = 1000;

/** Lets go of `child`'s pipes `drainMs` after it exited, if they are still open then. */
export function drainPipesAfterExit(child: ChildProcess, drainMs = PIPE_DRAIN_MS): void {
  let timer: NodeJS.Timeout | undefined;
  child.once('exit', () => {
    timer = setTimeout(() => {
      // One more turn through the poll phase first: output already written is read there, even
      // when a long callback kept the loop away until the timer was overdue.
      setImmediate(() => {
        child.stdin?.destroy();
        child.stdout?.destroy();
        child.stderr?.destroy();
      });
    }, drainMs);
    timer.unref();
  });
  child.once('close', () => clearTimeout(timer));
}
