// lib/ helpers shared by every component: backoff (clock and randomness injected), name order,
// rate-limited logging.
import test from 'ava';
import { backoffDelay, jittered, retryWithBackoff, superviseWithBackoff } from '../lib/backoff.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { byName, compareText } from '../lib/compare.ts';
import { RateLimitedLog } from '../lib/rate-limited-log.ts';
import type { Logger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';

test('backoffDelay doubles from the initial delay up to the cap', (t) => {
  const p = { initialMs: 500, maxMs: 5000 };
  t.deepEqual([0, 1, 2, 3, 4, 5, 60].map((f) => backoffDelay(p, f)), [0, 500, 1000, 2000, 4000, 5000, 5000]);
});

test('backoffDelay jitter spreads ±fraction using the injected random source', (t) => {
  const p = { initialMs: 1000, maxMs: 1000, jitter: 0.2 };
  t.is(backoffDelay(p, 1, () => 0), 800);
  t.is(backoffDelay(p, 1, () => 0.5), 1000);
  t.is(backoffDelay(p, 1, () => 0.999_999), 1200);
  t.is(backoffDelay({ initialMs: 1000, maxMs: 1000 }, 1, () => 0), 1000, 'no jitter unless asked');
});

test('jittered spreads a base by ±fraction over random in [0, 1), rounded to whole ms', (t) => {
  t.deepEqual([0, 0.25, 0.5, 0.999_999].map((r) => jittered(1000, 0.5, r)), [500, 750, 1000, 1500]);
  t.deepEqual([0, 0.5, 0.999_999].map((r) => jittered(333, 0.1, r)), [300, 333, 366]);
  t.is(jittered(1000, 0, 0.9), 1000);
});

test('retryWithBackoff sleeps the backoff on the injected clock between attempts, then returns the result', async (t) => {
  const clock = new ManualClock(0);
  const failures: [number, number][] = [];
  let attempts = 0;
  const done = retryWithBackoff(
    () => {
      attempts++;
      return attempts < 3 ? Promise.reject(new Error(`no ${attempts}`)) : Promise.resolve('ok');
    },
    { policy: { initialMs: 100, maxMs: 1000 }, clock, signal: new AbortController().signal, onFailure: (_e, n, ms) => failures.push([n, ms]) },
  );
  await waitFor(() => failures.length === 1, { timeoutMs: 10_000, intervalMs: 5, what: 'first failure' });
  clock.advance(99);
  await Promise.resolve();
  t.is(attempts, 1, 'not retried before the delay');
  clock.advance(1);
  await waitFor(() => failures.length === 2, { timeoutMs: 10_000, intervalMs: 5, what: 'second failure' });
  clock.advance(200);
  t.is(await done, 'ok');
  t.deepEqual(failures, [[1, 100], [2, 200]]);
});

test('retryWithBackoff gives up with undefined when the signal aborts during a sleep', async (t) => {
  const clock = new ManualClock(0);
  const stop = new AbortController();
  let attempts = 0;
  const done = retryWithBackoff(() => {
    attempts++;
    return Promise.reject(new Error('down'));
  }, { policy: { initialMs: 60_000, maxMs: 60_000 }, clock, signal: stop.signal });
  await waitFor(() => attempts === 1, { timeoutMs: 10_000, intervalMs: 5, what: 'first attempt' });
  stop.abort();
  t.is(await done, undefined);
  t.is(attempts, 1);
});

test('superviseWithBackoff restarts a run: the initial delay after a clean end, growing delays after consecutive failures, stops on abort', async (t) => {
  const clock = new ManualClock(0);
  const stop = new AbortController();
  const outcomes = ['fail', 'fail', 'ok', 'fail'];
  let runs = 0;
  const failures: [number, number][] = [];
  const done = superviseWithBackoff(
    () => {
      const o = outcomes[runs++];
      return o === 'ok' ? Promise.resolve() : Promise.reject(new Error(`run ${runs}`));
    },
    { policy: { initialMs: 100, maxMs: 10_000 }, clock, signal: stop.signal, onFailure: (_e, n, ms) => failures.push([n, ms]) },
  );
  // Each wait: the supervisor armed its sleep (observable on the manual clock), then time moves to it.
  for (const [expectedRuns, due] of [[1, 200], [2, 600], [3, 700], [4, 900]] as const) {
    await waitFor(() => runs === expectedRuns && clock.wakeups[0] === due, { timeoutMs: 10_000, intervalMs: 5, what: `sleep after run ${expectedRuns}` });
    clock.advanceTo(due);
  }
  await waitFor(() => runs === 5 || failures.length === 4, { timeoutMs: 10_000, intervalMs: 5, what: 'run 5' });
  stop.abort();
  await done;
  // fail → 200 (2× min), fail → 400, clean end → 100 (count reset), fail → 200.
  t.deepEqual(failures.slice(0, 3), [[1, 200], [2, 400], [1, 200]]);
});

test('superviseWithBackoff nextDelay: what the ended run asked replaces the initial delay after a clean end, is the least after a failure, and is asked once per run', async (t) => {
  const clock = new ManualClock(0);
  const stop = new AbortController();
  t.teardown(() => stop.abort());
  // run 1 ends cleanly asking 1500; run 2 ends cleanly asking nothing; run 3 fails asking 50; run 4 fails asking 900.
  const plan: { ok: boolean; ask: number | undefined }[] = [{ ok: true, ask: 1500 }, { ok: true, ask: undefined }, { ok: false, ask: 50 }, { ok: false, ask: 900 }];
  let runs = 0;
  let asked = 0;
  void superviseWithBackoff(() => (plan[runs++]?.ok ?? false ? Promise.resolve() : Promise.reject(new Error('x'))), {
    policy: { initialMs: 100, maxMs: 10_000 },
    clock,
    signal: stop.signal,
    nextDelay: () => {
      asked++;
      return plan[runs - 1]?.ask;
    },
  });
  // 1500 (asked, not 100), then 100 (the policy), then max(200, 50) = 200, then max(400, 900) = 900.
  for (const [expectedRuns, due] of [[1, 1500], [2, 1600], [3, 1800], [4, 2700]] as const) {
    await waitFor(() => runs === expectedRuns && clock.wakeups[0] === due, { timeoutMs: 10_000, intervalMs: 5, what: `sleep after run ${expectedRuns} (armed: ${clock.wakeups.join(', ')})` });
    t.is(asked, expectedRuns, 'asked once per run');
    clock.advanceTo(due);
  }
});

test('minDelayOf: a failure that asks for a longer wait (a rate-limited retryAfterMs) is waited out, a shorter ask leaves the backoff; both retry helpers', async (t) => {
  const clock = new ManualClock(0);
  const stop = new AbortController();
  t.teardown(() => stop.abort());
  const asks = [3000, 10, 0];
  let runs = 0;
  const failures: [number, number][] = [];
  const minDelayOf = (err: unknown): number => Number((err as Error).message);
  void superviseWithBackoff(() => Promise.reject(new Error(String(asks[runs++] ?? 0))), { policy: { initialMs: 100, maxMs: 10_000 }, clock, signal: stop.signal, minDelayOf, onFailure: (_e, n, ms) => failures.push([n, ms]) });
  for (const [expectedRuns, due] of [[1, 3000], [2, 3400], [3, 4200]] as const) {
    await waitFor(() => runs === expectedRuns && clock.wakeups[0] === due, { timeoutMs: 10_000, intervalMs: 5, what: `sleep after run ${expectedRuns} (armed: ${clock.wakeups.join(', ')})` });
    clock.advanceTo(due);
  }
  // 3000 asked (backoff 200), 10 asked (backoff 400), none (backoff 800).
  t.deepEqual(failures.slice(0, 3), [[1, 3000], [2, 400], [3, 800]]);

  const retried: number[] = [];
  const clock2 = new ManualClock(0);
  let attempts = 0;
  const done = retryWithBackoff(() => (++attempts === 1 ? Promise.reject(new Error('2500')) : Promise.resolve('ok')), { policy: { initialMs: 100, maxMs: 1000 }, clock: clock2, signal: stop.signal, minDelayOf, onFailure: (_e, _n, ms) => retried.push(ms) });
  await waitFor(() => clock2.wakeups[0] === 2500, { timeoutMs: 10_000, intervalMs: 5, what: 'the retry armed at 2500' });
  clock2.advanceTo(2500);
  t.is(await done, 'ok');
  t.deepEqual(retried, [2500]);
});

test('compareText is code-unit order, not the locale\'s', (t) => {
  const names = ['node-b', 'node10', 'Node-a', 'node-a', 'node1'];
  t.deepEqual([...names].sort(compareText), [...names].sort());
  t.deepEqual([...names].sort(compareText), ['Node-a', 'node-a', 'node-b', 'node1', 'node10']);
  t.deepEqual([{ name: 'b' }, { name: 'a-1' }, { name: 'a1' }].sort(byName).map((n) => n.name), ['a-1', 'a1', 'b']);
});

test('RateLimitedLog warns once per interval per key, then says how many it held back', (t) => {
  const lines: [string, Record<string, unknown>][] = [];
  const logger = {
    warn: (f: Record<string, unknown>) => lines.push(['warn', f]),
    debug: (f: Record<string, unknown>) => lines.push(['debug', f]),
  } as unknown as Logger;
  const clock = new ManualClock(0);
  const log = new RateLimitedLog(logger, clock, 1000);
  log.warn('a', { n: 1 }, 'm');
  log.warn('a', { n: 2 }, 'm');
  log.warn('b', { n: 3 }, 'm');
  clock.advance(1000);
  log.warn('a', { n: 4 }, 'm');
  log.reset('b');
  log.warn('b', { n: 5 }, 'm');
  t.deepEqual(lines, [
    ['warn', { n: 1 }],
    ['debug', { n: 2 }],
    ['warn', { n: 3 }],
    ['warn', { n: 4, suppressedSinceLast: 1 }],
    ['warn', { n: 5 }],
  ]);
});
