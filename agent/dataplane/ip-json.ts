// `ip -j …` output → a JSON array, or a typed error naming the command. The tools print nothing for
// an empty result; anything that is not a JSON array (a truncated read, a tool that ignored -j) is
// an error the caller decides about, never an uncaught SyntaxError.
import { CrosslinkError, errorMessage } from '../../lib/errors.ts';

export class IpJsonError extends CrosslinkError {
  override name = 'IpJsonError';
  constructor(
    readonly argv: readonly string[],
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${argv.join(' ')}: ${message}`, options);
  }
}

/** The rows of `ip -j` output ([] for empty output); element shapes are the caller's to check. */
export function parseIpJson(stdout: string, argv: readonly string[]): unknown[] {
  if (stdout.trim() === '') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch (err) {
    throw new IpJsonError(argv, `output is not JSON (${errorMessage(err)}): ${JSON.stringify(stdout.slice(0, 80))}`, { cause: err });
  }
  if (!Array.isArray(parsed)) throw new IpJsonError(argv, `expected a JSON array, got ${JSON.stringify(stdout.slice(0, 80))}`);
  return parsed;
}
