// The periodic audit of MeshWatch, against a real nats-server: when the watch is in step with the
// bucket the audit reads no record (only the stream's newest revision and key count); when keys
// vanished behind the watch's back (a stream-level purge leaves no delete marker) it re-reads the
// whole bucket and prunes what is gone. The periodic audit runs on the injected clock.
import test, { type ExecutionContext } from 'ava';
import { jetstreamManager } from '@nats-io/jetstream';
import { waitFor } from '../lib/wait.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { clusterRecord, nodeRecord, putCluster, putNode } from './agent-helpers.ts';
import { startWatchFixture, type WatchFixture } from './helpers/mesh-watch-fixture.ts';

function setup(t: ExecutionContext): Promise<WatchFixture> {
  return startWatchFixture(t, {
    label: 'xl-mwaudit',
    // Audits are run by hand here.
    watch: { debounceMs: 20, auditIntervalMs: 0, auditSettleMs: 50 },
  });
}

/** 10 nodes (one rewritten, one deleted: a delete marker), 2 clusters, and keys outside the watched ranges. */
async function fill(f: WatchFixture): Promise<void> {
  for (let i = 0; i < 10; i++) await putNode(f.kv, f.coordinator, await nodeRecord({ name: `node-${i}` }));
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'node-1', generation: 2 }));
  await f.kv.delete('nodes.node-2');
  await putCluster(f.kv, f.coordinator, clusterRecord({ name: 'aws' }));
  await putCluster(f.kv, f.coordinator, clusterRecord({ name: 'gcp' }));
  await f.kv.put('ipam.node-0', '{}');
  await f.kv.put('coordinator.lease', '{}');
}

test('an audit of a watch in step with the bucket reads no record', async (t) => {
  const f = await setup(t);
  await fill(f);
  f.watch.start();
  await waitFor(() => f.watch.synced, { timeoutMs: 10_000, what: 'snapshot' });
  t.is(f.watch.snapshot().nodes.size, 9);
  const before = f.watch.stats();

  t.deepEqual(await f.watch.runAudit(), { kind: 'in-step' });
  // Writes outside the watched ranges (lease renewals, ipam) do not make the watch look behind.
  await f.kv.put('coordinator.lease', '{"renewed":true}');
  await f.kv.put('ipam.node-9', '{}');
  t.deepEqual(await f.watch.runAudit(), { kind: 'in-step' });

  // Changes the watch follows keep it in step too, deletes included.
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'node-new' }));
  await f.kv.delete('nodes.node-5');
  await waitFor(() => f.watch.snapshot().nodes.has('node-new') && !f.watch.snapshot().nodes.has('node-5'), { timeoutMs: 10_000, what: 'deltas applied' });
  t.deepEqual(await f.watch.runAudit(), { kind: 'in-step' });

  const after = f.watch.stats();
  t.is(after.sessions, before.sessions, 'no new watch session');
  t.is(after.totalEntries, before.totalEntries + 2, 'only the two deltas were delivered, no re-read');
  t.like(after, { audits: 3, auditRereads: 0 });
});

test('keys purged behind the watch are found by the audit, which re-reads everything and prunes them', async (t) => {
  const f = await setup(t);
  await fill(f);
  f.watch.start();
  await waitFor(() => f.watch.synced, { timeoutMs: 10_000, what: 'snapshot' });
  t.true(f.watch.snapshot().nodes.has('node-3'));
  const before = f.watch.stats();

  // A stream-level purge removes the key's messages without a delete marker: the watch never hears of it.
  const jsm = await jetstreamManager(f.nc);
  await jsm.streams.purge('KV_crosslink', { filter: '$KV.crosslink.nodes.node-3' });
  t.true(f.watch.snapshot().nodes.has('node-3'), 'the watch still holds it');

  const result = await f.watch.runAudit();
  t.is(result.kind, 're-read');
  if (result.kind === 're-read') t.regex(result.reason, /nodes\.>: the bucket holds 9 keys, the watch knows 10/);
  await waitFor(() => f.watch.stats().sessions === before.sessions + 1 && f.watch.stats().live, { timeoutMs: 10_000, what: 'full re-read' });
  t.false(f.watch.snapshot().nodes.has('node-3'), 'pruned');
  t.is(f.watch.snapshot().nodes.size, 8);
  t.true(f.watch.stats().totalEntries > before.totalEntries, 'the re-read delivered the bucket again');
  t.like(f.watch.stats(), { audits: 1, auditRereads: 1 });
  // And after the re-read it is in step again.
  t.deepEqual(await f.watch.runAudit(), { kind: 'in-step' });
});

test('the audit runs every auditIntervalMs of the injected clock, not between (lib/clock-timer.ts, no real setInterval)', async (t) => {
  const T0 = 1_700_000_000_000;
  const clock = new ManualClock(T0);
  t.teardown(() => clock.advance(3_600_000));
  const f = await startWatchFixture(t, { label: 'xl-mwaudit', watch: { clock, debounceMs: 20, auditIntervalMs: 60_000, progressCheckMs: 0, auditSettleMs: 50 } });
  await fill(f);
  f.watch.start();
  await waitFor(() => f.watch.synced && clock.hasSleeperAt(T0 + 60_000), { timeoutMs: 10_000, what: 'the snapshot, and the audit armed on the clock' });
  clock.advanceTo(T0 + 59_999);
  await new Promise((r) => setImmediate(r));
  t.is(f.watch.stats().audits, 0, 'not before the interval');
  clock.advanceTo(T0 + 60_000);
  await waitFor(() => f.watch.stats().audits === 1, { timeoutMs: 10_000, what: 'the first audit' });
  await clock.advanceWhenArmed(T0 + 120_000, 'the second audit');
  await waitFor(() => f.watch.stats().audits === 2, { timeoutMs: 10_000, what: 'the second audit' });
  t.like(f.watch.stats(), { auditRereads: 0 });
});
