// One door to the OS: every `wg`, `ip`, `iptables`, `ip netns exec` call goes through a Runner.
// Production uses ProcessRunner; tests swap in RecordingRunner (test/helpers/recording-runner.ts) and assert the transcript.
// ProcessRunner is built on node:child_process, not execa (which it ran on until round 18 as
// ExecaRunner): execa and the built-ins it loads were ~5 MiB of the agent's resident memory
// (docs/benchmarks.md, issue 10 round 18) for what is one spawn with a timeout here.
import { spawn } from 'node:child_process';
import { CommandError, errorMessage } from './errors.ts';
import { killOnExit } from './exit-cleanup.ts';
import { drainPipesAfterExit } from './pipe-drain.ts';

export interface RunOptions {
  /** Written to the child's stdin (e.g. `wg set … private-key /dev/stdin`), never logged. */
  readonly input?: string;
  /** Milliseconds before the child is killed; default 10 s. */
  readonly timeoutMs?: number;
  /** Do not throw on a non-zero exit; the caller inspects `exitCode`. */
  readonly allowFailure?: boolean;
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

export interface Runner {
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/** How one process ended, with everything it wrote. */
interface Completed {
  readonly stdout: string;
  readonly stderr: string;
  /** undefined: killed by a signal, or it could not be started (then `failure` says why). */
  readonly exitCode: number | undefined;
  readonly timedOut: boolean;
  readonly failure: string;
}

/** After a timeout's SIGTERM, how long a command gets before SIGKILL. */
const KILL_AFTER_MS = 5_000;

/** Runs `file args` to completion: no shell, LC_ALL=C, stdin from `input` (or none), a timeout (SIGTERM, then SIGKILL). Never rejects. */
function runToCompletion(file: string, args: readonly string[], input: string | undefined, timeoutMs: number): Promise<Completed> {
  return new Promise((resolve) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timedOut = false;
    let startError: Error | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const child = spawn(file, args, { env: { ...process.env, LC_ALL: 'C' }, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    // SIGTERMed if we exit while it runs (lib/exit-cleanup.ts).
    killOnExit(child);
    // 'close' waits for stdout/stderr to close too: a grandchild that inherited them (`cmd &`) would
    // hold it open past the child's exit, so they are let go of shortly after it (lib/pipe-drain.ts).
    drainPipesAfterExit(child);
    const timer = setTimeout(() => {
      // Exited in time, its pipes still draining (a grandchild holds them): not a timeout.
      if (child.exitCode !== null || child.signalCode !== null) return;
      timedOut = true;
      child.kill('SIGTERM');
      killTimer = setTimeout(() => {
        child.kill('SIGKILL');
        child.stdout?.destroy();
        child.stderr?.destroy();
      }, KILL_AFTER_MS);
    }, timeoutMs);
    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    // ENOENT/EACCES: 'error', then 'close'.
    child.on('error', (err) => (startError ??= err));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      resolve({
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
        exitCode: startError === undefined && code !== null ? code : undefined,
        timedOut,
        failure: startError !== undefined ? `${file}: ${errorMessage(startError)}` : signal !== null ? `killed by ${signal}` : '',
      });
    });
    if (child.stdin) {
      // A command that exits without reading its input must not crash us with EPIPE.
      child.stdin.on('error', () => undefined);
      child.stdin.end(input);
    }
  });
}

/** Runs real commands: argv arrays (no shell), LC_ALL=C so output parsing is stable, a timeout. */
export class ProcessRunner implements Runner {
  /** `prefix` is prepended to every argv, e.g. ['ip', 'netns', 'exec', 'ns1'] to run inside a namespace. */
  constructor(private readonly prefix: readonly string[] = []) {}

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const full = [...this.prefix, ...argv];
    const [file, ...args] = full;
    if (!file) throw new CommandError(full, undefined, 'empty command', false);
    const result = await runToCompletion(file, args, options.input, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const { stdout, stderr } = result;
    if (result.timedOut) throw new CommandError(full, result.exitCode, stderr, true);
    if (result.exitCode === undefined) throw new CommandError(full, undefined, stderr || result.failure, false);
    if (result.exitCode !== 0 && !options.allowFailure) {
      throw new CommandError(full, result.exitCode, stderr, false);
    }
    return { stdout, stderr, exitCode: result.exitCode };
  }
}
