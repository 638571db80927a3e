// CatchUpHandover (agent/control/catch-up-handover.ts) on its own, with an in-memory source and a
// manual clock (no NATS): the catch-up's first pass and polls, then the push watch — which starts
// further back than the catch-up got and delivers those entries again — hands on every revision
// exactly once, in order; the retry asks after the last revision handed on.
import test from 'ava';
import type { KvWatchEntry } from '@nats-io/kv';
import { CatchUpHandover } from '../agent/control/catch-up-handover.ts';
import { catchUpWatchEntry } from '../lib/kv-catch-up.ts';
import type { CatchUpOptions, KeyWatch, KeyWatchOptions, KeyWatchSource, KvCatchUpEntry, KvCatchUpPage } from '../agent/control/key-watch.ts';
import { AsyncQueue } from '../lib/async-queue.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { ManualClock } from './helpers/manual-clock.ts';

const T0 = 1_700_000_000_000;
const entry = (revision: number): KvCatchUpEntry => ({ key: `services.k${revision}`, revision, operation: 'PUT', value: new Uint8Array([revision]), createdMs: T0 });

/** A push watch delivering `entries` (then staying open until stopped). */
function pushWatch(entries: readonly KvCatchUpEntry[]): KeyWatch {
  const q = new AsyncQueue<KvWatchEntry>();
  for (const e of entries) q.push(catchUpWatchEntry('b', e, true));
  return { initialCount: () => Promise.resolve(0), stop: () => q.close(), [Symbol.asyncIterator]: () => q.iterator(() => q.close()) };
}

test('the push watch takes over after the catch-up; what it delivers again is skipped, every revision handed on once', async (t) => {
  const clock = new ManualClock(T0);
  const store = [entry(1), entry(2)];
  const asked: KeyWatchOptions[] = [];
  const source: KeyWatchSource = {
    // The retried create succeeds, but its watch starts at the beginning (as a full watch would): 1, 2, 3 again, then 4.
    watch: (o) => {
      asked.push(o);
      return Promise.resolve(pushWatch(store));
    },
    count: () => Promise.reject(new Error('not used')),
    catchUp: (o: CatchUpOptions): Promise<KvCatchUpPage> => Promise.resolve({ entries: store.filter((e) => e.revision > o.afterRevision), more: false }),
  };
  const w = new CatchUpHandover({
    source,
    bucket: 'b',
    watch: { key: 'services.>' },
    afterRevision: 0,
    pending: Promise.reject(new Error('refused')),
    clock,
    logger: silentLogger(),
    retry: { initialMs: 1500, maxMs: 1500 },
  });
  t.teardown(() => w.stop());
  const got: number[] = [];
  const consumed = (async () => {
    for await (const e of w) got.push(e.revision);
  })();
  t.is(await w.initialCount(), 2);
  await waitFor(() => got.length === 2, { timeoutMs: 5000, what: 'the first pass' });
  store.push(entry(3));
  await clock.advanceWhenArmed(T0 + 1000, 'the first poll');
  await waitFor(() => got.length === 3, { timeoutMs: 5000, what: '3 through catch-up' });
  t.true(w.catchingUp);
  store.push(entry(4));
  await clock.advanceWhenArmed(T0 + 1500, 'the push retry');
  await waitFor(() => got.includes(4), { timeoutMs: 5000, what: '4 through the push watch' });
  t.false(w.catchingUp);
  t.deepEqual(got, [1, 2, 3, 4], 'each revision once, in order');
  t.deepEqual(asked, [{ key: 'services.>', resumeFromRevision: 4 }], 'the retry asks after the last revision handed on');
  w.stop();
  await consumed;
});
