// SlotClaims (coordinator/slot-claims.ts), the part a per-cluster limit hangs on under concurrency:
// claims of others count against the limit until released, a claimant whose write already landed
// (now a live member) counts once, scopes are apart, and a release is idempotent.
import test from 'ava';
import { SlotClaims } from '../coordinator/slot-claims.ts';

test('claims in flight count against the limit until released; scopes are apart', (t) => {
  const slots = new SlotClaims();
  const a = slots.claim('c1', 'a', 2, 0, () => false);
  const b = slots.claim('c1', 'b', 2, 0, () => false);
  t.true(a.ok && b.ok);
  t.deepEqual(slots.claim('c1', 'c', 2, 0, () => false), { ok: false, limit: 2, live: 0, inFlight: 2 });
  t.true(slots.claim('c2', 'c', 2, 0, () => false).ok, 'another cluster is untouched');
  if (a.ok) {
    a.release();
    a.release();
  }
  t.is(slots.pending('c1'), 1, 'a second release changes nothing');
  t.true(slots.claim('c1', 'c', 2, 0, () => false).ok, "a released claim frees its slot");
});

test('a claimant already among the live members counts once; live members and claims together fill the limit', (t) => {
  const slots = new SlotClaims();
  const live = new Set<string>();
  t.true(slots.claim('c1', 'a', 2, live.size, (m) => live.has(m)).ok);
  live.add('a'); // a's write landed; its claim is released a moment later
  t.true(slots.claim('c1', 'b', 2, live.size, (m) => live.has(m)).ok, 'a is counted as live, not also as a claim');
  t.like(slots.claim('c1', 'c', 2, live.size, (m) => live.has(m)), { ok: false, live: 1, inFlight: 1 });
  t.like(slots.claim('c1', 'd', 1, 1, () => false), { ok: false }, 'live members alone can fill it');
});
