// A read of live state shared by callers that ask at about the same time: concurrent callers share
// one in-flight read, and a result younger than `maxAgeMs` is served again instead of re-reading.
// Errors are never kept (the next call reads again). Used where status requests (the lab polls
// every agent twice a second, the services table refreshes its paths) would otherwise each spawn
// `wg`/`ip`/`nft`.
import type { Clock } from './clock.ts';

export interface RecentRead<T> {
  (): Promise<T>;
  /** Forget the kept result (after a change this process made itself). */
  invalidate(): void;
}

export function recentRead<T>(clock: Clock, maxAgeMs: number, read: () => Promise<T>): RecentRead<T> {
  let kept: { value: T; at: number } | null = null;
  let inFlight: Promise<T> | null = null;
  let generation = 0;
  const get = (): Promise<T> => {
    if (kept && clock.now() - kept.at < maxAgeMs) return Promise.resolve(kept.value);
    if (inFlight) return inFlight;
    const mine = generation;
    const started = clock.now();
    const p = read()
      .then((value) => {
        if (mine === generation) kept = { value, at: started };
        return value;
      })
      .finally(() => {
        if (inFlight === p) inFlight = null;
      });
    inFlight = p;
    return p;
  };
  return Object.assign(get, {
    invalidate(): void {
      generation++;
      kept = null;
      inFlight = null;
    },
  });
}
