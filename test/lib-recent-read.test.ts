import test from 'ava';
import { ManualClock } from './helpers/manual-clock.ts';
import { recentRead } from '../lib/recent-read.ts';

function counter(): { reads: () => number; read: () => Promise<number> } {
  let n = 0;
  return { reads: () => n, read: () => Promise.resolve(++n) };
}

test('a result younger than maxAge is served again; an older one is read anew', async (t) => {
  const clock = new ManualClock();
  const c = counter();
  const get = recentRead(clock, 1000, c.read);
  t.is(await get(), 1);
  clock.advance(999);
  t.is(await get(), 1);
  t.is(c.reads(), 1);
  clock.advance(1);
  t.is(await get(), 2);
  t.is(c.reads(), 2);
});

test('concurrent callers share one in-flight read', async (t) => {
  const clock = new ManualClock();
  let release!: (v: string) => void;
  let reads = 0;
  const get = recentRead(clock, 1000, () => {
    reads++;
    return new Promise<string>((r) => (release = r));
  });
  const a = get();
  const b = get();
  release('live');
  t.deepEqual(await Promise.all([a, b]), ['live', 'live']);
  t.is(reads, 1);
});

test('errors are not kept: the next call reads again', async (t) => {
  const clock = new ManualClock();
  let fail = true;
  let reads = 0;
  const get = recentRead(clock, 1000, () => {
    reads++;
    return fail ? Promise.reject(new Error('wg: no such device')) : Promise.resolve('ok');
  });
  await t.throwsAsync(get(), { message: 'wg: no such device' });
  fail = false;
  t.is(await get(), 'ok');
  t.is(reads, 2);
});

test('invalidate drops the kept result and a read in flight', async (t) => {
  const clock = new ManualClock();
  const c = counter();
  const get = recentRead(clock, 60_000, c.read);
  t.is(await get(), 1);
  get.invalidate();
  t.is(await get(), 2);
});

test('the age counts from when the read started (a slow read is not kept longer)', async (t) => {
  const clock = new ManualClock();
  let n = 0;
  const get = recentRead(clock, 1000, async () => {
    n++;
    clock.advance(800); // the read itself takes 800 ms
    return Promise.resolve(n);
  });
  t.is(await get(), 1);
  clock.advance(300); // 1100 ms after the read started
  t.is(await get(), 2);
});

test('fresh() reads now even with a result kept; the shared read is still shared otherwise', async (t) => {
  const clock = new ManualClock();
  const c = counter();
  const get = recentRead(clock, 1000, c.read);
  t.is(await get(), 1);
  t.is(await get(), 1, 'shared: served again within maxAge');
  t.is(await get.fresh(), 2, 'fresh: read again at once');
  t.is(c.reads(), 2);
  t.is(await get(), 2, 'the fresh result is what the others are served next');
  t.is(c.reads(), 2, 'and without another read');
});

test('fresh() does not join a read that started before it', async (t) => {
  const clock = new ManualClock();
  const releases: ((v: string) => void)[] = [];
  const get = recentRead(clock, 1000, () => new Promise<string>((r) => releases.push(r)));
  const shared = get();
  const fresh = get.fresh();
  t.is(releases.length, 2, 'fresh started its own read');
  const joined = get();
  t.is(releases.length, 2, 'a shared caller after it joins the newest read in flight');
  releases[1]?.('after the fix');
  releases[0]?.('before the fix');
  t.deepEqual(await Promise.all([shared, fresh, joined]), ['before the fix', 'after the fix', 'after the fix']);
  t.is(await get(), 'after the fix', 'the older read, finished last, did not replace the newer result');
});
