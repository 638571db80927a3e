// The service watch (agent/services/service-watch.ts) and the enrollment watch
// (agent/policy/enrollment-watch.ts) after a NATS reconnect: the watch is re-created after the last
// applied revision (agent/control/range-resume.ts reconnected()), as after a stall and as MeshWatch
// does, at a random moment within 2 s (rewatch-jitter.ts; the random source injected) — only what changed meanwhile is read, deletes included, not the whole range again (what a
// watcher on a server that left a 3-server cluster does; test/nats-cluster.test.ts). A real
// nats-server on 127.0.0.1 holds the bucket; the reconnect is said on the connection's status stream
// (test/helpers/scripted-status.ts), the watch frozen meanwhile (the writes reach it only by the new
// watch); a manual clock.
import test from 'ava';
import { EnrollmentWatch } from '../agent/policy/enrollment-watch.ts';
import { ServiceWatch } from '../agent/services/service-watch.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import type { ClusterDefinition } from '../protocol/messages.ts';
import { serviceKeys } from '../protocol/service.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { enrolledCluster } from './helpers/policy-fixtures.ts';
import { bed, BUCKET, putSigned, service, T0 } from './helpers/range-watch-bed.ts';
import { scriptedStatus } from './helpers/scripted-status.ts';

/** The random source of the watchers below: the re-watch comes 0.5 · 2000 ms after the reconnect (not the retry minimum, 250 ms). */
const random = (): number => 0.5;
const REWATCH = T0 + 1000;
const RECONNECT = { type: 'reconnect', server: 'nats://127.0.0.1:4223' } as const;

test('service watch: after a reconnect the watch resumes after its last applied revision; the put and delete written meanwhile are read, not the whole set', async (t) => {
  const b = await bed(t, 'svcrecon');
  const status = scriptedStatus(b.nc);
  const key = (name: string): string => serviceKeys.export('shop', name, 'east');
  await putSigned(b.kv, key('a'), service('a'), b.coordinator);
  await putSigned(b.kv, key('b'), service('b'), b.coordinator);
  await putSigned(b.kv, key('d'), service('d'), b.coordinator);
  const lastBefore = await putSigned(b.kv, key('e'), service('e'), b.coordinator);
  const w = new ServiceWatch({ nc: status.nc, bucket: BUCKET, coordinatorKey: b.coordinator.publicKey, logger: silentLogger(), clock: b.clock, watches: b.src, random });
  w.start();
  t.teardown(() => w.stop());
  await waitFor(() => w.synced && w.current().size === 4, { timeoutMs: 10_000, what: 'the first snapshot' });
  const before = w.stats().totalEntries;

  for (const x of b.src.created) x.frozen = true;
  await putSigned(b.kv, key('c'), service('c'), b.coordinator);
  await b.kv.delete(key('a'));
  status.say(RECONNECT);
  await b.clock.advanceWhenArmed(REWATCH, 'the re-watch after its spread');
  await waitFor(() => w.current().has(key('c')) && !w.current().has(key('a')), { timeoutMs: 10_000, what: 'c added, a removed' });

  t.deepEqual([...w.current().keys()].sort(), [key('b'), key('c'), key('d'), key('e')]);
  t.is(b.src.asked[1]?.resumeFromRevision, lastBefore + 1, 'resumed after the last applied revision, not re-read');
  t.is(b.src.created[1]?.yielded, 2, 'only the two entries written meanwhile were read');
  t.is(w.stats().totalEntries - before, 2);
  t.like(w.stats(), { stalls: 0, resumes: 1 });
});

test('enrollment watch: after a reconnect the watch resumes after its last applied revision; the enrollment and removal written meanwhile are read, not the whole set', async (t) => {
  const b = await bed(t, 'enrrecon');
  const status = scriptedStatus(b.nc);
  const def = (name: string, cidr: string): ClusterDefinition => enrolledCluster(name, [cidr], 1);
  await putSigned(b.kv, kvKeys.enrollment('east'), def('east', '10.1.0.0/16'), b.coordinator);
  await putSigned(b.kv, kvKeys.enrollment('west'), def('west', '10.2.0.0/16'), b.coordinator);
  await putSigned(b.kv, kvKeys.enrollment('south'), def('south', '10.4.0.0/16'), b.coordinator);
  const lastBefore = await putSigned(b.kv, kvKeys.enrollment('central'), def('central', '10.5.0.0/16'), b.coordinator);
  const w = new EnrollmentWatch({ nc: status.nc, bucket: BUCKET, coordinatorKeys: [b.coordinator.publicKey], logger: silentLogger(), clock: b.clock, watches: b.src, random });
  w.start();
  t.teardown(() => w.stop());
  const names = (): string[] => [...w.state().definitions.keys()].sort();
  await waitFor(() => w.state().known && names().length === 4, { timeoutMs: 10_000, what: 'the first snapshot' });
  const before = w.stats().totalEntries;

  for (const x of b.src.created) x.frozen = true;
  await putSigned(b.kv, kvKeys.enrollment('north'), def('north', '10.3.0.0/16'), b.coordinator);
  await b.kv.delete(kvKeys.enrollment('east'));
  status.say(RECONNECT);
  await b.clock.advanceWhenArmed(REWATCH, 'the re-watch after its spread');
  await waitFor(() => names().includes('north') && !names().includes('east'), { timeoutMs: 10_000, what: 'north added, east removed' });

  t.deepEqual(names(), ['central', 'north', 'south', 'west']);
  t.is(b.src.asked[1]?.resumeFromRevision, lastBefore + 1, 'resumed after the last applied revision, not re-read');
  t.is(b.src.created[1]?.yielded, 2, 'only the two entries written meanwhile were read');
  t.is(w.stats().totalEntries - before, 2);
  t.like(w.stats(), { stalls: 0, resumes: 1 });
  t.true(w.state().known);
});

for (const [r, at] of [
  [0.1, 200],
  [0.9, 1800],
] as const) {
  test(`service and enrollment watches: after a reconnect the watch is re-created at the random moment within 2 s (random ${r}: t+${at} ms), not before`, async (t) => {
    const b = await bed(t, `recjit${at}`);
    const status = scriptedStatus(b.nc);
    await putSigned(b.kv, serviceKeys.export('shop', 'a', 'east'), service('a'), b.coordinator);
    await putSigned(b.kv, kvKeys.enrollment('east'), enrolledCluster('east', ['10.1.0.0/16'], 1), b.coordinator);
    const opts = { nc: status.nc, bucket: BUCKET, logger: silentLogger(), clock: b.clock, watches: b.src, random: () => r };
    const services = new ServiceWatch({ ...opts, coordinatorKey: b.coordinator.publicKey });
    const enrollments = new EnrollmentWatch({ ...opts, coordinatorKeys: [b.coordinator.publicKey] });
    services.start();
    enrollments.start();
    t.teardown(() => Promise.all([services.stop(), enrollments.stop()]));
    await waitFor(() => services.synced && enrollments.state().known && b.src.asked.length === 2, { timeoutMs: 10_000, what: 'both snapshots' });

    status.say(RECONNECT);
    // Both sessions ended and both sleep until the spread (a fixed 250 ms would arm nothing there).
    await waitFor(() => b.clock.wakeups.filter((w) => w === T0 + at).length === 2, { timeoutMs: 10_000, what: `both re-watches armed at t+${at} (armed: ${b.clock.wakeups.map((w) => w - T0).join(', ')})` });
    b.clock.advanceTo(T0 + at - 1);
    await new Promise((resolve) => setImmediate(resolve));
    t.is(b.src.asked.length, 2, 'no watch asked for before the spread');
    b.clock.advanceTo(T0 + at);
    await waitFor(() => b.src.created.length === 4, { timeoutMs: 10_000, what: 'both watches re-created at the spread' });
    t.like(services.stats(), { resumes: 1 });
    t.like(enrollments.stats(), { resumes: 1 });
  });
}
