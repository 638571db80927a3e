// lib/clock-timer.ts on a manual clock: fires once at its deadline and not before, re-arming pushes
// the deadline back, a cancelled (or owner-stopped) timer never fires, a periodic one fires every
// period until cancelled, and what the callback throws reaches onError. A timer's firing follows its sleep in the same run of microtasks, so one macrotask
// turn (setImmediate) is enough to see that it did not fire.
import { getEventListeners } from 'node:events';
import test from 'ava';
import { ClockTimer } from '../lib/clock-timer.ts';
import { ManualClock } from './helpers/manual-clock.ts';

const T0 = 1_700_000_000_000;
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

function timer(o: { signal?: AbortSignal; fail?: boolean } = {}): { clock: ManualClock; t: ClockTimer; fired: () => number; errors: unknown[] } {
  const clock = new ManualClock(T0);
  let fired = 0;
  const errors: unknown[] = [];
  const t = new ClockTimer({
    clock,
    fire: () => {
      fired++;
      if (o.fail) throw new Error('boom');
    },
    onError: (err) => errors.push(err),
    ...(o.signal ? { signal: o.signal } : {}),
  });
  return { clock, t, fired: () => fired, errors };
}

test('fires once at its deadline of clock time, not before, and not again', async (t) => {
  const x = timer();
  x.t.arm(1000);
  t.true(x.t.pending);
  x.clock.advanceTo(T0 + 999);
  await turn();
  t.is(x.fired(), 0, 'not before the deadline');
  x.clock.advanceTo(T0 + 1000);
  await turn();
  t.is(x.fired(), 1, 'at the deadline');
  t.false(x.t.pending);
  x.clock.advance(10_000);
  await turn();
  t.is(x.fired(), 1, 'once');
});

test('re-arming pushes the deadline back (one firing, at the later deadline)', async (t) => {
  const x = timer();
  x.t.arm(1000);
  x.clock.advanceTo(T0 + 600);
  x.t.arm(1000);
  x.clock.advanceTo(T0 + 1000);
  await turn();
  t.is(x.fired(), 0, 'the first deadline passed without a firing');
  x.clock.advanceTo(T0 + 1599);
  await turn();
  t.is(x.fired(), 0);
  x.clock.advanceTo(T0 + 1600);
  await turn();
  t.is(x.fired(), 1);
  t.is(x.clock.sleepers, 0, 'the replaced arming left no sleeper behind');
});

test('a cancelled timer never fires; it can be armed again', async (t) => {
  const x = timer();
  x.t.arm(1000);
  x.clock.advanceTo(T0 + 500);
  x.t.cancel();
  t.false(x.t.pending);
  t.is(x.clock.sleepers, 0, 'its sleep ended');
  x.clock.advance(10_000);
  await turn();
  t.is(x.fired(), 0);
  x.t.arm(100);
  x.clock.advance(100);
  await turn();
  t.is(x.fired(), 1);
});

test('the owner stopping (its signal) cancels the timer, and later armings do nothing', async (t) => {
  const stop = new AbortController();
  const x = timer({ signal: stop.signal });
  x.t.arm(1000);
  stop.abort();
  x.t.arm(1000);
  x.clock.advance(10_000);
  await turn();
  t.is(x.fired(), 0);
  t.is(x.clock.sleepers, 0);
});

test('an error thrown by the callback reaches onError', async (t) => {
  const x = timer({ fail: true });
  x.t.arm(10);
  x.clock.advance(10);
  await turn();
  t.is(x.fired(), 1);
  t.is(x.errors.length, 1);
  t.regex(String(x.errors[0]), /boom/);
});

test('every(): fires at each period of clock time, not between, until cancelled; an error does not stop it', async (t) => {
  const x = timer({ fail: true });
  x.t.every(1000);
  for (const [at, want] of [[999, 0], [1000, 1], [1999, 1], [2000, 2], [3000, 3]] as const) {
    x.clock.advanceTo(T0 + at);
    await turn();
    t.is(x.fired(), want, `at ${at} ms`);
  }
  t.is(x.errors.length, 3, 'each error reported');
  t.true(x.t.pending);
  x.t.cancel();
  x.clock.advance(10_000);
  await turn();
  t.is(x.fired(), 3);
  t.is(x.clock.sleepers, 0);
});

test('the owner signal is listened to only while armed: timers that fire or are cancelled leave no listener on it', async (t) => {
  // As the prober does: one short-lived expiry timer per probe, all under the prober's long-lived signal.
  const owner = new AbortController();
  const clock = new ManualClock(T0);
  const listeners = (): number => getEventListeners(owner.signal, 'abort').length;
  let fired = 0;
  const expiry = (): ClockTimer => new ClockTimer({ clock, fire: () => fired++, onError: () => undefined, signal: owner.signal });
  for (let i = 0; i < 50; i++) {
    expiry().arm(10);
    clock.advance(10);
    await turn();
  }
  t.is(fired, 50);
  for (let i = 0; i < 50; i++) {
    const e = expiry();
    e.arm(10);
    e.cancel();
  }
  await turn();
  t.is(listeners(), 0, 'no listener left by 100 timers that fired or were cancelled');
  const last = expiry();
  last.arm(10);
  t.is(listeners(), 1, 'one while armed');
  owner.abort();
  await turn();
  t.false(last.pending, 'the owner stopping cancels it');
  clock.advance(10);
  await turn();
  t.is(fired, 50, 'and it never fires');
});
