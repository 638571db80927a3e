// CatchUpWatch with a fake source (no server): what it yields when a page of a multi-page poll fails.
import test from 'ava';
import type { KvWatchEntry } from '@nats-io/kv';
import { CatchUpWatch } from '../agent/control/catch-up-watch.ts';
import type { CatchUpOptions, KvCatchUpEntry, KvCatchUpPage } from '../agent/control/key-watch.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { ManualClock } from './helpers/manual-clock.ts';

const entry = (revision: number): KvCatchUpEntry => ({ key: `nodes.n${revision}`, revision, operation: 'PUT', value: new TextEncoder().encode(`v${revision}`), createdMs: 0 });

/** A stream of revisions 1..n; pages of `limit`; `failAt` makes the request after that revision throw once (a rate-limited or timed-out page). */
function fakeSource(stream: KvCatchUpEntry[]): { catchUp(o: CatchUpOptions): Promise<KvCatchUpPage>; failOnceAfter: number | undefined; asked: number[] } {
  const src = {
    failOnceAfter: undefined as number | undefined,
    asked: [] as number[],
    catchUp(o: CatchUpOptions): Promise<KvCatchUpPage> {
      src.asked.push(o.afterRevision);
      if (src.failOnceAfter === o.afterRevision) {
        src.failOnceAfter = undefined;
        return Promise.reject(new Error('rate-limited'));
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
