// The agent's periodic resync (agent/periodic-resync.ts, started by Agent) on a manual clock: it runs
// when clock time passes the interval and not before, every interval, and never again once the
// agent's abort signal aborted (shutdown) — also when it aborted before the resync started. A
// resync's firing follows its sleep in the same run of microtasks, so one macrotask turn
// (setImmediate) is enough to see that it did not run. A bare setInterval arms no clock sleep.
import test from 'ava';
import { startPeriodicResync } from '../agent/periodic-resync.ts';
import { silentLogger } from '../lib/logger.ts';
import { ManualClock } from './helpers/manual-clock.ts';

const T0 = 1_700_000_000_000;
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

function resync(signal: AbortSignal): { clock: ManualClock; runs: () => number } {
  const clock = new ManualClock(T0);
  let runs = 0;
  startPeriodicResync({ clock, intervalMs: 30_000, signal, logger: silentLogger(), resync: () => runs++ });
  return { clock, runs: () => runs };
}

test('the resync runs when clock time passes the interval, not before, then every interval; not after the agent stopped', async (t) => {
  const stop = new AbortController();
  const r = resync(stop.signal);
  t.deepEqual(r.clock.wakeups, [T0 + 30_000], 'armed on the clock for one interval');
  r.clock.advance(29_999);
  await turn();
  t.is(r.runs(), 0, 'not before the interval');
  r.clock.advance(1);
  await turn();
  t.is(r.runs(), 1, 'at the interval');
  r.clock.advance(29_999);
  await turn();
  t.is(r.runs(), 1);
  r.clock.advance(1);
  await turn();
  t.is(r.runs(), 2, 'every interval');

  stop.abort();
  t.is(r.clock.sleepers, 0, 'nothing left armed');
  r.clock.advance(120_000);
  await turn();
  t.is(r.runs(), 2, 'none after the agent stopped');
});

test('an agent stopped before its resync started never resyncs', async (t) => {
  const stop = new AbortController();
  stop.abort();
  const r = resync(stop.signal);
  r.clock.advance(120_000);
  await turn();
  t.is(r.runs(), 0);
  t.is(r.clock.sleepers, 0);
});
