// When a follower takes a dead leader's lease (coordinator/lease.ts), on a manual clock and an
// in-memory bucket: exactly when the revision it watched has gone a full TTL unrenewed — not a poll
// later — and never before the leader's own validity ends, even when a renewal reaches the bucket
// while the follower's read is on its way (the TTL counts from when the read returned).
import test, { type ExecutionContext } from 'ava';
import type { KV, KvEntry } from '@nats-io/kv';
import { FOLLOWER_POLL_MS, LeaderLease, type LeaseValue } from '../coordinator/lease.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { GatedKv } from './helpers/gated-kv.ts';
import { ManualClock } from './helpers/manual-clock.ts';

/** Not a multiple of the poll period: a follower that only woke on polls would take late. */
const TTL = 3100;
const events = { onAcquired: (): void => undefined, onLost: (): void => undefined };
const leaseOf = (renewedAt: number): string => JSON.stringify({ holder: 'pod-a', renewedAt, ttlMs: TTL } satisfies LeaseValue);

/** The bucket as the follower sees it; `duringNextRead` runs inside its next read (the read is in flight). */
class ReadHookKv {
  duringNextRead: (() => Promise<void>) | undefined;
  constructor(private readonly inner: GatedKv) {}
  get kv(): KV {
    return this as unknown as KV;
  }
  async get(key: string): Promise<KvEntry | null> {
    const hook = this.duringNextRead;
    this.duringNextRead = undefined;
    await hook?.();
    return this.inner.get(key);
  }
  create(key: string, value: string): Promise<number> {
    return this.inner.create(key, value);
  }
  update(key: string, value: string, revision: number): Promise<number> {
    return this.inner.update(key, value, revision);
  }
  delete(key: string, opts?: { previousSeq?: number }): Promise<void> {
    return this.inner.delete(key, opts);
  }
}

/** Runs the follower one wake-up at a time until it leads; returns the clock reading when it first did, and every wake-up it slept to. */
async function stepUntilLeading(clock: ManualClock, lease: LeaderLease, limitMs: number): Promise<{ tookAt: number; wakeups: number[] }> {
  const wakeups: number[] = [];
  const end = clock.now() + limitMs;
  while (!lease.holds()) {
    await waitFor(() => clock.sleepers > 0, { timeoutMs: 10_000, intervalMs: 1, what: 'the follower sleeping until its next look' });
    if (lease.holds()) break;
    const next = clock.wakeups[0] ?? Infinity;
    if (next > end) throw new Error(`no takeover within ${limitMs} ms`);
    wakeups.push(next);
    clock.advanceTo(next);
    await waitFor(() => clock.sleepers > 0, { timeoutMs: 10_000, intervalMs: 1, what: 'the follower finished its round' });
  }
  return { tookAt: clock.now(), wakeups };
}

/** pod-b following the lease in `kv` on `clock`, stopped at teardown; resolved once its first read is done. */
async function startFollower(t: ExecutionContext, kv: KV, clock: ManualClock): Promise<LeaderLease> {
  const follower = new LeaderLease(kv, { holder: 'pod-b', ttlMs: TTL, clock, logger: silentLogger() });
  const stop = new AbortController();
  const run = follower.run(events, stop.signal);
  t.teardown(async () => {
    stop.abort();
    await run;
  });
  await follower.firstRound;
  return follower;
}

test('a follower takes a dead leader\'s lease exactly a TTL after it saw the last renewal, not at its next poll', async (t) => {
  const clock = new ManualClock();
  const bucket = new GatedKv();
  const renewedAt = clock.now();
  await bucket.create(kvKeys.lease, leaseOf(renewedAt));
  const follower = await startFollower(t, bucket.kv, clock);
  t.false(follower.holds(), 'the lease was just renewed');
  const { tookAt, wakeups } = await stepUntilLeading(clock, follower, 10_000);
  t.is(tookAt, renewedAt + TTL, 'took at the first moment the lease could have expired');
  t.true(wakeups.slice(0, -1).every((w) => w < renewedAt + TTL), 'and not a moment before it');
  t.true(wakeups.slice(0, -2).every((w, i) => (wakeups[i + 1] ?? 0) - w <= FOLLOWER_POLL_MS), 'polling every FOLLOWER_POLL_MS meanwhile');
});

test('a renewal that reaches the bucket while the follower\'s read is in flight: the follower counts the TTL from when its read returned, so it never leads while the leader may still write', async (t) => {
  const clock = new ManualClock();
  const bucket = new GatedKv();
  await bucket.create(kvKeys.lease, leaseOf(clock.now()));
  const view = new ReadHookKv(bucket);
  const follower = await startFollower(t, view.kv, clock);
  // The follower's next read leaves at `sent`; 200 ms later the leader sends a renewal, which the
  // bucket applies before answering the read; the answer arrives 200 ms after that.
  const sent = clock.wakeups[0] ?? NaN;
  let leaderValidUntil = NaN;
  view.duringNextRead = async () => {
    clock.advance(200);
    const renewalSentAt = clock.now();
    const current = await bucket.get(kvKeys.lease);
    await bucket.update(kvKeys.lease, leaseOf(renewalSentAt), current?.revision ?? -1);
    leaderValidUntil = renewalSentAt + TTL; // the leader's own bound (LeaderLease.renew: from when it sent)
    clock.advance(200);
  };
  const { tookAt } = await stepUntilLeading(clock, follower, 10_000);
  t.true(tookAt >= leaderValidUntil, `took at ${tookAt - sent} ms after its read left; the leader could write until ${leaderValidUntil - sent}`);
  t.is(tookAt, sent + 400 + TTL, 'a TTL after its read returned with the renewal');
});
