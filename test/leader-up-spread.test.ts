// The leader-up spread stays inside what its own signed schema accepts, for any fleet and interval.
import test from 'ava';
import { LeaderUp, leaderUpSpreadMs } from '../protocol/leader-up.ts';

test('leaderUpSpreadMs: 0.5 ms per node (≈ 2,000 heartbeats/s), at least 250 ms, at most half an interval and never above the schema bound', (t) => {
  t.is(leaderUpSpreadMs(10, 15_000), 250);
  t.is(leaderUpSpreadMs(400, 15_000), 250);
  t.is(leaderUpSpreadMs(1_000, 15_000), 500);
  t.is(leaderUpSpreadMs(1_001, 15_000), 501);
  t.is(leaderUpSpreadMs(10_000, 15_000), 5_000);
  t.is(leaderUpSpreadMs(20_000, 15_000), 7_500);
  // 200,000 nodes with a 10 min interval: 100 s by the node count, half an interval 300 s; the schema allows 60 s.
  const huge = leaderUpSpreadMs(200_000, 600_000);
  t.is(huge, 60_000);
  t.true(LeaderUp.shape.spreadMs.safeParse(huge).success);
});
