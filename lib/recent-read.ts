// A read of live state shared by callers that ask at about the same time: concurrent callers share
// one in-flight read, and a result younger than `maxAgeMs` is served again instead of re-reading.
// Errors are never kept (the next call reads again). Used where status requests (the lab polls
// every agent twice a second, the services table refreshes its paths) would otherwise each spawn
// `wg`/`ip`/`nft`. `fresh()` is the way past the sharing for a caller that must see the state as
// it is now (`crosslink status --fresh`, a test right after a change it made): it never serves a
// kept result nor joins a read that started before it; what it reads is then shared like any read.
import type { Clock } from './clock.ts';

export interface RecentRead<T> {
  (): Promise<T>;
  /** A read that starts now (never a kept result or an earlier read in flight); its result is kept for the others. */
  fresh(): Promise<T>;
  /** Forget the kept result (after a change this process made itself). */
  invalidate(): void;
}

export function recentRead<T>(clock: Clock, maxAgeMs: number, read: () => Promise<T>): RecentRead<T> {
  let kept: { value: T; at: number; seq: number } | null = null;
  let inFlight: Promise<T> | null = null;
  let generation = 0;
  let started = 0;
  const start = (): Promise<T> => {
    const mine = generation;
    const seq = ++started;
    const at = clock.now();
    const p = read()
      .then((value) => {
        // A slower read that started earlier never replaces a newer result.
        if (mine === generation && (kept === null || kept.seq < seq)) kept = { value, at, seq };
        return value;
      })
      .finally(() => {
        if (inFlight === p) inFlight = null;
      });
    inFlight = p;
    return p;
  };
  const get = (): Promise<T> => {
    if (kept && clock.now() - kept.at < maxAgeMs) return Promise.resolve(kept.value);
    return inFlight ?? start();
  };
  return Object.assign(get, {
    fresh: start,
    invalidate(): void {
      generation++;
      kept = null;
      inFlight = null;
    },
  });
}
