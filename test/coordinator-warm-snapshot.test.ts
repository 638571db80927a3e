// A follower's warm copy of the bucket (coordinator/warm-snapshot.ts), against a real nats-server:
// taken as of the bucket's last revision it equals a full read, changes made while it follows
// included; a copy that cannot get there in time says so (the caller reads the bucket); and a
// follower that takes over loads its copy instead of reading the bucket, with what was registered
// while it followed intact.
import test from 'ava';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { pino } from 'pino';
import { parseCoordinatorConfig } from '../coordinator/config.ts';
import { Coordinator } from '../coordinator/coordinator.ts';
import type { IpamEntry } from '../coordinator/ipam.ts';
import { StateStore, type Snapshot } from '../coordinator/store.ts';
import { WarmSnapshot } from '../coordinator/warm-snapshot.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { NodeRecord, type NodeRecord as NodeRecordT } from '../protocol/messages.ts';
import { generateSigningKeyPair, signEnvelope, verifyEnvelope } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { clusterRecord, nodeRecord } from './agent-helpers.ts';
import { enrollingClient } from './helpers/enrollment.ts';
import { fakeAgent } from './helpers/fake-agent.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { scratchNames, useNatsServer } from './helpers/nats-fixture.ts';

const server = useNatsServer('xl-warm');

/** Every map of a snapshot as [key, revision, value] rows, for a deep comparison. */
function rows(s: Snapshot): Record<string, [string, number, unknown][]> {
  const of = (m: ReadonlyMap<string, { revision: number; value: unknown }>): [string, number, unknown][] => [...m].map(([k, v]) => [k, v.revision, v.value] as [string, number, unknown]).sort((a, b) => a[0].localeCompare(b[0]));
  return { nodes: of(s.nodes), clusters: of(s.clusters), ipam: of(s.ipam), revocations: of(s.revocations), definitions: of(s.definitions), bindings: of(s.bindings) };
}

test('taken as of the last revision, the warm copy equals a full read, with every change made while it followed', async (t) => {
  const nc = await connect({ servers: server().url });
  t.teardown(() => nc.close());
  const { bucket } = scratchNames('xlwarm');
  const kv = await new Kvm(nc).create(bucket, { history: 1 });
  const ours = await generateSigningKeyPair();
  const stranger = await generateSigningKeyPair();
  const put = async (key: string, value: unknown, by = ours.secretKey): Promise<void> => {
    await kv.put(key, JSON.stringify(await signEnvelope(value, by)));
  };
  const a1 = await nodeRecord({ name: 'node-a', generation: 1 });
  await put(kvKeys.node('node-a'), a1);
  await put(kvKeys.node('node-gone'), await nodeRecord({ name: 'node-gone' }));
  await put(kvKeys.cluster('c1'), clusterRecord({ name: 'c1' }));
  const ipam: IpamEntry = { v: 1, ip: '100.96.0.1', identityKey: a1.identityKey, generation: 1, updatedAt: 5 };
  await kv.put(kvKeys.ipam('node-a'), JSON.stringify(ipam));

  const store = new StateStore(kv, ours, silentLogger());
  const warm = new WarmSnapshot({ kv, store, clock: systemClock, logger: silentLogger() });
  t.teardown(() => warm.stop());
  // While it follows: an update, a delete, a purge, new keys, a malformed and a foreign entry, the lease.
  const a2: NodeRecordT = { ...a1, generation: 2, endpoints: ['198.51.100.2:51820'] };
  await put(kvKeys.node('node-a'), a2);
  await kv.delete(kvKeys.node('node-gone'));
  await put(kvKeys.node('node-b'), await nodeRecord({ name: 'node-b' }));
  await put(kvKeys.node('node-c'), await nodeRecord({ name: 'node-c' }));
  await kv.purge(kvKeys.node('node-c'));
  await kv.put(kvKeys.ipam('node-a'), JSON.stringify({ ...ipam, generation: 2 }));
  await kv.put(kvKeys.node('node-e'), 'not json');
  await put(kvKeys.node('node-f'), await nodeRecord({ name: 'node-f' }), stranger.secretKey);
  await kv.put(kvKeys.lease, JSON.stringify({ holder: 'x', renewedAt: 1, ttlMs: 1000 }));

  const last = (await kv.status()).streamInfo.state.last_seq;
  const copy = await warm.take(last, 10_000);
  if (!copy) return t.fail('the copy did not reach the last revision');
  t.true(warm.revision >= last);
  t.deepEqual(rows(copy), rows(await store.loadSnapshot()), 'what a full read returns');
  t.deepEqual([...copy.nodes.keys()].sort(), ['node-a', 'node-b']);
  t.deepEqual(copy.nodes.get('node-a')?.value, a2);
  t.is(await warm.take(last, 10_000), undefined, 'taken once: a second takeover reads the bucket');
});

test('a copy that has not reached the revision within the bound says so (the caller reads the bucket)', async (t) => {
  const nc = await connect({ servers: server().url });
  t.teardown(() => nc.close());
  const { bucket } = scratchNames('xlwarmlate');
  const kv = await new Kvm(nc).create(bucket, { history: 1 });
  await kv.put(kvKeys.ipam('node-a'), JSON.stringify({ v: 1, ip: '100.96.0.1', identityKey: 'k', generation: 1, updatedAt: 5 } satisfies IpamEntry));
  const clock = new ManualClock();
  const warm = new WarmSnapshot({ kv, store: new StateStore(kv, await generateSigningKeyPair(), silentLogger()), clock, logger: silentLogger() });
  t.teardown(() => warm.stop());
  const last = (await kv.status()).streamInfo.state.last_seq;
  await waitFor(() => warm.revision >= last, { timeoutMs: 10_000, what: 'the copy caught up' });
  // A revision the bucket does not have yet: the copy cannot reach it.
  const taking = warm.take(last + 100, 500);
  await waitFor(() => clock.hasSleeperAt(clock.now() + 500), { timeoutMs: 10_000, intervalMs: 5, what: 'take() waiting with its bound' });
  clock.advance(500);
  t.is(await taking, undefined);
});

test('a follower that takes over loads its warm copy instead of reading the bucket, with what was registered while it followed', async (t) => {
  const { bucket, prefix, id } = scratchNames('xlwarmha');
  const key = await generateSigningKeyPair();
  const config = parseCoordinatorConfig({ bucket, subjectPrefix: prefix, nodeTtl: '30s', leaseTtl: '1s' });
  const start = async (holderId: string, logger = silentLogger()): Promise<{ coordinator: Coordinator; nc: Awaited<ReturnType<typeof connect>> }> => {
    const nc = await connect({ servers: server().url, name: holderId, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    const coordinator = await Coordinator.start({ nc, clock: systemClock, logger, config, signingKey: key, holderId });
    t.teardown(async () => {
      await coordinator.stop();
      if (!nc.isClosed()) await nc.close();
    });
    return { coordinator, nc };
  };
  const leader = await start(`xl-w1-${id}`);
  await waitFor(() => leader.coordinator.isLeader(), { timeoutMs: 10_000, what: 'the first replica leads' });
  const lines: Record<string, unknown>[] = [];
  const followerLog = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const follower = await start(`xl-w2-${id}`, followerLog);
  t.false(follower.coordinator.isLeader());

  const nc = await connect({ servers: server().url });
  t.teardown(() => nc.close());
  const client = await enrollingClient(nc, prefix, bucket, key);
  const kv = await new Kvm(nc).open(bucket);
  const ipOf = async (name: string): Promise<string> => {
    const e = await kv.get(kvKeys.node(name));
    if (!e || e.operation !== 'PUT') throw new Error(`no record for ${name}`);
    return (await verifyEnvelope(e.value, key.publicKey, NodeRecord)).overlayIp;
  };
  // Registered while the follower follows: only its copy's updates can tell it about these.
  const a = await fakeAgent('node-a', { podCidrs: ['10.10.0.0/24'] });
  const b = await fakeAgent('node-b', { podCidrs: ['10.11.0.0/24'] });
  t.true((await client.register(a)).ok);
  t.true((await client.register(b)).ok);
  const before = { a: await ipOf('node-a'), b: await ipOf('node-b') };

  await leader.nc.close(); // the leader "crashes" holding its lease
  await waitFor(() => follower.coordinator.isLeader(), { timeoutMs: 15_000, what: 'the follower takes over' });
  const loaded = lines.find((l) => l['msg'] === 'state loaded from the bucket');
  t.is(loaded?.['from'], 'warm copy', 'the takeover read nothing from the bucket');
  t.is(loaded?.['nodes'], 2);
  t.true((await client.register(a)).ok);
  t.is(await ipOf('node-a'), before.a);
  t.is(await ipOf('node-b'), before.b);
  const c = await fakeAgent('node-c', { podCidrs: ['10.12.0.0/24'] });
  t.true((await client.register(c)).ok);
  t.is(await ipOf('node-c'), '100.96.0.3', 'the next free address: the copy held both allocations');
});
