// The service watch (agent/services/service-watch.ts) and the enrollment watch
// (agent/policy/enrollment-watch.ts) follow their range by catch-up requests while no watch can be
// created (as after a NATS server loss, for 10–20 s) and hand over to a push watch once one can be
// (agent/control/range-resume.ts open(), catch-up-handover.ts, MeshWatch's CatchUpWatch). A real
// nats-server on 127.0.0.1 holds the bucket (the catch-up pages are its direct gets); the source in
// front of it refuses or holds creates. On a manual clock: every advance waits until the sleeper it
// is meant to wake is armed, and what the catch-up brings is looked for at its poll times.
import test, { type ExecutionContext } from 'ava';
import type { RangeResumeStats } from '../agent/control/range-resume.ts';
import { EnrollmentWatch } from '../agent/policy/enrollment-watch.ts';
import { ServiceWatch } from '../agent/services/service-watch.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { serviceKeys } from '../protocol/service.ts';
import type { SigningKeyPair } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { enrolledCluster } from './helpers/policy-fixtures.ts';
import { bed, BUCKET, putSigned, service, T0, type Bed } from './helpers/range-watch-bed.ts';

/** One watcher behind a common face: what it holds by name, what it refused, how often it changed. */
interface Watcher {
  readonly key: (name: string) => string;
  /** Puts a record named `name` signed by `by`; its revision. */
  readonly put: (name: string, by: SigningKeyPair) => Promise<number>;
  start(): void;
  stop(): Promise<void>;
  synced(): boolean;
  names(): string[];
  refused(name: string): boolean;
  stats(): RangeResumeStats;
  readonly changes: () => number;
}

/** Session and push-retry backoff 2 s (as mesh-watch-catch-up; random 0.5: the spread's centre, rewatch-jitter.ts), catch-up after 1 s, polls every 1 s. */
const SETTINGS = { retryMinMs: 2000, retryMaxMs: 2000, catchUpAfterMs: 1000, catchUpIntervalMs: 1000, random: (): number => 0.5 } as const;

function serviceWatcher(b: Bed): Watcher {
  const key = (name: string): string => serviceKeys.export('shop', name, 'east');
  const w = new ServiceWatch({ nc: b.nc, bucket: BUCKET, coordinatorKey: b.coordinator.publicKey, logger: silentLogger(), clock: b.clock, watches: b.src, ...SETTINGS });
  let changes = 0;
  w.onChange(() => changes++);
  return {
    key,
    put: (name, by) => putSigned(b.kv, key(name), service(name), by),
    start: () => w.start(),
    stop: () => w.stop(),
    synced: () => w.synced,
    names: () => [...w.current().values()].map((r) => r.name).sort(),
    // A refused service is counted and not held (ServiceWatch keeps no per-key reasons).
    refused: (name) => w.rejected > 0 && !w.current().has(key(name)),
    stats: () => w.stats(),
    changes: () => changes,
  };
}

function enrollmentWatcher(b: Bed): Watcher {
  const key = (name: string): string => kvKeys.enrollment(name);
  const w = new EnrollmentWatch({ nc: b.nc, bucket: BUCKET, coordinatorKeys: [b.coordinator.publicKey], logger: silentLogger(), clock: b.clock, watches: b.src, ...SETTINGS });
  let changes = 0;
  let n = 0;
  w.onChange(() => changes++);
  return {
    key,
    put: (name, by) => putSigned(b.kv, key(name), enrolledCluster(name, [`10.${++n}.0.0/16`], 1), by),
    start: () => w.start(),
    stop: () => w.stop(),
    synced: () => w.state().known,
    names: () => [...w.state().definitions.keys()].sort(),
    refused: (name) => w.state().rejected.has(key(name)) && !w.state().definitions.has(name),
    stats: () => w.stats(),
    changes: () => changes,
  };
}

const KINDS = [
  { what: 'service watch', make: serviceWatcher },
  { what: 'enrollment watch', make: enrollmentWatcher },
] as const;

function started(t: ExecutionContext, b: Bed, make: (b: Bed) => Watcher): Watcher {
  const w = make(b);
  w.start();
  t.teardown(() => w.stop());
  return w;
}

for (const { what, make } of KINDS) {
  test(`${what}: creation refused, the range is followed by catch-up from the last applied revision every second (a put and a delete seen at the poll, a forgery refused); the push watch takes over when it can be created, nothing applied twice`, async (t) => {
    const b = await bed(t, 'rngcatch');
    await make(b).put('a', b.coordinator);
    await make(b).put('b', b.coordinator);
    const w = started(t, b, make);
    await waitFor(() => w.synced() && w.names().length === 2, { timeoutMs: 10_000, what: 'the first snapshot (push)' });
    t.is(b.src.created.length, 1);

    // The NATS cluster loses a server: creates are refused from now on, and the watch ends.
    b.src.refuse = true;
    b.src.created[0]?.stop();
    // The next session starts after the 2 s minimum; its create is refused: catch-up at once.
    await b.clock.advanceWhenArmed(T0 + 2000, 'the next session');
    await waitFor(() => w.stats().catchingUp, { timeoutMs: 10_000, what: 'following by catch-up' });
    t.like(w.stats(), { catchUpSessions: 1, resumes: 1 }, 'from the last applied revision, not a full re-read');

    // Written while no watch can be created: a put, a delete and a forgery.
    await w.put('c', b.coordinator);
    await b.kv.delete(w.key('a'));
    const forgedAt = await w.put('evil', b.mallory);
    const changesBefore = w.changes();
    t.deepEqual(w.names(), ['a', 'b'], 'nothing seen before the poll');
    await b.clock.advanceWhenArmed(T0 + 3000, 'the first catch-up poll');
    await waitFor(() => w.names().includes('c') && !w.names().includes('a') && w.refused('evil'), { timeoutMs: 10_000, what: 'c added, a removed, the forgery refused' });
    t.is(b.clock.now(), T0 + 3000, 'at the poll time');
    t.deepEqual(w.names(), ['b', 'c']);
    t.is(w.changes() - changesBefore, 3, 'each applied once');
    t.is(b.src.created.length, 1, 'no push watch meanwhile');
    t.true(b.src.catchUps >= 2, 'the first pass and the poll');

    // Creates work again but slowly: the retry (2 s after the refusal at t+2 s) asks after the last
    // revision the catch-up handed on and is held; a poll meanwhile brings d; the push watch that then
    // takes over delivers d again, and it is not applied twice.
    let release = (): void => undefined;
    b.src.hold = new Promise<void>((resolve) => (release = resolve));
    b.src.refuse = false;
    const asked = b.src.asked.length;
    await b.clock.advanceWhenArmed(T0 + 4000, 'the push retry');
    await waitFor(() => b.src.asked.length > asked, { timeoutMs: 10_000, what: 'the retry asking (held)' });
    t.is(b.src.asked.at(-1)?.resumeFromRevision, forgedAt + 1, 'asked after the last revision handed on');
    await w.put('d', b.coordinator);
    await b.clock.advanceWhenArmed(T0 + 5000, 'the poll while the create is held');
    await waitFor(() => w.names().includes('d'), { timeoutMs: 10_000, what: 'd through catch-up' });
    const changesAtHandover = w.changes();
    release();
    await waitFor(() => !w.stats().catchingUp && b.src.created.length === 2, { timeoutMs: 10_000, what: 'back on a push watch' });
    await waitFor(() => (b.src.created[1]?.yielded ?? 0) > 0, { timeoutMs: 10_000, what: 'the push watch delivering d again' });
    t.is(w.changes(), changesAtHandover, 'd was not applied again');

    // The push watch is live: a change arrives without a clock advance.
    await w.put('e', b.coordinator);
    await waitFor(() => w.names().includes('e'), { timeoutMs: 10_000, what: 'e through the push watch' });
    t.is(w.changes(), changesAtHandover + 1);
    t.is(b.clock.now(), T0 + 5000);
    t.deepEqual(w.names(), ['b', 'c', 'd', 'e']);
    t.like(w.stats(), { catchUpSessions: 1, resumes: 1, catchingUp: false });
  });

  test(`${what}: a watch found stalled whose re-creation is refused is followed by catch-up at once, from the last applied revision`, async (t) => {
    const b = await bed(t, 'rngstall');
    await make(b).put('a', b.coordinator);
    await make(b).put('b', b.coordinator);
    const w = started(t, b, make);
    await waitFor(() => w.synced() && w.names().length === 2, { timeoutMs: 10_000, what: 'the first snapshot (push)' });
    // The consumer's server leaves silently (no error, no entries), and creates are refused.
    for (const f of b.src.created) f.frozen = true;
    b.src.refuse = true;
    await w.put('c', b.coordinator);
    await b.kv.delete(w.key('a'));
    await w.put('evil', b.mallory);
    await b.clock.advanceWhenArmed(T0 + 15_000, 'the first progress look');
    await waitFor(() => w.stats().lagRevisions === 3, { timeoutMs: 10_000, what: 'the look found the watch behind' });
    await b.clock.advanceWhenArmed(T0 + 16_000, 'the follow-up look');
    await waitFor(() => w.stats().stalls === 1, { timeoutMs: 10_000, what: 'the stall declared' });
    await b.clock.advanceWhenArmed(T0 + 18_000, 'the re-watch after the 2 s minimum');
    await waitFor(() => w.names().includes('c') && !w.names().includes('a') && w.refused('evil'), { timeoutMs: 10_000, what: 'c added, a removed, the forgery refused' });
    t.is(b.clock.now(), T0 + 18_000, 'by the catch-up\'s first pass, with no further clock advance');
    t.deepEqual(w.names(), ['b', 'c']);
    t.like(w.stats(), { stalls: 1, resumes: 1, catchUpSessions: 1, catchingUp: true });
    t.is(b.src.created.length, 1, 'no push watch');
  });

  test(`${what}: a first watch that cannot be created reads the range in full by catch-up, deletes included, then follows it until the push watch takes over`, async (t) => {
    const b = await bed(t, 'rngfull');
    await make(b).put('a', b.coordinator);
    await make(b).put('gone', b.coordinator);
    await b.kv.delete(make(b).key('gone'));
    await make(b).put('evil', b.mallory);
    b.src.refuse = true;
    const w = started(t, b, make);
    await waitFor(() => w.synced(), { timeoutMs: 10_000, what: 'the range read by catch-up' });
    t.is(b.clock.now(), T0, 'at once: the create was refused');
    t.deepEqual(w.names(), ['a']);
    t.true(w.refused('evil'));
    t.like(w.stats(), { catchingUp: true, catchUpSessions: 1, resumes: 0 });
    t.is(b.src.created.length, 0);

    await w.put('c', b.coordinator);
    await b.clock.advanceWhenArmed(T0 + 1000, 'the first poll');
    await waitFor(() => w.names().includes('c'), { timeoutMs: 10_000, what: 'c through catch-up' });

    b.src.refuse = false;
    await b.clock.advanceWhenArmed(T0 + 2000, 'the push retry');
    await waitFor(() => !w.stats().catchingUp && b.src.created.length === 1, { timeoutMs: 10_000, what: 'back on a push watch' });
    await w.put('d', b.coordinator);
    await waitFor(() => w.names().includes('d'), { timeoutMs: 10_000, what: 'd through the push watch' });
    t.deepEqual(w.names(), ['a', 'c', 'd']);
  });
}
