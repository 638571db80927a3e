// bench/heard-again.ts: "every node heard again" after a coordinator kill, per node — a node whose
// turn came after the restart adds no delay; a node the outage caught counts until its retry is
// answered; a heartbeat in flight at the kill and lost counts from when it was sent.
import test from 'ava';
import { HeardAgainTracker } from '../bench/heard-again.ts';

test('per-node figures: caught nodes, their last answer, the delay added, and every node heard', (t) => {
  const h = new HeardAgainTracker();
  h.sent('before', 50); // before the event: ignored
  h.answered('before', 50, 60);
  h.mark(100);
  // a: its turn came after the restart: heard at once, no delay added.
  h.sent('a', 3000);
  h.answered('a', 3000, 3001);
  // b: caught by the outage at 200, retried at 1200 (failed), answered at 2500.
  h.sent('b', 200);
  h.failed('b', 200, 201);
  h.sent('b', 1200);
  h.failed('b', 1200, 1201);
  h.sent('b', 2400);
  h.answered('b', 2400, 2500);
  // c: sent at 90 (before the kill), lost in it (timed out at 600), retried, answered at 1700.
  h.failed('c', 90, 600);
  h.sent('c', 1600);
  h.answered('c', 1600, 1700);
  t.false(h.allHeard(['a', 'b', 'c', 'd']), 'd was not heard yet');
  t.true(h.allHeard(['a', 'b', 'c']));
  const s = h.summary(['a', 'b', 'c']);
  t.is(s.caught, 2);
  t.is(s.heard, 3);
  t.is(s.caughtHeardMs, 2400, 'b, the last caught node, was heard 2400 ms after the event');
  t.is(s.allHeardMs, 2901, 'a is heard last, at its own phase');
  t.is(s.addedDelayMs.max, 2300, 'b: first attempt at 200, answered at 2500');
  t.is(s.addedDelayMs.p50, 1610, 'c counts from the lost heartbeat sent at 90');
  t.true(Number.isNaN(h.summary(['a', 'z']).allHeardMs), 'an unheard node leaves "every node heard" open');
});
