// The KV watch's delivery rule (agent/control/change-coalescer.ts): an isolated change goes out at
// once (a join is not held by a fixed debounce), changes after a delivery wait for the window's end
// and go out together, a steady stream cannot postpone delivery, urgent changes never wait.
import test from 'ava';
import { ChangeCoalescer } from '../agent/control/change-coalescer.ts';
import { ManualClock } from './helpers/manual-clock.ts';

function setup(windowMs = 150): { clock: ManualClock; deliveries: number[]; c: ChangeCoalescer; runDeferred: () => void; deferred: () => number } {
  const clock = new ManualClock(1_000);
  const deliveries: number[] = [];
  const queue: (() => void)[] = [];
  const c = new ChangeCoalescer({ windowMs, clock, deliver: () => deliveries.push(clock.now()), defer: (fn) => queue.push(fn) });
  return {
    clock,
    deliveries,
    c,
    runDeferred: () => {
      for (const fn of queue.splice(0)) fn();
    },
    deferred: () => queue.length,
  };
}

/** Lets the promise a ManualClock sleep resolved run its continuation. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

test('an isolated change is delivered at once (after the current burst), with what arrived in the same burst', (t) => {
  const f = setup();
  f.c.changed();
  f.c.changed();
  f.c.changed();
  t.deepEqual(f.deliveries, [], 'not synchronously: records of the same burst ride along');
  t.is(f.deferred(), 1, 'one delivery scheduled for the burst');
  f.runDeferred();
  t.deepEqual(f.deliveries, [1_000], 'delivered without any time passing (no fixed debounce)');
});

test('changes within the window after a delivery are held and go out together at its end; a steady stream cannot postpone it', async (t) => {
  const f = setup(150);
  f.c.changed();
  f.runDeferred();
  t.deepEqual(f.deliveries, [1_000]);
  // A change every 50 ms for 400 ms: the old trailing debounce (restarted by each change) delivered nothing until it stopped.
  for (let i = 0; i < 8; i++) {
    f.clock.advance(50);
    await settle();
    f.c.changed();
    f.runDeferred();
    await settle();
  }
  t.is(f.deferred(), 0, 'held changes are never delivered on the next macrotask');
  t.deepEqual(f.deliveries, [1_000, 1_150, 1_300], 'one delivery per window, each at the window\'s end');
  t.deepEqual(f.clock.wakeups, [1_450], 'the last held change waits for its window\'s end');
  f.clock.advanceTo(1_450);
  await settle();
  t.deepEqual(f.deliveries, [1_000, 1_150, 1_300, 1_450], 'the last held change goes out at its window\'s end');
  f.clock.advance(1_000);
  await settle();
  t.is(f.deliveries.length, 4, 'nothing more without a change');
});

test('an urgent change goes out at once with whatever was held, and the held delivery is not repeated', async (t) => {
  const f = setup(150);
  f.c.changed(true);
  t.deepEqual(f.deliveries, [1_000]);
  f.clock.advance(10);
  f.c.changed();
  t.is(f.clock.sleepers, 1, 'held until the window ends');
  f.clock.advance(10);
  f.c.changed(true);
  t.deepEqual(f.deliveries, [1_000, 1_020], 'urgent: at once');
  f.clock.advance(1_000);
  await settle();
  t.deepEqual(f.deliveries, [1_000, 1_020], 'the held delivery was carried by the urgent one');
});

test('stop drops what is scheduled; a zero window delivers every change a macrotask later; a bad window is refused', async (t) => {
  const f = setup(150);
  f.c.changed(true);
  f.c.changed();
  f.c.stop();
  f.clock.advance(1_000);
  await settle();
  f.c.changed(true);
  t.deepEqual(f.deliveries, [1_000]);

  const z = setup(0);
  z.c.changed();
  z.runDeferred();
  z.c.changed();
  z.runDeferred();
  t.deepEqual(z.deliveries, [1_000, 1_000]);

  const clock = new ManualClock();
  t.throws(() => new ChangeCoalescer({ windowMs: -1, clock, deliver: () => undefined }), { message: /windowMs: -1 is not allowed/ });
});
