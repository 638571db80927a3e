// MeshWatch against a real nats-server and a real KV bucket: only verified records get through,
// and the watch recovers from a server restart (including deletes that happened meanwhile).
import test, { type ExecutionContext } from 'ava';
import type { MeshSnapshot, MeshWatch } from '../agent/control/mesh-watch.ts';
import { waitFor } from '../lib/wait.ts';
import { generateSigningKeyPair, signEnvelope } from '../protocol/signing.ts';
import { clusterRecord, nodeRecord, putCluster, putNode } from './agent-helpers.ts';
import { otherClient, startWatchFixture, type WatchFixture } from './helpers/mesh-watch-fixture.ts';

function setup(t: ExecutionContext): Promise<WatchFixture> {
  return startWatchFixture(t, {
    label: 'xl-meshwatch',
    connect: { maxReconnectAttempts: -1, reconnectTimeWait: 250 },
    watch: { debounceMs: 50, retryMinMs: 100, retryMaxMs: 500 },
  });
}

const names = (w: MeshWatch): string[] => [...w.snapshot().nodes.keys()].sort();

test('loads the initial snapshot, then follows adds, updates and deletes', async (t) => {
  const f = await setup(t);
  const a = await nodeRecord({ name: 'node-a', cluster: 'c1' });
  const b = await nodeRecord({ name: 'node-b', cluster: 'c2' });
  await putNode(f.kv, f.coordinator, a);
  await putNode(f.kv, f.coordinator, b);
  await putCluster(f.kv, f.coordinator, clusterRecord({ name: 'c1' }));

  f.watch.start();
  await waitFor(() => f.watch.synced, { timeoutMs: 10_000, what: 'initial snapshot' });
  t.deepEqual(names(f.watch), ['node-a', 'node-b']);
  t.deepEqual([...f.watch.snapshot().clusters.keys()], ['c1']);
  t.true(f.changes >= 1);

  const c = await nodeRecord({ name: 'node-c.example.com', cluster: 'c3' });
  await putNode(f.kv, f.coordinator, c);
  await waitFor(() => f.watch.snapshot().nodes.has('node-c.example.com'), { timeoutMs: 10_000, what: 'node-c added' });

  await putNode(f.kv, f.coordinator, { ...a, generation: 2, endpoints: ['192.0.2.99:51820'] });
  await waitFor(() => f.watch.snapshot().nodes.get('node-a')?.generation === 2, { timeoutMs: 10_000, what: 'node-a updated' });
  t.deepEqual(f.watch.snapshot().nodes.get('node-a')?.endpoints, ['192.0.2.99:51820']);

  await f.kv.delete('nodes.node-b');
  await f.kv.purge('clusters.c1');
  await waitFor(() => !f.watch.snapshot().nodes.has('node-b') && f.watch.snapshot().clusters.size === 0, { timeoutMs: 10_000, what: 'deletes applied' });
  t.deepEqual(names(f.watch), ['node-a', 'node-c.example.com']);
});

test('a cluster\'s gateway change is delivered at once (failover), not after the debounce; other changes wait for it', async (t) => {
  // A debounce no test outlives: only the gateway change can make a snapshot arrive.
  const f = await startWatchFixture(t, { label: 'xl-meshwatch', watch: { debounceMs: 600_000 } });
  const g1 = await nodeRecord({ name: 'gcp-n1', cluster: 'gcp', topology: 'gateway' });
  const g2 = await nodeRecord({ name: 'gcp-n2', cluster: 'gcp', topology: 'gateway' });
  await putNode(f.kv, f.coordinator, g1);
  await putNode(f.kv, f.coordinator, g2);
  await putCluster(f.kv, f.coordinator, clusterRecord({ name: 'gcp', topology: 'gateway', gateway: 'gcp-n1', gatewayEpoch: 1 }));
  const delivered: MeshSnapshot[] = [];
  f.watch.onSnapshot((s) => delivered.push(s));
  f.watch.start();
  await waitFor(() => delivered.length === 1, { timeoutMs: 10_000, what: 'the initial snapshot (delivered at once)' });
  // An ordinary change (coalesced, waits for the debounce), then the failover.
  await putNode(f.kv, f.coordinator, { ...g2, generation: 2, endpoints: ['192.0.2.7:51820'] });
  await putCluster(f.kv, f.coordinator, clusterRecord({ name: 'gcp', topology: 'gateway', gateway: 'gcp-n2', gatewayEpoch: 2, generation: 2 }));
  const failover = await waitFor(() => delivered.find((s) => s.clusters.get('gcp')?.gateway === 'gcp-n2'), { timeoutMs: 10_000, what: 'the gateway change delivered' });
  t.deepEqual(failover.nodes.get('gcp-n2')?.endpoints, ['192.0.2.7:51820'], 'it carries what was coalesced before it');
});

test('the initial load is delivered once, complete: no partial snapshots while records stream in (one plan at start)', async (t) => {
  // No debounce: before the fix every pause in the stream delivered a partial snapshot (each a
  // copy of everything read so far, and a reconcile that could not act on it).
  const f = await startWatchFixture(t, { label: 'xl-meshwatch', watch: { debounceMs: 0 } });
  const n = 1500;
  const records = await Promise.all(Array.from({ length: n }, (_, i) => nodeRecord({ name: `node-${i}`, overlayIp: `100.96.${i >> 8}.${i & 255}` })));
  await Promise.all(records.map((r) => putNode(f.kv, f.coordinator, r)));
  const delivered: { complete: boolean; nodes: number }[] = [];
  f.watch.onSnapshot((s) => delivered.push({ complete: s.complete, nodes: s.nodes.size }));
  f.watch.start();
  await waitFor(() => f.watch.synced && delivered.length > 0, { timeoutMs: 30_000, what: 'the initial snapshot delivered' });
  t.deepEqual(delivered[0], { complete: true, nodes: n }, `first delivery: ${JSON.stringify(delivered.slice(0, 5))}`);
  t.true(delivered.every((d) => d.complete), 'nothing partial delivered');
});

test('an empty bucket counts as a complete snapshot', async (t) => {
  const f = await setup(t);
  f.watch.start();
  await waitFor(() => f.watch.synced, { timeoutMs: 10_000, what: 'empty snapshot' });
  t.is(f.watch.snapshot().nodes.size, 0);
});

test('ignores forged, unsigned, mismatched, malformed and replayed records', async (t) => {
  const f = await setup(t);
  const good = await nodeRecord({ name: 'node-a', generation: 5 });
  await putNode(f.kv, f.coordinator, good);
  f.watch.start();
  await waitFor(() => f.watch.snapshot().nodes.has('node-a'), { timeoutMs: 10_000, what: 'node-a' });

  const impostor = await generateSigningKeyPair();
  const rows: { key: string; value: string; why: RegExp }[] = [
    // Signed by another key.
    { key: 'nodes.forged', value: JSON.stringify(await signEnvelope(await nodeRecord({ name: 'forged' }), impostor.secretKey)), why: /does not verify/ },
    // Plain JSON record without an envelope.
    { key: 'nodes.unsigned', value: JSON.stringify(await nodeRecord({ name: 'unsigned' })), why: /not a signed envelope/ },
    // Genuine record copied under another key.
    { key: 'nodes.mallory', value: JSON.stringify(await signEnvelope(await nodeRecord({ name: 'node-z' }), f.coordinator.secretKey)), why: /stored under/ },
    // Genuine signature over something that is not a node record.
    { key: 'nodes.weird', value: JSON.stringify(await signEnvelope({ hello: 'world' }, f.coordinator.secretKey)), why: /not a valid node record/ },
    // Not JSON at all.
    { key: 'nodes.garbage', value: 'garbage', why: /not JSON/ },
    // An older generation of a record we hold (replay of a captured value).
    { key: 'nodes.node-a', value: JSON.stringify(await signEnvelope({ ...good, generation: 4, endpoints: ['203.0.113.66:51820'] }, f.coordinator.secretKey)), why: /older/ },
  ];
  for (const r of rows) await f.kv.put(r.key, r.value);
  await waitFor(() => f.watch.rejected().size === rows.length, { timeoutMs: 10_000, what: 'all bad records rejected' });

  t.deepEqual(names(f.watch), ['node-a']);
  t.deepEqual(f.watch.snapshot().nodes.get('node-a'), good, 'the replay did not replace the held record');
  for (const r of rows) t.regex(f.watch.rejected().get(r.key)?.reason ?? '', r.why, r.key);
  t.is(f.watch.stats().rejected, rows.length);

  // A good record under a rejected key clears the flag.
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'forged' }));
  await waitFor(() => f.watch.snapshot().nodes.has('forged'), { timeoutMs: 10_000, what: 'forged key replaced by a good record' });
  t.false(f.watch.rejected().has('nodes.forged'));
});

test('recovers after a NATS server restart; records deleted meanwhile disappear', async (t) => {
  const f = await setup(t);
  const a = await nodeRecord({ name: 'node-a', cluster: 'c1' });
  const b = await nodeRecord({ name: 'node-b', cluster: 'c2' });
  await putNode(f.kv, f.coordinator, a);
  await putNode(f.kv, f.coordinator, b);
  f.watch.start();
  await waitFor(() => f.watch.synced && f.watch.snapshot().nodes.size === 2, { timeoutMs: 10_000, what: 'snapshot' });
  const sessionsBefore = f.watch.stats().sessions;

  await f.server.stopProcess();
  // During the outage we keep what we had (fail-static).
  await new Promise((r) => setTimeout(r, 500));
  t.deepEqual(names(f.watch), ['node-a', 'node-b']);

  await f.server.restart();
  // Another client changes the KV before the watcher's connection is back.
  const { kv: kv2 } = await otherClient(t, f.server);
  await kv2.delete('nodes.node-b');
  const c = await nodeRecord({ name: 'node-c', cluster: 'c3' });
  await putNode(kv2, f.coordinator, c);

  await waitFor(() => names(f.watch).join() === 'node-a,node-c', { timeoutMs: 20_000, what: 'state after recovery' });
  await waitFor(() => f.watch.stats().sessions > sessionsBefore && f.watch.stats().live, { timeoutMs: 20_000, what: 'new watch session' });

  // The re-created watch keeps following deltas.
  await kv2.delete('nodes.node-a');
  await waitFor(() => names(f.watch).join() === 'node-c', { timeoutMs: 10_000, what: 'delta after recovery' });
  t.pass();
});

test('a refresh prunes records whose keys vanished without a delete marker', async (t) => {
  const f = await setup(t);
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'node-a' }));
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'node-b' }));
  f.watch.start();
  await waitFor(() => f.watch.snapshot().nodes.size === 2, { timeoutMs: 10_000, what: 'snapshot' });
  // Purge the subject at the stream level: no DEL/PURGE marker reaches the watcher.
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const jsm = await jetstreamManager(f.nc);
  await jsm.streams.purge('KV_crosslink', { filter: '$KV.crosslink.nodes.node-b' });
  f.watch.refresh('test');
  await waitFor(() => names(f.watch).join() === 'node-a', { timeoutMs: 10_000, what: 'node-b pruned by the full re-read' });
  t.pass();
});
