// Lost probes ask for repairs at a bounded rate: the first at once, a burst of losses within the
// gap as one request at its end; nothing after shutdown.
import test from 'ava';
import { LossRepair } from '../agent/health/loss-repair.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { waitFor } from '../lib/wait.ts';

function setup(): { clock: ManualClock; reasons: string[]; repair: LossRepair; abort: AbortController } {
  const clock = new ManualClock();
  const reasons: string[] = [];
  const abort = new AbortController();
  const repair = new LossRepair({ clock, request: (r) => reasons.push(r), signal: abort.signal, minGapMs: 5000 });
  return { clock, reasons, repair, abort };
}

test('first loss at once; 1,000 losses within the gap make one more request at its end', async (t) => {
  const { clock, reasons, repair } = setup();
  repair.lost('a');
  t.deepEqual(reasons, ['probe to a lost']);
  clock.advance(100);
  for (let i = 0; i < 1000; i++) repair.lost(`p${i}`);
  t.is(reasons.length, 1, 'nothing more inside the gap');
  clock.advance(4899);
  await Promise.resolve();
  t.is(reasons.length, 1, 'still inside the gap');
  clock.advance(1);
  const seen = await waitFor(() => (reasons.length === 2 ? [...reasons] : undefined), { timeoutMs: 5000, intervalMs: 5, what: 'the deferred request' });
  t.regex(seen[1] ?? '', /^probes to 1000 peers lost \(p0, p1, p2, …\)$/);
  // A quiet gap later, a loss asks at once again.
  clock.advance(5000);
  repair.lost('b');
  t.is(reasons.at(-1), 'probe to b lost');
  t.is(repair.requests, 3);
});

test('a deferred request is dropped on shutdown', async (t) => {
  const { clock, reasons, repair, abort } = setup();
  repair.lost('a');
  repair.lost('b');
  abort.abort();
  clock.advance(10_000);
  await new Promise((r) => setImmediate(r));
  t.deepEqual(reasons, ['probe to a lost']);
  repair.lost('c');
  t.deepEqual(reasons, ['probe to a lost']);
});

test('an active gateway\'s loss waits 2 s (failover first): dropped if it answered again or was replaced, repaired if still lost', async (t) => {
  const clock = new ManualClock();
  const reasons: string[] = [];
  const losing = new Set(['gw1', 'gw2']);
  const repair = new LossRepair({ clock, request: (r) => reasons.push(r), signal: new AbortController().signal, minGapMs: 5000, gatewayDeferMs: 2000, stillLost: (n) => losing.has(n) });
  repair.lost('gw1', { gateway: true });
  repair.lost('gw1', { gateway: true });
  t.deepEqual(reasons, [], 'not at once: the failover apply must not wait for a full reconcile');
  clock.advance(1999);
  await new Promise((r) => setImmediate(r));
  t.deepEqual(reasons, []);
  clock.advance(1);
  await waitFor(() => reasons.length === 1, { timeoutMs: 5000, intervalMs: 5, what: 'the deferred gateway repair' });
  t.deepEqual(reasons, ['probe to gw1 lost'], 'still lost 2 s later (a gateway peer removed by hand): repaired, once');
  // Replaced meanwhile (no longer probed) or answering again: nothing to repair.
  clock.advance(10_000);
  repair.lost('gw2', { gateway: true });
  losing.delete('gw2');
  clock.advance(2000);
  await waitFor(() => repair.dropped === 1, { timeoutMs: 5000, intervalMs: 5, what: 'the dropped gateway loss' });
  t.is(reasons.length, 1);
  // An ordinary peer is still asked for at once.
  repair.lost('p');
  t.is(reasons.at(-1), 'probe to p lost');
});
