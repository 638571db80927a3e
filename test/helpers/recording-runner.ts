// The recording Runner tests swap in for ProcessRunner (a test fake: it lives under test/, never in the production tree).
import { CommandError } from '../../lib/errors.ts';
import type { Runner, RunOptions, RunResult } from '../../lib/runner.ts';

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
