// CatchUpWatch with a fake source (no server): what it yields when a page of a multi-page poll fails,
// and when it asks again after the broker refused a page as rate-limited with `retryAfterMs`.
import test from 'ava';
import type { KvWatchEntry } from '@nats-io/kv';
import { RETRY_AFTER_MAX_MS, WatchBrokerError } from '../agent/control/brokered-watch.ts';
import { CatchUpWatch } from '../agent/control/catch-up-watch.ts';
import type { CatchUpOptions, KvCatchUpEntry, KvCatchUpPage } from '../agent/control/key-watch.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { ManualClock } from './helpers/manual-clock.ts';

const entry = (revision: number): KvCatchUpEntry => ({ key: `nodes.n${revision}`, revision, operation: 'PUT', value: new TextEncoder().encode(`v${revision}`), createdMs: 0 });

/** A stream of revisions 1..n; pages of `limit`; `failAt` makes the request after that revision throw once (a rate-limited or timed-out page). */
function fakeSource(
  stream: KvCatchUpEntry[],
  clock?: ManualClock,
): { catchUp(o: CatchUpOptions): Promise<KvCatchUpPage>; failOnceAfter: number | undefined; failWith: Error; asked: number[]; askedAt: number[] } {
  const src = {
    failOnceAfter: undefined as number | undefined,
    failWith: new Error('rate-limited'),
    asked: [] as number[],
    /** When (on the clock) each request came. */
    askedAt: [] as number[],
    catchUp(o: CatchUpOptions): Promise<KvCatchUpPage> {
      src.asked.push(o.afterRevision);
      src.askedAt.push(clock?.now() ?? 0);
      if (src.failOnceAfter === o.afterRevision) {
        src.failOnceAfter = undefined;
        return Promise.reject(src.failWith);
      }
      const after = stream.filter((e) => e.revision > o.afterRevision);
      return Promise.resolve({ entries: after.slice(0, o.limit), more: after.length > o.limit });
    },
  };
  return src;
}

function collect(w: CatchUpWatch): KvWatchEntry[] {
  const out: KvWatchEntry[] = [];
  void (async () => {
    for await (const e of w) out.push(e);
  })();
  return out;
}

test('a poll whose second page fails keeps the first page: every revision is yielded once, in order, and the next poll goes on from there', async (t) => {
  const clock = new ManualClock();
  const stream = [entry(1), entry(2)];
  const source = fakeSource(stream);
  const w = new CatchUpWatch({ source, bucket: 'b', filter: 'nodes.>', afterRevision: 0, clock, logger: silentLogger(), intervalMs: 1000, pageLimit: 2 });
  t.teardown(() => w.stop());
  const got = collect(w);
  t.is(await w.initialCount(), 2);
  await waitFor(() => clock.sleepers === 1, { timeoutMs: 5000, what: 'the first poll armed' });
  // Five changes arrive; the poll reads them in pages of 2 — the second page (after revision 4) fails.
  stream.push(entry(3), entry(4), entry(5), entry(6), entry(7));
  source.failOnceAfter = 4;
  clock.advance(1000);
  await waitFor(() => clock.sleepers === 1 && source.asked.includes(4), { timeoutMs: 5000, what: 'the failed poll over, the next one armed' });
  await waitFor(() => got.length >= 4, { timeoutMs: 5000, what: 'the first page of the failed poll yielded' });
  clock.advance(1000);
  await waitFor(() => got.length >= 7, { timeoutMs: 5000, what: 'the rest yielded by the next poll' });
  t.deepEqual(got.map((e) => e.revision), [1, 2, 3, 4, 5, 6, 7]);
  t.deepEqual(source.asked, [0, 2, 4, 4, 6], 'the next poll asks after the last revision yielded, not before it');
});

const rateLimited = (retryAfterMs: number): WatchBrokerError => new WatchBrokerError('rate-limited', 'the watch broker refused: too many catch-up entries read', retryAfterMs);

test('a poll refused as rate-limited: the next request waits retryAfterMs (not the 1 s interval), then goes on at once and then every interval', async (t) => {
  const clock = new ManualClock();
  const t0 = clock.now();
  const stream = [entry(1)];
  const source = fakeSource(stream, clock);
  const w = new CatchUpWatch({ source, bucket: 'b', filter: 'nodes.>', afterRevision: 0, clock, logger: silentLogger(), intervalMs: 1000 });
  t.teardown(() => w.stop());
  const got = collect(w);
  t.is(await w.initialCount(), 1);
  await waitFor(() => clock.hasSleeperAt(t0 + 1000), { timeoutMs: 5000, what: 'the first poll armed' });
  stream.push(entry(2));
  source.failOnceAfter = 1;
  source.failWith = rateLimited(4500);
  clock.advanceTo(t0 + 1000);
  await waitFor(() => source.asked.length === 2 && clock.sleepers === 1, { timeoutMs: 5000, what: 'the refused poll over, the next one armed' });
  t.deepEqual(clock.wakeups, [t0 + 1000 + 4500], 'the next request is armed for retryAfterMs after the refusal');
  // Up to 1 ms before it: nothing asked (without the change the poll came at t0 + 2000).
  clock.advanceTo(t0 + 5499);
  t.is(source.asked.length, 2, 'no request before retryAfterMs');
  clock.advanceTo(t0 + 5500);
  await waitFor(() => got.length === 2 && clock.sleepers === 1, { timeoutMs: 5000, what: 'the request right after retryAfterMs' });
  t.deepEqual(source.askedAt, [t0, t0 + 1000, t0 + 5500]);
  t.deepEqual(clock.wakeups, [t0 + 6500], 'then the usual interval again');
  t.deepEqual(got.map((e) => e.revision), [1, 2]);
});

test('retryAfterMs is capped (RETRY_AFTER_MAX_MS): a refusal asking for an hour waits the cap', async (t) => {
  const clock = new ManualClock();
  const t0 = clock.now();
  const source = fakeSource([entry(1)], clock);
  source.failOnceAfter = 0;
  source.failWith = rateLimited(3_600_000);
  const w = new CatchUpWatch({ source, bucket: 'b', filter: 'nodes.>', afterRevision: 0, clock, logger: silentLogger(), intervalMs: 1000 });
  t.teardown(() => w.stop());
  await waitFor(() => clock.sleepers === 1, { timeoutMs: 5000, what: 'the refused first pass waiting' });
  t.deepEqual(clock.wakeups, [t0 + RETRY_AFTER_MAX_MS]);
});

test('a first pass refused as rate-limited goes on from the refused page after retryAfterMs (not ended, earlier pages kept)', async (t) => {
  const clock = new ManualClock();
  const t0 = clock.now();
  const source = fakeSource([entry(1), entry(2), entry(3), entry(4)], clock);
  // Pages of 2: the second page (after revision 2) is refused.
  source.failOnceAfter = 2;
  source.failWith = rateLimited(3000);
  const w = new CatchUpWatch({ source, bucket: 'b', filter: 'nodes.>', afterRevision: 0, clock, logger: silentLogger(), intervalMs: 1000, pageLimit: 2 });
  t.teardown(() => w.stop());
  const got = collect(w);
  await waitFor(() => clock.sleepers === 1, { timeoutMs: 5000, what: 'the refused first pass waiting' });
  t.deepEqual(clock.wakeups, [t0 + 3000], 'asked again retryAfterMs after the refusal');
  clock.advanceTo(t0 + 2999);
  t.is(source.asked.length, 2, 'no request before retryAfterMs');
  clock.advanceTo(t0 + 3000);
  t.is(await w.initialCount(), 4, 'the initial snapshot: every entry, the pages before the refusal included');
  await waitFor(() => got.length === 4, { timeoutMs: 5000, what: 'the snapshot yielded' });
  t.deepEqual(source.asked, [0, 2, 2]);
  t.deepEqual(source.askedAt, [t0, t0, t0 + 3000]);
  t.deepEqual(got.map((e) => e.revision), [1, 2, 3, 4]);
  t.deepEqual(got.map((e) => e.isUpdate), [false, false, false, true]);
});
