// Typed errors shared by every component. Each has a stable `name` so callers (and logs)
// can tell them apart without string matching, and keeps the underlying `cause`.

export class CrosslinkError extends Error {
  override name = 'CrosslinkError';
}

/** Bad input at an edge (flag, env, message, file). Names the field, the value and what is allowed. */
export class ValidationError extends CrosslinkError {
  override name = 'ValidationError';
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly allowed: string,
    options?: { cause?: unknown },
  ) {
    super(`${field}: ${describeValue(value)} is not valid; ${allowed}`, options);
  }
}

/** A command run through the Runner failed (non-zero exit, timeout, not found). Keeps stderr. */
export class CommandError extends CrosslinkError {
  override name = 'CommandError';
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
    readonly timedOut: boolean,
    options?: { cause?: unknown },
  ) {
    const what = timedOut ? 'timed out' : exitCode === undefined ? 'could not run' : `exited ${exitCode}`;
    const tail = stderr.trim() ? `: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : '';
    super(`${argv.join(' ')} ${what}${tail}`, options);
  }
}

/** Several independent operations were attempted and some failed; the rest were applied. */
export class PartialFailureError extends CrosslinkError {
  override name = 'PartialFailureError';
  constructor(
    readonly failures: readonly { readonly op: string; readonly error: Error }[],
  ) {
    super(summarizeFailures(failures));
  }
}

/** A wait with a deadline ran out. */
export class TimeoutError extends CrosslinkError {
  override name = 'TimeoutError';
}

/** "2 add route failures; first was: …" — groups failures by op so the log line stays short. */
export function summarizeFailures(failures: readonly { readonly op: string; readonly error: Error }[]): string {
  if (failures.length === 0) return 'no failures';
  const counts = new Map<string, number>();
  for (const f of failures) counts.set(f.op, (counts.get(f.op) ?? 0) + 1);
  const parts = [...counts].map(([op, n]) => `${n} ${op} failure${n === 1 ? '' : 's'}`);
  const first = failures[0];
  return `${parts.join(', ')}; first was: ${first ? first.error.message : ''}`;
}

export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === undefined) return '(missing)';
  try {
    const s = JSON.stringify(value);
    return s.length > 120 ? `${s.slice(0, 117)}...` : s;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
