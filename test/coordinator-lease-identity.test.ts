// A restarted coordinator with the same holder id (POD_NAME, stable across container restarts)
// takes its own lease back at once; a replica with another id must watch it go unrenewed for a full
// TTL. Real nats-server and KV; a manual clock, so "at once" means "without the clock moving".
import test from 'ava';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { defaultHolderId } from '../coordinator/coordinator.ts';
import { LeaderLease } from '../coordinator/lease.ts';
import { type Clock } from '../lib/clock.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { scratchNames, useNatsServer } from './helpers/nats-fixture.ts';

const server = useNatsServer('xl-lease');
const TTL = 10_000;

/** A ManualClock that counts sleeps, so a test knows a lease round has finished. */
class CountingClock implements Clock {
  sleeps = 0;
  constructor(private readonly inner: ManualClock) {}
  now(): number {
    return this.inner.now();
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps++;
    return this.inner.sleep(ms, signal);
  }
}

const events = { onAcquired: (): void => undefined, onLost: (): void => undefined };

test('defaultHolderId is POD_NAME when set (the manifests set it from metadata.name)', (t) => {
  const before = process.env['POD_NAME'];
  t.teardown(() => {
    if (before === undefined) delete process.env['POD_NAME'];
    else process.env['POD_NAME'] = before;
  });
  process.env['POD_NAME'] = 'crosslink-coordinator-7d9f-abcde';
  t.is(defaultHolderId(), 'crosslink-coordinator-7d9f-abcde');
  delete process.env['POD_NAME'];
  t.not(defaultHolderId(), defaultHolderId(), 'without POD_NAME every process is a new holder');
});

test('a crashed holder restarted with the same id reclaims its lease without waiting; another id waits a full TTL', async (t) => {
  const { bucket } = scratchNames('xllease');
  const nc = await connect({ servers: server().url });
  t.teardown(() => nc.close());
  const kv = await new Kvm(nc).create(bucket, { history: 1 });
  const manual = new ManualClock();

  // The first incarnation takes the lease and "crashes": its loop stops, nothing is released.
  const crashed = new AbortController();
  const first = new LeaderLease(kv, { holder: 'pod-a', ttlMs: TTL, clock: manual, logger: silentLogger() });
  const firstRun = first.run(events, crashed.signal);
  await waitFor(() => first.holds(), { timeoutMs: 10_000, what: 'the first incarnation leads' });
  crashed.abort();
  await firstRun;

  // Another replica (a new id) sees a live lease: not leader after its first rounds.
  const otherClock = new CountingClock(manual);
  const other = new LeaderLease(kv, { holder: 'pod-b', ttlMs: TTL, clock: otherClock, logger: silentLogger() });
  const otherStop = new AbortController();
  const otherRun = other.run(events, otherStop.signal);
  await waitFor(() => otherClock.sleeps >= 1, { timeoutMs: 10_000, what: 'the other replica finished a round' });
  t.false(other.holds(), 'a different holder may not take an unexpired lease');
  otherStop.abort();
  await otherRun;

  // The same id again (container restart, same pod name): leader at once, the clock has not moved.
  const start = manual.now();
  const againClock = new CountingClock(manual);
  const again = new LeaderLease(kv, { holder: 'pod-a', ttlMs: TTL, clock: againClock, logger: silentLogger() });
  const againStop = new AbortController();
  const againRun = again.run(events, againStop.signal);
  await waitFor(() => againClock.sleeps >= 1, { timeoutMs: 10_000, what: 'the restarted holder finished a round' });
  t.true(again.holds(), 'the restarted holder leads after its first round');
  t.is(manual.now(), start, 'without any time passing');
  againStop.abort();
  await againRun;
});

test('lapsed(): a leader whose last renewal is a TTL old (renewal late) may not write but still claims the lease; termRevision is the revision it took', async (t) => {
  const { bucket } = scratchNames('xllapse');
  const nc = await connect({ servers: server().url });
  t.teardown(() => nc.close());
  const kv = await new Kvm(nc).create(bucket, { history: 1 });
  const manual = new ManualClock();
  const lease = new LeaderLease(kv, { holder: 'pod-a', ttlMs: TTL, clock: manual, logger: silentLogger() });
  const stop = new AbortController();
  const run = lease.run(events, stop.signal);
  await waitFor(() => lease.holds(), { timeoutMs: 10_000, what: 'leads' });
  t.false(lease.lapsed());
  const taken = await kv.get('coordinator.lease');
  t.is(lease.termRevision, taken?.revision ?? -1, 'the epoch\'s first part: the revision the term began with');
  // The loop stops without losing the lease (a renewal that never comes back); time passes a TTL.
  stop.abort();
  await run;
  manual.advance(TTL);
  t.false(lease.holds(), 'no writes');
  t.true(lease.lapsed(), 'but not a follower: the coordinator answers heartbeats "unavailable", not silence');
});
