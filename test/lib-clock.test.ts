import test from 'ava';
import { ManualClock } from './helpers/manual-clock.ts';

test('ManualClock.sleep resolves when advance passes its deadline, not before', async (t) => {
  const clock = new ManualClock(0);
  let done = false;
  const slept = clock.sleep(100).then(() => (done = true));
  clock.advance(99);
  await Promise.resolve();
  t.false(done);
  clock.advance(1);
  await slept;
  t.true(done);
});

test('ManualClock.sleep resolves at once on abort (as systemClock does), also if already aborted', async (t) => {
  const clock = new ManualClock(0);
  const ac = new AbortController();
  const slept = clock.sleep(60_000, ac.signal);
  ac.abort();
  await slept; // would hang (and time the test out) if the signal were ignored
  await clock.sleep(60_000, ac.signal);
  // The aborted waiter is gone: advancing past its deadline resolves nothing twice.
  clock.advance(60_000);
  t.pass();
});
