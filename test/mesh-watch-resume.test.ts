// MeshWatch after a NATS restart, against a real nats-server: it resumes from the last revision it
// applied (only the changes made meanwhile are delivered, not the whole bucket), falls back to a
// full re-read when the bucket was re-created, and re-watches only after its reconnect jitter.
import test, { type ExecutionContext } from 'ava';
import type { MeshWatch, MeshWatchOptions } from '../agent/control/mesh-watch.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { waitFor } from '../lib/wait.ts';
import { nodeRecord, openBucket, putNode } from './agent-helpers.ts';
import { otherClient, startWatchFixture, type WatchFixture } from './helpers/mesh-watch-fixture.ts';

function setup(t: ExecutionContext, extra: Partial<MeshWatchOptions> = {}): Promise<WatchFixture> {
  return startWatchFixture(t, {
    label: 'xl-mwresume',
    connect: { maxReconnectAttempts: -1, reconnectTimeWait: 250 },
    watch: { debounceMs: 50, retryMinMs: 100, retryMaxMs: 500, rewatchJitterMs: 0, ...extra },
  });
}

const names = (w: MeshWatch): string => [...w.snapshot().nodes.keys()].sort().join();

test('after a NATS restart the watch resumes: only the changes made meanwhile arrive, deletes included', async (t) => {
  const f = await setup(t);
  for (let i = 0; i < 20; i++) await putNode(f.kv, f.coordinator, await nodeRecord({ name: `node-${String(i).padStart(2, '0')}` }));
  f.watch.start();
  await waitFor(() => f.watch.synced && f.watch.snapshot().nodes.size === 20, { timeoutMs: 10_000, what: 'snapshot of 20 records' });
  t.is(f.watch.stats().sessionEntries, 20, 'the first session reads everything');

  await f.server.restart();
  const other = await otherClient(t, f.server);
  await other.kv.delete('nodes.node-03');
  await putNode(other.kv, f.coordinator, await nodeRecord({ name: 'node-new' }));

  await waitFor(() => f.watch.stats().resumes === 1 && f.watch.stats().live, { timeoutMs: 20_000, what: 'a resumed session' });
  await waitFor(() => f.watch.snapshot().nodes.has('node-new') && !f.watch.snapshot().nodes.has('node-03'), { timeoutMs: 10_000, what: 'changes of the outage applied' });
  t.is(f.watch.snapshot().nodes.size, 20);
  t.is(f.watch.stats().sessionEntries, 2, 'the resumed session delivered the delete and the new record, not the whole bucket');

  // And it keeps following deltas.
  await other.kv.delete('nodes.node-04');
  await waitFor(() => !f.watch.snapshot().nodes.has('node-04'), { timeoutMs: 10_000, what: 'delta after the resume' });
  t.pass();
});

test('a bucket re-created during the outage is read in full, and records it lacks are pruned', async (t) => {
  const f = await setup(t);
  for (const name of ['node-a', 'node-b', 'node-c']) await putNode(f.kv, f.coordinator, await nodeRecord({ name }));
  f.watch.start();
  await waitFor(() => f.watch.synced && f.watch.snapshot().nodes.size === 3, { timeoutMs: 10_000, what: 'snapshot' });

  await f.server.restart();
  const other = await otherClient(t, f.server);
  await other.kv.destroy();
  const fresh = await openBucket(other.nc);
  // Revisions start over at 1: a resume from revision 4 would wait forever.
  await putNode(fresh, f.coordinator, await nodeRecord({ name: 'node-z' }));

  await waitFor(() => names(f.watch) === 'node-z', { timeoutMs: 20_000, what: 'the re-created bucket read in full' });
  t.true(f.watch.stats().live);
});

test('after a reconnect the watch is re-created only once its jitter delay has passed', async (t) => {
  const clock = new ManualClock();
  // random 0.5 of a 10 s window: this watcher waits 5 s of (manual) time before re-watching.
  const f = await setup(t, { clock, rewatchJitterMs: 10_000, random: () => 0.5 });
  t.teardown(() => clock.advance(60_000)); // releases any pending sleep so stop() can finish
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'node-a' }));
  f.watch.start();
  await waitFor(() => f.watch.synced, { timeoutMs: 10_000, what: 'snapshot' });
  const before = f.watch.stats().sessions;

  let reconnected = false;
  void (async () => {
    for await (const s of f.nc.status()) if (s.type === 'reconnect') reconnected = true;
  })();
  await f.server.restart();
  await waitFor(() => reconnected, { timeoutMs: 20_000, what: 'client reconnected' });
  // Give a watch that ignored its jitter every chance to start; it must not.
  await new Promise((r) => setTimeout(r, 1000));
  t.is(f.watch.stats().sessions, before, 'no new session before the jitter delay');
  t.deepEqual([...f.watch.snapshot().nodes.keys()], ['node-a'], 'records kept meanwhile (fail-static)');

  clock.advance(4_999);
  await new Promise((r) => setTimeout(r, 300));
  t.is(f.watch.stats().sessions, before, 'still waiting just before the delay');
  clock.advance(1);
  await waitFor(() => f.watch.stats().sessions === before + 1 && f.watch.stats().live, { timeoutMs: 10_000, what: 'resumed after the jitter' });
  t.is(f.watch.stats().resumes, 1);
});
