// MeshWatch's catch-up mode (agent/control/catch-up-watch.ts) and its progress timer, on a manual
// clock: a real nats-server holds the bucket (direct gets, the revision look-ups), and the watch
// source in front of it is a fake that can refuse to create watches (as the broker does for 10–20 s
// after a NATS server loss) or freeze a created one (a silent stall: test/helpers/freezable-watch.ts). Every clock advance waits first
// until the sleeper it is meant to wake is armed (an observable condition), so no test relies on
// real-time pacing.
import test, { type ExecutionContext } from 'ava';
import { WatchBrokerError } from '../agent/control/brokered-watch.ts';
import { directWatchSource, type CatchUpOptions, type KeyWatch, type KeyWatchOptions, type KeyWatchSource, type KvCatchUpPage } from '../agent/control/key-watch.ts';
import type { MeshWatch } from '../agent/control/mesh-watch.ts';
import { waitFor } from '../lib/wait.ts';
import { FreezableWatch } from './helpers/freezable-watch.ts';
import { nodeRecord, putNode } from './agent-helpers.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { startWatchFixture, WATCH_BUCKET, type WatchFixture } from './helpers/mesh-watch-fixture.ts';

/** The direct source, with watch creation refusable and created watches freezable; counts what was asked. */
class FakeSource implements KeyWatchSource {
  refuse = false;
  /** Creates of this range only are refused (the other range's succeed). */
  refuseKey: string | undefined;
  /** What a refused create throws. */
  refusal: () => Error = () => new WatchBrokerError('unavailable', 'the watch broker refused: cannot create the watch: timeout; retry');
  /** When (on the clock, if given) each create was asked for. */
  askedAt: number[] = [];
  clock: ManualClock | undefined;
  /** While set, a create waits for it (a slow create: its start revision was fixed when asked). */
  hold: Promise<void> | undefined;
  created: FreezableWatch[] = [];
  refused = 0;
  /** Creates asked for (refused, held or made). */
  asked = 0;
  catchUps = 0;
  /** Entries per catch-up page at most (forces pagination). */
  pageLimit = 1000;
  private readonly direct: KeyWatchSource;
  constructor(f: WatchFixture) {
    this.direct = directWatchSource({ nc: f.nc, bucket: WATCH_BUCKET });
  }
  async watch(o: KeyWatchOptions): Promise<KeyWatch> {
    this.asked++;
    this.askedAt.push(this.clock?.now() ?? 0);
    if (this.refuse || o.key === this.refuseKey) {
      this.refused++;
      throw this.refusal();
    }
    await this.hold;
    const w = new FreezableWatch(await this.direct.watch(o));
    this.created.push(w);
    return w;
  }
  count(filter: string): ReturnType<KeyWatchSource['count']> {
    return this.direct.count(filter);
  }
  catchUp(o: CatchUpOptions): Promise<KvCatchUpPage> {
    this.catchUps++;
    return this.direct.catchUp({ ...o, limit: Math.min(o.limit, this.pageLimit) });
  }
}

const T0 = 1_700_000_000_000;

async function setup(t: ExecutionContext, extra: Parameters<typeof startWatchFixture>[1]['watch'] = {}): Promise<{ f: WatchFixture; src: FakeSource; clock: ManualClock }> {
  const clock = new ManualClock(T0);
  const made: { src?: FakeSource } = {};
  const f = await startWatchFixture(t, {
    label: 'xl-mwcatch',
    watch: {
      clock,
      debounceMs: 0,
      retryMinMs: 2000,
      retryMaxMs: 2000,
      rewatchJitterMs: 0,
      // The retry spread's centre (rewatch-jitter.ts): every retry after exactly 2 s.
      random: () => 0.5,
      auditIntervalMs: 0,
      progressCheckMs: 0,
      catchUpAfterMs: 1000,
      catchUpIntervalMs: 1000,
      // The fixture builds the watch before we can build the source over its connection: resolved lazily.
      watches: {
        watch: (o) => (made.src as FakeSource).watch(o),
        count: (filter) => (made.src as FakeSource).count(filter),
        catchUp: (o) => (made.src as FakeSource).catchUp(o),
      },
      ...extra,
    },
  });
  const src = new FakeSource(f);
  src.clock = clock;
  made.src = src;
  // Releases whatever still sleeps so stop() can finish (teardowns run last-in, first-out: before the watch stops).
  t.teardown(() => clock.advance(3_600_000));
  return { f, src, clock };
}

const has = (w: MeshWatch, name: string): boolean => w.snapshot().nodes.has(name);

test('watch creation refused: the mesh is followed by catch-up requests every second; the push watch takes over when it can be created, nothing applied twice', async (t) => {
  const { f, src, clock } = await setup(t);
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'a' }));
  f.watch.start();
  await waitFor(() => f.watch.synced && has(f.watch, 'a'), { timeoutMs: 10_000, what: 'the first snapshot (push)' });
  t.is(src.created.length, 2, 'two push watches');

  // The NATS cluster loses a server: creates are refused from now on, and the watches end.
  src.refuse = true;
  for (const w of src.created) w.stop();
  // The supervisor backs off (retryMinMs 2 s) before the next session.
  await clock.advanceWhenArmed(T0 + 2000, 'the re-watch backoff');
  await waitFor(() => f.watch.stats().catchingUp && f.watch.stats().live, { timeoutMs: 10_000, what: 'a live catch-up session' });
  const s = f.watch.stats();
  t.true(src.refused >= 1);
  t.is(s.catchUpSessions, 1);
  t.is(s.resumes, 1, 'the catch-up session resumes from the last applied revision (no full re-read)');
  t.is(s.sessionEntries, 0, 'nothing changed meanwhile: nothing read');

  // A node joins: the next poll (1 s later on the clock) brings it, verified like a watch's entry.
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'b' }));
  const polled = src.catchUps;
  await clock.advanceWhenArmed(T0 + 3000, 'the first catch-up poll');
  await waitFor(() => has(f.watch, 'b'), { timeoutMs: 10_000, what: 'b through catch-up' });
  t.true(src.catchUps > polled);
  // A forged (unsigned) value and a delete arrive the same way and are judged the same way.
  await f.kv.put('nodes.forged', '{"kind":"node"}');
  await f.kv.delete('nodes.a');
  await clock.advanceWhenArmed(T0 + 4000, 'the second catch-up poll');
  await waitFor(() => !has(f.watch, 'a') && f.watch.rejected().has('nodes.forged'), { timeoutMs: 10_000, what: 'the delete applied and the forgery refused' });
  t.false(has(f.watch, 'forged'));
  t.is(src.created.length, 2, 'no push watch meanwhile');

  // Creates work again but slowly: the retry at t+6 s (2 s backoff after the refused one at t+4 s)
  // asks from the applied revision, and while it is held a catch-up poll applies a newer change; the
  // push watch that then takes over delivers that change again and it is not applied twice.
  let release = (): void => undefined;
  src.hold = new Promise<void>((resolve) => (release = resolve));
  src.refuse = false;
  const asked = src.asked;
  await clock.advanceWhenArmed(T0 + 6000, 'the push retry');
  await waitFor(() => src.asked > asked, { timeoutMs: 10_000, what: 'the retry asking (held)' });
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'd' }));
  await clock.advanceWhenArmed(T0 + 7000, 'the poll while the create is held');
  await waitFor(() => has(f.watch, 'd'), { timeoutMs: 10_000, what: 'd through catch-up' });
  const entriesBefore = f.watch.stats().totalEntries;
  release();
  await waitFor(() => !f.watch.stats().catchingUp && f.watch.stats().live && src.created.length === 4, { timeoutMs: 10_000, what: 'back on a push watch' });
  await waitFor(() => src.created.slice(2).some((w) => w.yielded > 0), { timeoutMs: 10_000, what: 'the handed-over watch delivering d again' });
  t.is(f.watch.stats().totalEntries, entriesBefore, 'nothing the catch-up had applied was applied again');
  t.like(f.watch.stats(), { resumes: 1, sessions: 2 }, 'the handover continues the catch-up session\'s recovery; nothing re-read');
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'c' }));
  await waitFor(() => has(f.watch, 'c'), { timeoutMs: 10_000, what: 'c through the push watch, no clock advance' });
  // Applied in order after d's re-delivery: had d been applied again it would count here too.
  t.is(f.watch.stats().totalEntries, entriesBefore + 1, 'only c applied since the handover');
  t.deepEqual([...f.watch.snapshot().nodes.keys()].sort(), ['b', 'c', 'd']);
});

test('watch creation refused as rate-limited: the push watch is asked for again only after the broker\'s retryAfterMs (not the 2 s backoff), and right then', async (t) => {
  const { f, src, clock } = await setup(t);
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'a' }));
  f.watch.start();
  await waitFor(() => f.watch.synced && has(f.watch, 'a'), { timeoutMs: 10_000, what: 'the first snapshot (push)' });
  src.refuse = true;
  src.refusal = () => new WatchBrokerError('rate-limited', 'the watch broker refused: too many watch requests; retry in 7000 ms', 7000);
  for (const w of src.created) w.stop();
  await clock.advanceWhenArmed(T0 + 2000, 'the re-watch backoff');
  await waitFor(() => f.watch.stats().catchingUp && f.watch.stats().live, { timeoutMs: 10_000, what: 'a live catch-up session' });
  const asked = src.asked;
  t.is(src.askedAt.at(-1), T0 + 2000, 'refused at t+2 s');
  // The retry of the push create sleeps until t+9 s (7 s after the refusal; the backoff alone says t+4 s).
  await clock.advanceWhenArmed(T0 + 3000, 'the first catch-up poll');
  await waitFor(() => clock.hasSleeperAt(T0 + 9000), { timeoutMs: 10_000, what: `the push retry armed for t+9 s (armed: ${clock.wakeups.map((w) => `t+${w - T0}`).join(', ')})` });
  t.false(clock.hasSleeperAt(T0 + 4000), 'no retry at the backoff\'s t+4 s');
  for (let at = T0 + 4000; at <= T0 + 8000; at += 1000) await clock.advanceWhenArmed(at, 'a catch-up poll');
  t.is(src.asked, asked, 'no create asked for before retryAfterMs');
  src.refuse = false;
  await clock.advanceWhenArmed(T0 + 9000, 'the push retry');
  await waitFor(() => src.asked > asked, { timeoutMs: 10_000, what: 'the create asked for right after retryAfterMs' });
  t.is(src.askedAt[asked], T0 + 9000);
  await waitFor(() => !f.watch.stats().catchingUp && f.watch.stats().live, { timeoutMs: 10_000, what: 'back on a push watch' });
});

test('catch-up off (catchUpAfterMs 0): a create refused as rate-limited is retried by the supervisor after retryAfterMs, not the 2 s backoff', async (t) => {
  const { f, src, clock } = await setup(t, { catchUpAfterMs: 0 });
  src.refuse = true;
  src.refusal = () => new WatchBrokerError('rate-limited', 'the watch broker refused: too many watch requests; retry in 7000 ms', 7000);
  f.watch.start();
  await waitFor(() => src.asked === 1 && clock.sleepers === 1, { timeoutMs: 10_000, what: 'the refused create and the supervisor asleep' });
  t.deepEqual(clock.wakeups, [T0 + 7000], `the next create at t+7 s (armed: ${clock.wakeups.map((w) => `t+${w - T0}`).join(', ')})`);
  src.refuse = false;
  clock.advanceTo(T0 + 7000);
  await waitFor(() => f.watch.synced, { timeoutMs: 10_000, what: 'the watch created right at retryAfterMs' });
  t.deepEqual(src.askedAt.slice(0, 2), [T0, T0 + 7000]);
});

test('a new agent whose first watch cannot be created loads the mesh by paginated catch-up, prunes nothing it should keep, and follows changes', async (t) => {
  const { f, src, clock } = await setup(t);
  for (let i = 0; i < 23; i++) await putNode(f.kv, f.coordinator, await nodeRecord({ name: `n${String(i).padStart(2, '0')}` }));
  await f.kv.delete('nodes.n05');
  src.refuse = true;
  src.pageLimit = 5;
  f.watch.start();
  await waitFor(() => f.watch.synced, { timeoutMs: 10_000, what: 'the snapshot loaded by catch-up' });
  t.is(f.watch.snapshot().nodes.size, 22);
  t.false(has(f.watch, 'n05'));
  t.true(src.catchUps >= 5, `paginated: ${src.catchUps} pages`);
  t.like(f.watch.stats(), { catchingUp: true, catchUpSessions: 1, resumes: 0 });
  t.is(src.created.length, 0);

  await f.kv.delete('nodes.n00');
  await clock.advanceWhenArmed(T0 + 1000, 'the first poll');
  await waitFor(() => !has(f.watch, 'n00'), { timeoutMs: 10_000, what: 'a delete through catch-up' });
  t.true(f.watch.synced);
});

test('progress timer on the injected clock: a frozen watch is found stalled at the expected clock times and followed by catch-up at once', async (t) => {
  const { f, src, clock } = await setup(t, { progressCheckMs: 15_000, progressBurstMs: 1000 });
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'a' }));
  f.watch.start();
  await waitFor(() => f.watch.synced && has(f.watch, 'a'), { timeoutMs: 10_000, what: 'the first snapshot' });

  // The watch's server vanishes silently: deliveries stop, no error; and creates are refused.
  for (const w of src.created) w.frozen = true;
  src.refuse = true;
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'b' }));
  // First look at t+15 s: behind (maybe in flight); the follow-up 1 s later: stalled.
  await clock.advanceWhenArmed(T0 + 15_000, 'the first progress look');
  await waitFor(() => f.watch.stats().lagRevisions > 0, { timeoutMs: 10_000, what: 'the look found the watch behind' });
  t.is(f.watch.stats().stalls, 0, 'behind once is not a stall');
  t.false(has(f.watch, 'b'));
  await clock.advanceWhenArmed(T0 + 16_000, 'the follow-up look');
  await waitFor(() => f.watch.stats().stalls === 1, { timeoutMs: 10_000, what: 'the stall declared' });
  // The re-created watch is refused at once: the catch-up's first pass brings b with no further clock advance.
  await waitFor(() => has(f.watch, 'b') && f.watch.stats().catchingUp, { timeoutMs: 10_000, what: 'b through catch-up after the stall' });
  t.is(clock.now(), T0 + 16_000);
  t.is(f.watch.stats().resumes, 1, 'resumed from the last applied revision, not re-read');
});

test('a slow first create that completes after the catch-up loaded the mesh takes over as it is (catch-up-handover.ts): no create asked again, nothing applied twice, one session', async (t) => {
  const { f, src, clock } = await setup(t);
  for (const name of ['a', 'b']) await putNode(f.kv, f.coordinator, await nodeRecord({ name }));
  let release = (): void => undefined;
  src.hold = new Promise<void>((resolve) => (release = resolve));
  f.watch.start();
  // Not created within catchUpAfterMs (1 s): the mesh is loaded by catch-up while the create is held.
  await clock.advanceWhenArmed(T0 + 1000, 'the catch-up deadline');
  await waitFor(() => f.watch.synced && f.watch.stats().catchingUp, { timeoutMs: 10_000, what: 'the mesh loaded by catch-up' });
  t.is(f.watch.snapshot().nodes.size, 2);
  const entries = f.watch.stats().totalEntries;
  release();
  await waitFor(() => !f.watch.stats().catchingUp && src.created.length === 2, { timeoutMs: 10_000, what: 'the held creates taking over' });
  // They read the ranges from the start: a and b again, skipped.
  await waitFor(() => src.created.some((w) => w.yielded > 0), { timeoutMs: 10_000, what: 'the push watch delivering a and b again' });
  t.is(f.watch.stats().totalEntries, entries, 'nothing the catch-up applied is applied again');
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'c' }));
  await waitFor(() => has(f.watch, 'c'), { timeoutMs: 10_000, what: 'c through the push watch, no clock advance' });
  // Applied in order after a's and b's re-delivery: had they been applied again they would count here too.
  t.is(f.watch.stats().totalEntries, entries + 1, 'only c applied since the handover');
  t.is(src.asked, 2, 'the creates asked at the start are the ones used: none asked again');
  t.like(f.watch.stats(), { sessions: 1, catchUpSessions: 1, resumes: 0 });
});

test('one range back on its push watch while the other still catches up: the stall look judges the push range (its silent stall is found) and not the range still polling', async (t) => {
  const { f, src, clock } = await setup(t);
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'a' }));
  f.watch.start();
  await waitFor(() => f.watch.synced && has(f.watch, 'a'), { timeoutMs: 10_000, what: 'the first snapshot (push)' });
  // Creates refused: the next session follows both ranges by catch-up.
  src.refuse = true;
  for (const w of src.created) w.stop();
  await clock.advanceWhenArmed(T0 + 2000, 'the re-watch backoff');
  await waitFor(() => f.watch.stats().catchingUp && f.watch.stats().live, { timeoutMs: 10_000, what: 'a live catch-up session' });
  // The nodes' create works again, the clusters' is still refused: at the retries (2 s after the
  // refusal) only the nodes range hands over to its push watch.
  src.refuse = false;
  src.refuseKey = 'clusters.>';
  await clock.advanceWhenArmed(T0 + 3000, 'the first catch-up poll');
  await clock.advanceWhenArmed(T0 + 4000, 'the push retries');
  await waitFor(() => src.created.length === 3, { timeoutMs: 10_000, what: 'the nodes range\'s push watch created' });
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'p' }));
  await waitFor(() => has(f.watch, 'p'), { timeoutMs: 10_000, what: 'p through the nodes\' push watch, no clock advance' });
  t.true(f.watch.stats().catchingUp, 'the clusters range still catches up');

  // The range still polling is behind between polls (a cluster value written, no poll yet): not a stall.
  await f.kv.put('clusters.x', '{"kind":"cluster"}');
  t.is(await f.watch.checkProgress(), 'in-step', 'the range polling the bucket itself is not judged');
  t.is(await f.watch.checkProgress(), 'in-step');
  t.is(f.watch.stats().stalls, 0);

  // The nodes' push watch stalls silently (its server left): found by two looks, as on any push watch.
  const pushed = src.created[2];
  if (pushed === undefined) throw new Error('no push watch');
  pushed.frozen = true;
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'q' }));
  t.is(await f.watch.checkProgress(), 'behind');
  t.is(await f.watch.checkProgress(), 'stalled');
  t.is(f.watch.stats().stalls, 1);
  // Re-created at once by catch-up (the stall's rewatch): q arrives with no further clock advance.
  await waitFor(() => has(f.watch, 'q'), { timeoutMs: 10_000, what: 'q through catch-up after the stall' });
});
