// The service watch (agent/services/service-watch.ts) and the enrollment watch
// (agent/policy/enrollment-watch.ts) find a silently stalled watch with the agent's shared stall
// detector (agent/control/progress-monitor.ts, MeshWatch's) and resume it from the last applied
// revision. A real nats-server on 127.0.0.1 holds the bucket (the direct gets of the revision looks);
// the watch source in front of it can freeze a created watch — deliveries stop, no error, no end —
// as when the server holding the consumer leaves the NATS cluster. On a manual clock: every advance
// waits until the sleeper it is meant to wake is armed.
import test from 'ava';
import { EnrollmentWatch } from '../agent/policy/enrollment-watch.ts';
import { ServiceWatch } from '../agent/services/service-watch.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import type { ClusterDefinition } from '../protocol/messages.ts';
import { serviceKeys } from '../protocol/service.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { enrolledCluster } from './helpers/policy-fixtures.ts';
import { bed, BUCKET, putSigned, service, T0, type Bed } from './helpers/range-watch-bed.ts';

/** The detection the docs promise (docs/agent.md): a look every 15 s, a stall one 1 s follow-up later, re-created after the 250 ms retry minimum (its spread's centre, CENTRE). */
const FIRST_LOOK = T0 + 15_000;
const STALL = FIRST_LOOK + 1000;
const REWATCH = STALL + 250;
/** The retry spread's centre (rewatch-jitter.ts): the retry minimum itself, 250 ms. */
const CENTRE = (): number => 0.5;

/** Freezes every watch made so far; then (put, delete, forged) go into the bucket while nothing is delivered. */
async function stallAndWrite(b: Bed, write: () => Promise<void>): Promise<void> {
  for (const w of b.src.created) w.frozen = true;
  await write();
}

test('service watch: a frozen watch is found stalled 16 s in and resumed from its last revision; the put and delete written meanwhile are seen, nothing applied twice, the forgery still refused', async (t) => {
  const b = await bed(t, 'svcstall');
  const a = serviceKeys.export('shop', 'a', 'east');
  const bKey = serviceKeys.export('shop', 'b', 'east');
  const c = serviceKeys.export('shop', 'c', 'east');
  const forged = serviceKeys.export('shop', 'evil', 'east');
  await putSigned(b.kv, a, service('a'), b.coordinator);
  const lastBefore = await putSigned(b.kv, bKey, service('b'), b.coordinator);
  const w = new ServiceWatch({ nc: b.nc, bucket: BUCKET, coordinatorKey: b.coordinator.publicKey, logger: silentLogger(), clock: b.clock, watches: b.src, random: CENTRE });
  let changes = 0;
  w.onChange(() => changes++);
  w.start();
  t.teardown(() => w.stop());
  await waitFor(() => w.synced && w.current().has(a) && w.current().has(bKey), { timeoutMs: 10_000, what: 'the first snapshot' });

  await stallAndWrite(b, async () => {
    await putSigned(b.kv, c, service('c'), b.coordinator);
    await b.kv.delete(a);
    await putSigned(b.kv, forged, service('evil'), b.mallory);
  });
  const changesBefore = changes;
  await b.clock.advanceWhenArmed(FIRST_LOOK, 'the first progress look');
  await waitFor(() => w.stats().lagRevisions === 3, { timeoutMs: 10_000, what: 'the look found the watch 3 revisions behind' });
  t.is(w.stats().stalls, 0, 'behind once is not a stall (may be in flight)');
  t.false(w.current().has(c));
  await b.clock.advanceWhenArmed(STALL, 'the follow-up look');
  await waitFor(() => w.stats().stalls === 1, { timeoutMs: 10_000, what: 'the stall declared' });
  await b.clock.advanceWhenArmed(REWATCH, 'the re-watch after the retry minimum');
  await waitFor(() => w.current().has(c) && !w.current().has(a) && w.rejected === 1, { timeoutMs: 10_000, what: 'c added, a removed, the forgery refused' });

  t.deepEqual([...w.current().keys()].sort(), [bKey, c], 'the put and the delete written while frozen are seen; the forgery is not taken');
  t.is(b.src.asked[1]?.resumeFromRevision, lastBefore + 1, 'resumed after the last applied revision, not re-read');
  t.is(b.src.created[1]?.yielded, 3, 'only the three entries written meanwhile were read');
  t.is(changes - changesBefore, 3, 'each applied once');
  t.like(w.stats(), { stalls: 1, resumes: 1 });

  // The resumed watch is live: a later change arrives without a clock advance; a replayed older generation is refused.
  await putSigned(b.kv, bKey, service('b', 'east', 2), b.coordinator);
  await waitFor(() => w.current().get(bKey)?.generation === 2, { timeoutMs: 10_000, what: 'b generation 2 through the resumed watch' });
  await putSigned(b.kv, bKey, service('b', 'east', 1), b.coordinator);
  await waitFor(() => w.rejected === 2, { timeoutMs: 10_000, what: 'the replay refused' });
  t.is(w.current().get(bKey)?.generation, 2);
});

test('enrollment watch: a frozen watch is found stalled 16 s in and resumed from its last revision; the enrollment and removal written meanwhile are seen, nothing applied twice, the forgery still refused', async (t) => {
  const b = await bed(t, 'enrstall');
  const def = (name: string, cidr: string, updatedAt = 1): ClusterDefinition => enrolledCluster(name, [cidr], updatedAt);
  await putSigned(b.kv, kvKeys.enrollment('east'), def('east', '10.1.0.0/16'), b.coordinator);
  const lastBefore = await putSigned(b.kv, kvKeys.enrollment('west'), def('west', '10.2.0.0/16'), b.coordinator);
  const w = new EnrollmentWatch({ nc: b.nc, bucket: BUCKET, coordinatorKeys: [b.coordinator.publicKey], logger: silentLogger(), clock: b.clock, watches: b.src, random: CENTRE });
  let changes = 0;
  w.onChange(() => changes++);
  w.start();
  t.teardown(() => w.stop());
  const names = (): string[] => [...w.state().definitions.keys()].sort();
  await waitFor(() => w.state().known && names().length === 2, { timeoutMs: 10_000, what: 'the first snapshot' });

  await stallAndWrite(b, async () => {
    await putSigned(b.kv, kvKeys.enrollment('north'), def('north', '10.3.0.0/16'), b.coordinator);
    await b.kv.delete(kvKeys.enrollment('east'));
    await putSigned(b.kv, kvKeys.enrollment('evil'), def('evil', '10.0.0.0/8'), b.mallory);
  });
  const changesBefore = changes;
  await b.clock.advanceWhenArmed(FIRST_LOOK, 'the first progress look');
  await waitFor(() => w.stats().lagRevisions === 3, { timeoutMs: 10_000, what: 'the look found the watch 3 revisions behind' });
  t.is(w.stats().stalls, 0, 'behind once is not a stall (may be in flight)');
  t.deepEqual(names(), ['east', 'west']);
  await b.clock.advanceWhenArmed(STALL, 'the follow-up look');
  await waitFor(() => w.stats().stalls === 1, { timeoutMs: 10_000, what: 'the stall declared' });
  await b.clock.advanceWhenArmed(REWATCH, 'the re-watch after the retry minimum');
  await waitFor(() => w.state().rejected.has(kvKeys.enrollment('evil')) && names().includes('north') && !names().includes('east'), { timeoutMs: 10_000, what: 'north added, east removed, the forgery refused' });

  t.deepEqual(names(), ['north', 'west'], 'the enrollment and the removal written while frozen are seen; the forgery is not taken');
  t.is(b.src.asked[1]?.resumeFromRevision, lastBefore + 1, 'resumed after the last applied revision, not re-read');
  t.is(b.src.created[1]?.yielded, 3, 'only the three entries written meanwhile were read');
  t.is(changes - changesBefore, 3, 'each applied once');
  t.like(w.stats(), { stalls: 1, resumes: 1 });
  t.true(w.state().known);

  // The resumed watch is live: a later removal arrives without a clock advance.
  await b.kv.delete(kvKeys.enrollment('west'));
  await waitFor(() => !names().includes('west'), { timeoutMs: 10_000, what: 'west removed through the resumed watch' });
  t.deepEqual(names(), ['north']);
});
