// Every wait polls with a deadline. Used by tests, the lab and the agent.
import { TimeoutError, errorMessage } from './errors.ts';

export interface WaitOptions {
  readonly timeoutMs: number;
  readonly intervalMs?: number;
  /** Describes what was awaited, for the TimeoutError message. */
  readonly what: string;
}

/**
 * Calls `probe` until it returns a value other than undefined/false, or the deadline passes.
 * A throwing probe counts as "not yet"; its last error is reported in the TimeoutError.
 */
export async function waitFor<T>(probe: () => Promise<T | undefined | false> | T | undefined | false, options: WaitOptions): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  const interval = options.intervalMs ?? 200;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const why = lastError === undefined ? '' : `; last error: ${errorMessage(lastError)}`;
      throw new TimeoutError(`timed out after ${options.timeoutMs} ms waiting for ${options.what}${why}`, { cause: lastError });
    }
    await new Promise((r) => setTimeout(r, Math.min(interval, Math.max(0, deadline - Date.now()))));
  }
}
