// Never two leaders (coordinator/lease.ts), with a leader and a follower on one manual clock and one
// in-memory bucket, whatever happens to the leader's renewals: a leader that cannot renew in time
// stops holding (may not write) before the follower can take over — through a NATS blip (its
// renewals never reach the bucket), a renewal whose reply comes back late (it reached the bucket, the
// reply is stuck: CPU starvation, a slow server), and an event loop starved past the whole TTL. At
// every wake-up of either replica: not both holds(). This is what makes a short default lease safe:
// a lease that lapses costs a failover, never a second writer.
import test, { type ExecutionContext } from 'ava';
import type { KV, KvEntry } from '@nats-io/kv';
import { FOLLOWER_POLL_MS, LAPSE_GRACE_MS, LeaderLease } from '../coordinator/lease.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { GatedKv } from './helpers/gated-kv.ts';
import { ManualClock } from './helpers/manual-clock.ts';

const TTL = 3000;

/**
 * The leader's own view of the bucket. 'cut': its writes never reach the bucket (a NATS blip) and
 * wait until `heal` fails them; 'late-reply': its writes reach the bucket at once but their replies
 * wait until `heal` delivers them.
 */
class LeaderLink {
  mode: 'ok' | 'cut' | 'late-reply' = 'ok';
  private readonly waiting: { settle: (err?: Error) => void }[] = [];
  constructor(private readonly inner: GatedKv) {}
  get kv(): KV {
    return this as unknown as KV;
  }
  get inFlight(): number {
    return this.waiting.length;
  }
  get(key: string): Promise<KvEntry | null> {
    return this.inner.get(key);
  }
  create(key: string, value: string): Promise<number> {
    return this.inner.create(key, value);
  }
  update(key: string, value: string, revision: number): Promise<number> {
    if (this.mode === 'ok') return this.inner.update(key, value, revision);
    if (this.mode === 'cut') {
      return new Promise((_, reject) => this.waiting.push({ settle: (err) => reject(err ?? new Error('TIMEOUT')) }));
    }
    const applied = this.inner.update(key, value, revision);
    return new Promise((resolve, reject) =>
      this.waiting.push({
        settle: (err) => {
          if (err) reject(err);
          else applied.then(resolve, reject);
        },
      }),
    );
  }
  delete(key: string, opts?: { previousSeq?: number }): Promise<void> {
    return this.inner.delete(key, opts);
  }
  heal(err?: Error): void {
    this.mode = 'ok';
    for (const w of this.waiting.splice(0)) w.settle(err);
  }
}

interface Pair {
  readonly clock: ManualClock;
  readonly link: LeaderLink;
  readonly leader: LeaderLease;
  readonly follower: LeaderLease;
  readonly lost: string[];
}

/** pod-a leading on `link`, pod-b following on the bucket itself; both stopped at teardown. */
async function leaderAndFollower(t: ExecutionContext, o: { readonly leaderAnswers?: boolean } = {}): Promise<Pair> {
  const clock = new ManualClock();
  const bucket = new GatedKv();
  const link = new LeaderLink(bucket);
  const lost: string[] = [];
  const stop = new AbortController();
  const leader = new LeaderLease(link.kv, { holder: 'pod-a', ttlMs: TTL, clock, logger: silentLogger() });
  // leaderAnswers: pod-a is alive and answers the presence probe (only its bucket writes are stuck).
  const holderAnswers = o.leaderAnswers === true ? (holder: string): boolean => holder === 'pod-a' : undefined;
  const follower = new LeaderLease(bucket.kv, { holder: 'pod-b', ttlMs: TTL, clock, logger: silentLogger(), ...(holderAnswers ? { holderAnswers } : {}) });
  const runs = [
    leader.run({ onAcquired: () => undefined, onLost: (why) => lost.push(why) }, stop.signal),
    follower.run({ onAcquired: () => undefined, onLost: () => undefined }, stop.signal),
  ];
  t.teardown(async () => {
    stop.abort();
    link.heal(new Error('test over'));
    await Promise.all(runs);
  });
  await leader.firstRound;
  await follower.firstRound;
  t.true(leader.holds() && !follower.holds(), 'pod-a leads, pod-b follows');
  return { clock, link, leader, follower, lost };
}

/** Advances the clock one wake-up at a time until `done` (or `limitMs` passes), asserting after each that not both hold. */
async function stepUntil(t: ExecutionContext, p: Pair, done: () => boolean, limitMs: number): Promise<void> {
  const end = p.clock.now() + limitMs;
  while (!done()) {
    await settled(p);
    const next = p.clock.wakeups[0] ?? Infinity;
    if (next > end) return;
    p.clock.advanceTo(next);
    await settled(p);
    t.false(p.leader.holds() && p.follower.holds(), 'two leaders');
  }
}

/** Both loops are between rounds: each sleeps, or (the leader) waits on a write held by its link. */
const settled = (p: Pair): Promise<boolean> => waitFor(() => p.clock.sleepers + (p.link.inFlight > 0 ? 1 : 0) === 2, { timeoutMs: 10_000, intervalMs: 1, what: 'both replicas between rounds' });

/**
 * Advances the clock one wake-up at a time until the follower leads (or `limitMs` passes); after
 * every wake-up asserts that not both hold the lease. Returns when the leader last held it and when
 * the follower took it (clock readings).
 */
async function runUntilHandover(t: ExecutionContext, p: Pair, limitMs: number): Promise<{ leaderStoppedBy: number; followerTookAt: number }> {
  const end = p.clock.now() + limitMs;
  let leaderStoppedBy = p.leader.holds() ? NaN : p.clock.now();
  while (!p.follower.holds()) {
    await settled(p);
    const next = p.clock.wakeups[0] ?? Infinity;
    if (next > end) break;
    p.clock.advanceTo(next);
    await settled(p);
    const both = p.leader.holds() && p.follower.holds();
    t.false(both, `two leaders at ${next - end + limitMs} ms`);
    if (both) break;
    if (!p.leader.holds() && Number.isNaN(leaderStoppedBy)) leaderStoppedBy = p.clock.now();
  }
  return { leaderStoppedBy, followerTookAt: p.follower.holds() ? p.clock.now() : NaN };
}

test('a NATS blip longer than the lease: the leader stops holding before the follower takes over, and steps down when its renewal fails', async (t) => {
  const p = await leaderAndFollower(t);
  const cutAt = p.clock.now();
  p.link.mode = 'cut';
  const { leaderStoppedBy, followerTookAt } = await runUntilHandover(t, p, 3 * TTL);
  t.true(Number.isFinite(followerTookAt), 'the follower took over');
  t.true(leaderStoppedBy <= followerTookAt, `the leader held until ${leaderStoppedBy - cutAt} ms, the follower took at ${followerTookAt - cutAt} ms`);
  // The follower may first have seen the lease one poll after it was written (both started together).
  t.true(followerTookAt - cutAt <= TTL + FOLLOWER_POLL_MS, `within a TTL (and a poll) of the last renewal (took at ${followerTookAt - cutAt} ms)`);
  t.true(p.leader.lapsed(), 'the leader is lapsed (answers "unavailable"), not writing');
  // The blip ends: the stuck renewal times out; the next one finds the lease taken and steps down.
  p.link.heal(new Error('TIMEOUT'));
  await stepUntil(t, p, () => p.lost.length > 0, 5000);
  t.regex(p.lost[0] ?? '', /taken over/);
  t.false(p.leader.holds());
  t.true(p.follower.holds());
});

test('a renewal that reached the bucket but whose reply comes back after the TTL: the leader never counts it; no two leaders while the follower waits out the new revision', async (t) => {
  const p = await leaderAndFollower(t);
  const cutAt = p.clock.now();
  p.link.mode = 'late-reply';
  // Renewals land (the follower sees new revisions and keeps waiting); their replies do not come back.
  const { leaderStoppedBy, followerTookAt } = await runUntilHandover(t, p, 4 * TTL);
  t.true(Number.isFinite(leaderStoppedBy), 'the leader stopped holding: it could not confirm a renewal in time');
  t.true(leaderStoppedBy - cutAt <= TTL, `within a TTL of its last confirmed renewal (${leaderStoppedBy - cutAt} ms)`);
  t.true(Number.isFinite(followerTookAt) && followerTookAt >= leaderStoppedBy, 'the follower took over only after');
  // The replies finally arrive: the leader does not start holding again on a renewal that is TTL-old.
  p.link.heal();
  await settled(p);
  t.false(p.leader.holds() && p.follower.holds(), 'no second leader once the late replies arrive');
});

test('an event loop starved past the whole TTL: on waking the leader does not hold, before its loop has run again', async (t) => {
  const p = await leaderAndFollower(t);
  await settled(p);
  // Nothing runs for 5 s (a full GC, CPU starvation); the clock jumps.
  p.clock.advance(5000);
  t.false(p.leader.holds(), 'the first check after the stall already refuses writes');
  t.true(p.leader.lapsed());
  await settled(p);
  t.false(p.leader.holds() && p.follower.holds());
});

test('a bucket that takes no writes for longer than the lease (a stream electing its leader) while the leader answers: the follower waits, the leader renews when writes pass and keeps its term', async (t) => {
  const p = await leaderAndFollower(t, { leaderAnswers: true });
  const term = p.leader.term;
  p.link.mode = 'cut';
  // 6 s without writes: twice the lease, within the grace.
  await stepUntil(t, p, () => false, 6000);
  t.false(p.leader.holds(), 'lapsed: not writing');
  t.true(p.leader.lapsed(), 'but still leading (answers "unavailable")');
  t.false(p.follower.holds(), 'the follower deferred to the holder that still answers');
  p.link.heal(new Error('TIMEOUT'));
  await stepUntil(t, p, () => p.leader.holds(), 2000);
  t.true(p.leader.holds(), 'renewed by compare-and-set as soon as writes passed');
  t.is(p.leader.term, term, 'the same term: no reload, no new epoch');
  t.deepEqual(p.lost, []);
  t.false(p.follower.holds());
});

test('a holder that answers but never renews: the follower takes over LAPSE_GRACE_MS after the expiry, and the old leader has long stopped', async (t) => {
  const p = await leaderAndFollower(t, { leaderAnswers: true });
  const cutAt = p.clock.now();
  p.link.mode = 'cut';
  const { leaderStoppedBy, followerTookAt } = await runUntilHandover(t, p, TTL + LAPSE_GRACE_MS + 2000);
  t.true(Number.isFinite(followerTookAt), 'the follower took over');
  t.true(followerTookAt - cutAt >= TTL + LAPSE_GRACE_MS, `not before the grace ended (took at ${followerTookAt - cutAt} ms)`);
  t.true(followerTookAt - cutAt <= TTL + LAPSE_GRACE_MS + 2 * FOLLOWER_POLL_MS, `and soon after (took at ${followerTookAt - cutAt} ms)`);
  t.true(leaderStoppedBy <= cutAt + TTL, 'the leader stopped writing at its own expiry');
});
