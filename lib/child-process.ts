// One way to run a long-lived child process (wireguard-go, nats-server, tcpdump, a coordinator):
// started with node:child_process (argv, no shell; SIGTERMed if we exit first: lib/exit-cleanup.ts —
// execa and the built-ins it loads cost the agent ~5 MiB, docs/benchmarks.md issue 10 round 18), its
// output kept as a short tail of lines (read for a bounded time after its exit: lib/pipe-drain.ts),
// stopped with the one escalating sequence: SIGTERM, wait with a deadline, SIGKILL, wait with a
// deadline. `stop` resolves only once the process is gone (or throws ChildStopError naming the pid
// that survived SIGKILL), so a caller can delete the namespace it ran in only after that.
import { spawn, type ChildProcess } from 'node:child_process';
import { CrosslinkError, TimeoutError, errorMessage } from './errors.ts';
import { killOnExit, runningChildren } from './exit-cleanup.ts';
import { drainPipesAfterExit } from './pipe-drain.ts';

export class ChildProcessError extends CrosslinkError {
  override name = 'ChildProcessError';
}

/** The child survived SIGTERM and SIGKILL within the deadlines (e.g. stuck in the kernel). */
export class ChildStopError extends ChildProcessError {
  override name = 'ChildStopError';
  constructor(
    readonly argv: readonly string[],
    readonly pid: number | undefined,
    waitedMs: number,
  ) {
    super(`${argv.join(' ')} (pid ${pid ?? '?'}) is still running ${waitedMs} ms after SIGTERM and SIGKILL`);
  }
}

export interface ChildExit {
  /** Exit code, or undefined when it was killed by a signal or could not start. */
  readonly code: number | undefined;
  readonly signal: NodeJS.Signals | undefined;
  /** Set when the process could not be started at all (ENOENT, EACCES). */
  readonly startError?: string;
}

export interface ChildOptions {
  /** The complete environment (the caller's is not merged in). Default: this process's. */
  readonly env?: NodeJS.ProcessEnv;
  /** Called with every non-empty line the child writes to stdout or stderr. */
  readonly onLine?: (line: string) => void;
  /** How many output lines `tail()` keeps. Default 50. */
  readonly keepLines?: number;
}

export interface StopOptions {
  /** How long the child gets to exit after SIGTERM before SIGKILL. */
  readonly graceMs: number;
  /** How long to wait after SIGKILL before giving up with ChildStopError. Default 5 s. */
  readonly killWaitMs?: number;
  /** Called when SIGTERM was not enough and SIGKILL is sent (for a log line). */
  readonly onEscalate?: () => void;
}

/**
 * The escalating stop, on any process: `signal('SIGTERM')`, `waitExit(graceMs)`, then SIGKILL and
 * `waitExit(killWaitMs)`. `waitExit` resolves true once the process is gone, false at its deadline.
 * Returns true if the process is gone. Shared by Child (our own children) and the lab's pid-based stop.
 */
export async function stopEscalating(
  target: { signal(sig: NodeJS.Signals): void; waitExit(timeoutMs: number): Promise<boolean> },
  options: StopOptions,
): Promise<boolean> {
  target.signal('SIGTERM');
  if (await target.waitExit(options.graceMs)) return true;
  options.onEscalate?.();
  target.signal('SIGKILL');
  return target.waitExit(options.killWaitMs ?? 5000);
}

/** Resolves true when `p` settles first, false after `ms` (a timer that does not keep Node alive). */
export function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    timer.unref();
    void p.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Resolves true once `c` has exited, false after `ms`. */
function exitsWithin(c: ChildProcess, ms: number): Promise<boolean> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve(true);
  return settlesWithin(new Promise((resolve) => c.once('exit', resolve)), ms);
}

/**
 * Stops every child this process started that still runs (all that lib/exit-cleanup.ts registered:
 * Child, the runner's commands, spawns passed to killOnExit), all at once with the escalating stop,
 * and resolves once they are gone — unlike the exit hook's SIGTERM, which nobody waits for, so a
 * child that is slow to stop, or ignores SIGTERM, outlives its parent. Resolves with the pids still
 * there after SIGKILL (none, normally).
 */
export async function stopAllChildren(options: StopOptions): Promise<number[]> {
  const left = await Promise.all(
    runningChildren().map(async (c) => {
      const target = {
        signal: (sig: NodeJS.Signals): void => {
          if (c.exitCode === null && c.signalCode === null) c.kill(sig);
        },
        waitExit: (ms: number) => exitsWithin(c, ms),
      };
      return (await stopEscalating(target, options)) ? [] : [c.pid ?? -1];
    }),
  );
  return left.flat();
}

function spawnSubprocess(file: string, args: readonly string[], env: NodeJS.ProcessEnv): ChildProcess {
  const subprocess = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  killOnExit(subprocess);
  drainPipesAfterExit(subprocess);
  return subprocess;
}

/** Resolves with how the process ended once it has exited and its output is read to the end (to
 *  PIPE_DRAIN_MS after its exit when a grandchild holds its pipes: lib/pipe-drain.ts). */
function completion(subprocess: ChildProcess): Promise<{ code: number | undefined; signal: NodeJS.Signals | undefined; startError: string | undefined }> {
  return new Promise((resolve) => {
    let startError: string | undefined;
    // ENOENT/EACCES: 'error', then 'close'.
    subprocess.once('error', (err) => (startError ??= errorMessage(err)));
    subprocess.once('close', (code, signal) => {
      resolve({ code: startError === undefined && code !== null ? code : undefined, signal: signal ?? undefined, startError });
    });
  });
}

/** A supervised child: started by `Child.start`, stopped by `stop` (see the file comment). */
export class Child {
  private readonly lines: string[] = [];
  private readonly lineWatchers = new Set<(line: string) => void>();
  private result: ChildExit | undefined;
  /** Resolves (never rejects) when the process has exited and its output is read to the end (see completion). */
  readonly exited: Promise<ChildExit>;

  private constructor(
    readonly argv: readonly string[],
    private readonly subprocess: ChildProcess,
    options: ChildOptions,
  ) {
    const keep = options.keepLines ?? 50;
    let partial = { stdout: '', stderr: '' };
    const onChunk = (stream: 'stdout' | 'stderr') => (chunk: Buffer | string) => {
      const parts = (partial[stream] + chunk.toString()).split('\n');
      partial = { ...partial, [stream]: parts.pop() ?? '' };
      for (const line of parts) this.addLine(line, keep, options.onLine);
    };
    subprocess.stdout?.on('data', onChunk('stdout'));
    subprocess.stderr?.on('data', onChunk('stderr'));
    this.exited = completion(subprocess).then((r) => {
      for (const rest of [partial.stdout, partial.stderr]) this.addLine(rest, keep, options.onLine);
      this.result = { code: r.code, signal: r.signal, ...(r.startError === undefined ? {} : { startError: r.startError }) };
      return this.result;
    });
  }

  /** Starts `argv` (stdin ignored, stdout and stderr read line by line). Never throws for a missing
   *  binary: `exited` then resolves with `startError`. */
  static start(argv: readonly string[], options: ChildOptions = {}): Child {
    const [file, ...args] = argv;
    if (!file) throw new ChildProcessError('cannot start an empty command');
    const subprocess = spawnSubprocess(file, args, options.env ?? process.env);
    return new Child(argv, subprocess, options);
  }

  get pid(): number | undefined {
    return this.subprocess.pid;
  }

  /** How it ended; undefined while it runs. */
  get exit(): ChildExit | undefined {
    return this.result;
  }

  get running(): boolean {
    return this.result === undefined && this.subprocess.exitCode === null && this.subprocess.signalCode === null;
  }

  /** The last output lines (stdout and stderr interleaved as they arrived). */
  tail(n = Infinity): string[] {
    return this.lines.slice(-n);
  }

  /**
   * Resolves once the child writes a line containing `text` (its readiness message). Rejects with
   * ChildProcessError (naming the exit and the last output) if it exits first, with TimeoutError at
   * the deadline. The child keeps running either way: the caller stops it.
   */
  waitForLine(text: string, options: { readonly timeoutMs: number }): Promise<void> {
    const what = `${this.argv[0] ?? 'child'} to print "${text}"`;
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        clearTimeout(timer);
        this.lineWatchers.delete(watcher);
        if (err) reject(err);
        else resolve();
      };
      const watcher = (line: string): void => {
        if (line.includes(text)) done();
      };
      const timer = setTimeout(() => done(new TimeoutError(`timed out after ${options.timeoutMs} ms waiting for ${what}: ${this.tail(5).join(' | ')}`)), options.timeoutMs);
      this.lineWatchers.add(watcher);
      void this.exited.then((exit) => done(new ChildProcessError(`${this.argv.join(' ')} exited (${describeExit(exit)}) before printing "${text}": ${this.tail(5).join(' | ')}`)));
    });
  }

  /** Sends a signal (no-op once it has exited). */
  kill(sig: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running) this.subprocess.kill(sig);
  }

  /** SIGTERM, wait up to graceMs, SIGKILL, wait up to killWaitMs. Resolves with the exit once the
   *  process is gone; throws ChildStopError if it is still there. */
  async stop(options: StopOptions): Promise<ChildExit> {
    if (this.running) {
      const gone = await stopEscalating({ signal: (sig) => this.kill(sig), waitExit: (ms) => settlesWithin(this.exited, ms) }, options);
      if (!gone) throw new ChildStopError(this.argv, this.pid, options.graceMs + (options.killWaitMs ?? 5000));
    }
    return this.exited;
  }

  private addLine(line: string, keep: number, onLine: ((line: string) => void) | undefined): void {
    if (line.trim() === '') return;
    this.lines.push(line);
    if (this.lines.length > keep) this.lines.shift();
    onLine?.(line);
    for (const w of this.lineWatchers) w(line);
  }
}

/** "1", "SIGTERM" or the start error. */
export function describeExit(exit: ChildExit): string {
  return String(exit.code ?? exit.signal ?? exit.startError ?? '?');
}
