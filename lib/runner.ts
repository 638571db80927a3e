// One door to the OS: every `wg`, `ip`, `iptables`, `ip netns exec` call goes through a Runner.
// Production uses ExecaRunner; tests swap in RecordingRunner and assert the transcript.
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

export interface RecordedCall {
  readonly argv: readonly string[];
  readonly input?: string;
}

/** Answers a call (`input`: what was written to its stdin), or undefined to pass it on. */
type Responder = (argv: readonly string[], input?: string) => RunResult | Error | undefined;

/**
 * Test double: records every call and answers from `responders` (first one that returns a value),
 * otherwise succeeds with empty output. An Error answer is thrown as a CommandError.
 */
export class RecordingRunner implements Runner {
  readonly calls: RecordedCall[] = [];
  private readonly responders: Responder[] = [];

  respond(responder: Responder): this {
    this.responders.push(responder);
    return this;
  }

  /** Convenience: answer commands whose argv starts with `prefix` with `stdout`. */
  on(prefix: readonly string[], stdout: string | (() => string)): this {
    return this.respond((argv) =>
      prefix.every((p, i) => argv[i] === p)
        ? { stdout: typeof stdout === 'string' ? stdout : stdout(), stderr: '', exitCode: 0 }
        : undefined,
    );
  }

  /** Convenience: make commands whose argv starts with `prefix` fail with `stderr`. */
  fail(prefix: readonly string[], stderr: string, exitCode = 2): this {
    return this.respond((argv) =>
      prefix.every((p, i) => argv[i] === p) ? { stdout: '', stderr, exitCode } : undefined,
    );
  }

  /** The transcript as shell-like lines, the form tests assert on. */
  transcript(): string[] {
    return this.calls.map((c) => c.argv.join(' '));
  }

  clear(): void {
    this.calls.length = 0;
  }

  run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    this.calls.push(options.input === undefined ? { argv: [...argv] } : { argv: [...argv], input: options.input });
    for (const r of this.responders) {
      const answer = r(argv, options.input);
      if (answer instanceof Error) return Promise.reject(new CommandError(argv, 1, answer.message, false));
      if (answer) {
        if (answer.exitCode !== 0 && !options.allowFailure) {
          return Promise.reject(new CommandError(argv, answer.exitCode, answer.stderr, false));
        }
        return Promise.resolve(answer);
      }
    }
    return Promise.resolve({ stdout: '', stderr: '', exitCode: 0 });
  }
}
