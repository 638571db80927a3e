// ServiceWatch's sessions (agent/services/service-watch.ts) are supervised by lib/backoff.ts, not a
// backoff of their own: failures and sessions cut short before their snapshot back off (2×, 4×, …
// the minimum, capped), a session that delivered its snapshot is followed after the minimum. On a
// manual clock, with a fake watch source: no NATS, no real-time sleep. The random source is pinned at
// the spread's centre (0.5: the backoff itself; the spread: test/watch-retry-jitter.test.ts).
import test from 'ava';
import type { KvWatchEntry } from '@nats-io/kv';
import { WatchBrokerError } from '../agent/control/brokered-watch.ts';
import type { KeyWatch, KeyWatchSource } from '../agent/control/key-watch.ts';
import { ServiceWatch } from '../agent/services/service-watch.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { quietConnection } from './helpers/scripted-status.ts';

/** A watch whose snapshot announces `count` entries and which ends (delivering none) when `end` is called, or at once. */
function watchOf(count: number, endAtOnce: boolean): KeyWatch & { end(): void } {
  let finish: () => void = () => undefined;
  const ended = endAtOnce ? Promise.resolve() : new Promise<void>((r) => (finish = r));
  return {
    initialCount: () => Promise.resolve(count),
    stop: () => finish(),
    end: () => finish(),
    [Symbol.asyncIterator]: (): AsyncIterator<KvWatchEntry> => ({
      next: async (): Promise<IteratorResult<KvWatchEntry>> => {
        await ended;
        return { done: true, value: undefined };
      },
    }),
  };
}

test('sessions back off with lib/backoff.ts: failures and a cut-short snapshot double the delay, a complete session is followed after the minimum', async (t) => {
  const clock = new ManualClock();
  // Three failed creates, a session that ends before its one-entry snapshot, a complete (empty) one that ends, then one that stays.
  const lasting = watchOf(0, false);
  const plan: (() => Promise<KeyWatch>)[] = [
    () => Promise.reject(new Error('no responders')),
    () => Promise.reject(new Error('no responders')),
    () => Promise.reject(new Error('no responders')),
    () => Promise.resolve(watchOf(1, true)),
    () => Promise.resolve(watchOf(0, true)),
    () => Promise.resolve(lasting),
  ];
  let calls = 0;
  const source = { watch: () => (plan[calls++] ?? (() => Promise.reject(new Error('unplanned'))))() } as unknown as KeyWatchSource;
  const key = await generateSigningKeyPair();
  // Stall detection and catch-up off: their sleeps would be among the wakeups read here, and a refused
  // create would be followed by catch-up, not retried (test/watch-stall.test.ts, test/watch-catch-up.test.ts).
  const w = new ServiceWatch({ nc: quietConnection(), bucket: 'b', coordinatorKey: key.publicKey, logger: silentLogger(), clock, retryMinMs: 250, retryMaxMs: 5000, random: () => 0.5, watches: source, progressCheckMs: 0, catchUpAfterMs: 0 });
  w.start();
  t.teardown(() => w.stop());
  const delays: number[] = [];
  for (let i = 0; i < 5; i++) {
    const due = await waitFor(() => clock.wakeups[0], { timeoutMs: 5000, intervalMs: 1, what: `the watch asleep before session ${i + 2}` });
    delays.push(due - clock.now());
    clock.advanceTo(due);
  }
  t.deepEqual(delays, [500, 1000, 2000, 4000, 250]);
  await waitFor(() => calls === 6, { timeoutMs: 5000, intervalMs: 1, what: 'the sixth session' });
  t.true(w.synced, 'the complete session delivered its (empty) snapshot');
  lasting.end();
});

test('a create the broker refused as rate-limited is asked again after its retryAfterMs (not the backoff)', async (t) => {
  const clock = new ManualClock();
  const lasting = watchOf(0, false);
  const askedAt: number[] = [];
  let calls = 0;
  const source = {
    watch: (): Promise<KeyWatch> => {
      askedAt.push(clock.now());
      return calls++ === 0 ? Promise.reject(new WatchBrokerError('rate-limited', 'the watch broker refused: too many watch requests; retry in 3000 ms', 3000)) : Promise.resolve(lasting);
    },
  } as unknown as KeyWatchSource;
  const key = await generateSigningKeyPair();
  const w = new ServiceWatch({ nc: quietConnection(), bucket: 'b', coordinatorKey: key.publicKey, logger: silentLogger(), clock, retryMinMs: 250, retryMaxMs: 5000, random: () => 0.5, watches: source, progressCheckMs: 0, catchUpAfterMs: 0 });
  const t0 = clock.now();
  w.start();
  t.teardown(() => w.stop());
  const due = await waitFor(() => clock.wakeups[0], { timeoutMs: 5000, intervalMs: 1, what: 'the watch asleep after the refusal' });
  t.is(due - t0, 3000, 'retryAfterMs, not the 500 ms backoff');
  clock.advanceTo(due - 1);
  t.is(calls, 1, 'not asked before');
  clock.advanceTo(due);
  await waitFor(() => calls === 2, { timeoutMs: 5000, intervalMs: 1, what: 'asked again right at retryAfterMs' });
  t.deepEqual(askedAt, [t0, t0 + 3000]);
  lasting.end();
});
