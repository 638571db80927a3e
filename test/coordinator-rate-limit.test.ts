import test from 'ava';
import { RegistrationRateLimit } from '../coordinator/rate-limit.ts';

test('take: one token at a time, refilled over time, refused with the time until the next token', (t) => {
  const l = new RegistrationRateLimit(10, 2);
  t.true(l.take('a', 0).ok);
  t.true(l.take('a', 0).ok);
  t.deepEqual(l.take('a', 0), { ok: false, retryAfterMs: 100 });
  t.true(l.take('a', 100).ok, 'one token back after 100 ms at 10/s');
  t.true(l.take('b', 0).ok, 'keys have buckets of their own');
});

test('takeUpTo takes what there is (whole tokens, at most max); giveBack returns unused tokens, never above the burst', (t) => {
  const l = new RegistrationRateLimit(1, 5);
  t.like(l.takeUpTo('e', 0, 3), { ok: true, taken: 3 });
  t.like(l.takeUpTo('e', 0, 3), { ok: true, taken: 2 }, 'only 2 left');
  t.like(l.takeUpTo('e', 0, 3), { ok: false, taken: 0, retryAfterMs: 1000 });
  l.giveBack('e', 2);
  t.like(l.takeUpTo('e', 0, 10), { ok: true, taken: 2 }, 'the 2 given back');
  l.giveBack('e', 100);
  t.like(l.takeUpTo('e', 0, 10), { ok: true, taken: 5 }, 'giving back never fills past the burst');
  t.like(l.takeUpTo('e', 2500, 10), { ok: true, taken: 2 }, '2.5 tokens refilled: 2 whole ones taken');
  t.like(l.takeUpTo('e', 3000, 10), { ok: true, taken: 1 }, 'the half token kept counts');
});

test('with max, at most that many keys are kept: the one used longest ago goes (and comes back full), a key in use stays', (t) => {
  const l = new RegistrationRateLimit(0.001, 1, 2);
  t.true(l.take('a', 0).ok);
  t.true(l.take('b', 1).ok);
  t.false(l.take('a', 2).ok, 'a is empty, and now the one used last');
  t.true(l.take('c', 3).ok, 'c pushes b out (used longest ago), not a');
  t.false(l.take('a', 4).ok, 'a was kept: still empty');
  t.true(l.take('b', 5).ok, 'b was dropped: it comes back full (kept, it would be empty)');
});
