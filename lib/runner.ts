// One door to the OS: every `wg`, `ip`, `iptables`, `ip netns exec` call goes through a Runner.
// Production uses ExecaRunner; tests swap in RecordingRunner (test/helpers/recording-runner.ts) and assert the transcript.
import { execa } from 'execa';
import { CommandError } from './errors.ts';

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

/** Runs real commands: argv arrays (no shell), LC_ALL=C so output parsing is stable, a timeout. */
export class ExecaRunner implements Runner {
  /** `prefix` is prepended to every argv, e.g. ['ip', 'netns', 'exec', 'ns1'] to run inside a namespace. */
  constructor(private readonly prefix: readonly string[] = []) {}

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const full = [...this.prefix, ...argv];
    const [file, ...args] = full;
    if (!file) throw new CommandError(full, undefined, 'empty command', false);
    const result = await execa(file, args, {
      env: { LC_ALL: 'C' },
      timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      reject: false,
      stripFinalNewline: false,
      ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
    });
    const stdout = result.stdout;
    const stderr = result.stderr;
    if (result.timedOut) throw new CommandError(full, result.exitCode, stderr, true, { cause: result });
    if (result.exitCode === undefined) {
      throw new CommandError(full, undefined, stderr || String(result.message), false, { cause: result });
    }
    if (result.exitCode !== 0 && !options.allowFailure) {
      throw new CommandError(full, result.exitCode, stderr, false);
    }
    return { stdout, stderr, exitCode: result.exitCode };
  }
}
