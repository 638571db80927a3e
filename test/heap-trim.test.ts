// lib/heap-trim.ts: a full GC only once the heap has grown the slack past its live size, on the
// injected clock; off without node's --expose-gc; the shipped agent has the GC (bin/run-compiled).
import test from 'ava';
import { HeapTrim, heapTrimFromGlobal } from '../lib/heap-trim.ts';
import { silentLogger } from '../lib/logger.ts';
import { ValidationError } from '../lib/errors.ts';
import { ManualClock } from './helpers/manual-clock.ts';

const MiB = 1024 * 1024;

/** A heap whose "GC" drops the used size to `live`, counting the collections. */
function fakeHeap(live: number): { used: number; live: number; gcs: number; gc: () => void } {
  const h = {
    used: live,
    live,
    gcs: 0,
    gc: (): void => {
      h.gcs++;
      h.used = h.live;
    },
  };
  return h;
}

test('collects once at the first look, then only when the heap has grown the slack past what the last collection left', (t) => {
  const heap = fakeHeap(14 * MiB);
  const trim = new HeapTrim({ clock: new ManualClock(), logger: silentLogger(), gc: heap.gc, usedHeapBytes: () => heap.used, slackBytes: 2 * MiB, slackFraction: 0 });
  t.true(trim.check(), 'the first look collects: it learns the live size');
  heap.used = 15.9 * MiB;
  t.false(trim.check(), '1.9 MiB of growth is within the slack');
  t.is(heap.gcs, 1);
  heap.used = 16 * MiB;
  t.true(trim.check(), '2 MiB of growth collects');
  t.is(heap.gcs, 2);
  t.is(heap.used, 14 * MiB);
  t.deepEqual(trim.counters, { checks: 3, collections: 2 });
});

test('a bigger live heap gets a proportional slack: 15 % of it when that is more than the minimum', (t) => {
  const heap = fakeHeap(20 * MiB);
  const trim = new HeapTrim({ clock: new ManualClock(), logger: silentLogger(), gc: heap.gc, usedHeapBytes: () => heap.used, slackBytes: 2 * MiB, slackFraction: 0.15 });
  trim.check();
  heap.used = 22.9 * MiB;
  t.false(trim.check(), '2.9 MiB is past the 2 MiB minimum but within 15 % of 20 MiB');
  heap.used = 23 * MiB;
  t.true(trim.check(), '3 MiB (15 %) collects');
  t.is(heap.gcs, 2);
});

test("V8's own collection lowers the mark: growth is measured from the lowest heap seen", (t) => {
  const heap = fakeHeap(14 * MiB);
  const trim = new HeapTrim({ clock: new ManualClock(), logger: silentLogger(), gc: heap.gc, usedHeapBytes: () => heap.used, slackBytes: 2 * MiB });
  trim.check();
  heap.used = 12 * MiB; // V8 collected on its own and the live set shrank (peers left)
  t.false(trim.check());
  heap.used = 13.5 * MiB;
  t.false(trim.check(), '1.5 MiB past the new low');
  heap.used = 14.1 * MiB;
  heap.live = 12 * MiB;
  t.true(trim.check(), '2.1 MiB past the new low collects, although below the first live size + slack');
});

test('runs on the injected clock: one look per interval, none after stop', async (t) => {
  const clock = new ManualClock();
  const heap = fakeHeap(10 * MiB);
  let looks = 0;
  const trim = new HeapTrim({
    clock,
    logger: silentLogger(),
    gc: heap.gc,
    usedHeapBytes: () => {
      looks++;
      return heap.used;
    },
    intervalMs: 5_000,
  });
  trim.start();
  const waitArmed = async (at: number): Promise<void> => {
    for (let i = 0; i < 1_000 && !clock.hasSleeperAt(at); i++) await new Promise((r) => setImmediate(r));
    t.true(clock.hasSleeperAt(at), `a look is scheduled at +${at - t0}`);
  };
  const t0 = clock.now();
  await waitArmed(t0 + 5_000);
  t.is(heap.gcs, 0, 'nothing before the first interval');
  clock.advance(5_000);
  await waitArmed(t0 + 10_000);
  t.is(heap.gcs, 1);
  heap.used = 13 * MiB;
  clock.advance(5_000);
  await waitArmed(t0 + 15_000);
  t.is(heap.gcs, 2, '3 MiB of growth: collected at the second look');
  await trim.stop();
  const after = looks;
  clock.advance(60_000);
  t.is(looks, after, 'no look after stop');
  t.is(clock.sleepers, 0);
});

test('a GC that throws stops the trim instead of failing every interval', async (t) => {
  const clock = new ManualClock();
  const warnings: string[] = [];
  const logger = { ...silentLogger(), warn: (_o: unknown, msg: string) => warnings.push(msg) } as unknown as ReturnType<typeof silentLogger>;
  const trim = new HeapTrim({
    clock,
    logger,
    gc: () => {
      throw new Error('no gc');
    },
    usedHeapBytes: () => 1,
  });
  trim.start();
  for (let i = 0; i < 1_000 && clock.sleepers === 0; i++) await new Promise((r) => setImmediate(r));
  clock.advance(5_000);
  for (let i = 0; i < 1_000 && warnings.length === 0; i++) await new Promise((r) => setImmediate(r));
  t.deepEqual(warnings, ['heap trim stopped']);
  t.is(clock.sleepers, 0, 'no further look scheduled');
  await trim.stop();
});

test('settings are validated with the field, the value and what is allowed', (t) => {
  const base = { clock: new ManualClock(), logger: silentLogger(), gc: () => undefined };
  const e1 = t.throws(() => new HeapTrim({ ...base, intervalMs: 0 }), { instanceOf: ValidationError });
  t.regex(e1.message, /heap trim intervalMs: .*0.*milliseconds > 0/);
  const e2 = t.throws(() => new HeapTrim({ ...base, slackBytes: -1 }), { instanceOf: ValidationError });
  t.regex(e2.message, /heap trim slackBytes: .*-1.*bytes > 0/);
  const e3 = t.throws(() => new HeapTrim({ ...base, slackFraction: -0.1 }), { instanceOf: ValidationError });
  t.regex(e3.message, /heap trim slackFraction: .*-0\.1.*>= 0/);
});

test('without --expose-gc there is no trim; with it, the trim collects through the global gc', (t) => {
  const saved = globalThis.gc;
  try {
    globalThis.gc = undefined;
    t.is(heapTrimFromGlobal({ clock: new ManualClock(), logger: silentLogger() }), undefined);
    let calls = 0;
    globalThis.gc = (() => {
      calls++;
    }) as NodeJS.GCFunction;
    const trim = heapTrimFromGlobal({ clock: new ManualClock(), logger: silentLogger(), usedHeapBytes: () => 5 * MiB });
    t.truthy(trim);
    t.true(trim?.check());
    t.is(calls, 1);
  } finally {
    globalThis.gc = saved;
  }
});
