// `--watch`: re-run a view every interval until interrupted (SIGINT/SIGTERM in the binary, the
// caller's AbortSignal in tests). On a terminal each frame replaces the previous one; piped, frames
// are separated by a timestamped line so a log stays readable.
export interface WatchOptions {
  readonly intervalMs: number;
  readonly signal: AbortSignal | undefined;
  readonly isTTY: boolean;
  readonly now: () => number;
  readonly stdout: (text: string) => void;
}

const CLEAR = '\u001b[H\u001b[2J';

/** Runs `frame` (returns text and exit code) repeatedly; resolves with the last exit code. */
export async function watch(o: WatchOptions, frame: () => Promise<{ text: string; code: number }>): Promise<number> {
  let code = 0;
  for (let first = true; !o.signal?.aborted; first = false) {
    const f = await frame();
    code = f.code;
    const head = o.isTTY ? CLEAR : `${first ? '' : '\n'}--- ${new Date(o.now()).toISOString()} (every ${o.intervalMs / 1000}s, exit ${code})\n`;
    o.stdout(`${head}${f.text}`);
    await new Promise<void>((resolve) => {
      if (o.signal?.aborted) return resolve();
      const t = setTimeout(done, o.intervalMs);
      function done(): void {
        clearTimeout(t);
        o.signal?.removeEventListener('abort', done);
        resolve();
      }
      o.signal?.addEventListener('abort', done, { once: true });
    });
  }
  return code;
}
