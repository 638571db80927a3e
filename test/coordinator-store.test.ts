// StateStore.loadSnapshot against a real nats-server: the bucket's current state is read in one
// pass (no get per key, so a takeover with thousands of nodes does not take thousands of round
// trips), with the latest value of each key, deleted and purged keys left out, whatever the
// bucket's history depth.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { IpamEntry } from '../coordinator/ipam.ts';
import { StateStore } from '../coordinator/store.ts';
import { silentLogger } from '../lib/logger.ts';
import { NatsServer } from '../lib/nats-server.ts';
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';
import { generateSigningKeyPair, signEnvelope } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { clusterRecord, nodeRecord } from './agent-helpers.ts';

let server: NatsServer;
test.before(async () => {
  server = await NatsServer.start({ name: `xl-store-${randomBytes(3).toString('hex')}` });
});
test.after.always(async () => {
  await server?.stop();
});

/** The KV with its `get` calls counted. */
function counting(kv: KV): { kv: KV; gets: () => number } {
  let gets = 0;
  const proxy = new Proxy(kv, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (prop === 'get' && typeof v === 'function') {
        return (...args: unknown[]) => {
          gets++;
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { kv: proxy, gets: () => gets };
}

test('loadSnapshot: one pass, latest values only, deleted and purged keys left out, foreign signatures flagged', async (t) => {
  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  // A bucket with history (e.g. created by an operator): older revisions must not leak through.
  const kv = await new Kvm(nc).create(`xlstore_${randomBytes(4).toString('hex')}`, { history: 5 });
  const ours = await generateSigningKeyPair();
  const theirs = await generateSigningKeyPair();
  const stranger = await generateSigningKeyPair();
  const put = async (key: string, value: unknown, by = ours.secretKey): Promise<void> => {
    await kv.put(key, JSON.stringify(await signEnvelope(value, by)));
  };

  const a1 = await nodeRecord({ name: 'node-a', generation: 1 });
  const a2: NodeRecord = { ...a1, generation: 2, endpoints: ['198.51.100.2:51820'] };
  await put(kvKeys.node('node-a'), a1);
  await put(kvKeys.node('node-a'), a2);
  await put(kvKeys.node('node-b'), await nodeRecord({ name: 'node-b' }));
  await kv.delete(kvKeys.node('node-b'));
  await put(kvKeys.node('node-c'), await nodeRecord({ name: 'node-c' }));
  await kv.purge(kvKeys.node('node-c'));
  await put(kvKeys.node('node-d'), await nodeRecord({ name: 'node-d' }), theirs.secretKey);
  await put(kvKeys.node('node-f'), await nodeRecord({ name: 'node-f' }), stranger.secretKey);
  await kv.put(kvKeys.node('node-e'), 'not json');
  const c1: ClusterRecord = clusterRecord({ name: 'c1' });
  await put(kvKeys.cluster('c1'), c1);
  const ipam: IpamEntry = { v: 1, ip: '100.96.0.1', identityKey: a1.identityKey, generation: 2, updatedAt: 5 };
  await kv.put(kvKeys.ipam('node-a'), JSON.stringify({ ...ipam, generation: 1 }));
  await kv.put(kvKeys.ipam('node-a'), JSON.stringify(ipam));
  await kv.put(kvKeys.lease, JSON.stringify({ holder: 'x', renewedAt: 1, ttlMs: 1000 }));

  const { kv: observed, gets } = counting(kv);
  // `theirs` is our previous key (rotation); `stranger` is nobody we trust.
  const store = new StateStore(observed, ours, silentLogger(), [theirs.publicKey]);
  const snap = await store.loadSnapshot();

  t.deepEqual([...snap.nodes.keys()].sort(), ['node-a', 'node-d'], 'a record signed outside our key set is ignored');
  t.deepEqual(snap.nodes.get('node-a')?.value, a2, 'the latest revision');
  t.is(snap.nodes.get('node-a')?.revision, (await kv.get(kvKeys.node('node-a')))?.revision);
  t.true(snap.nodes.get('node-a')?.signedByUs);
  t.false(snap.nodes.get('node-d')?.signedByUs, 'signed by our previous key: flagged for re-signing');
  t.deepEqual(snap.clusters.get('c1')?.value, c1);
  t.deepEqual(snap.ipam.get('node-a')?.value, ipam);
  t.is(snap.revocations.size, 0);
  t.deepEqual([...(await store.loadIpam()).keys()], ['node-a']);
  t.is(gets(), 0, 'no get per key');
});

test('loadSnapshot of an empty bucket', async (t) => {
  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  const kv = await new Kvm(nc).create(`xlstore_${randomBytes(4).toString('hex')}`, { history: 1 });
  const snap = await new StateStore(kv, await generateSigningKeyPair(), silentLogger()).loadSnapshot();
  t.is(snap.nodes.size + snap.clusters.size + snap.ipam.size + snap.revocations.size, 0);
});

test('loadSnapshot decodes each entry as it streams in (no array of every raw entry held before decoding)', async (t) => {
  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  const kv = await new Kvm(nc).create(`xlstore_${randomBytes(4).toString('hex')}`, { history: 1 });
  const ours = await generateSigningKeyPair();
  const names = ['node-1', 'node-2', 'node-3', 'node-4'];
  for (const name of names) await kv.put(kvKeys.node(name), JSON.stringify(await signEnvelope(await nodeRecord({ name }), ours.secretKey)));

  // The history iterator, with every delivery and every decode (json()) of an entry recorded in order.
  const events: string[] = [];
  const observed = new Proxy(kv, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (prop !== 'history' || typeof v !== 'function') return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      return async (...args: unknown[]) => {
        const inner = (await (v as (...a: unknown[]) => Promise<AsyncIterable<KvEntry>>).apply(target, args));
        return (async function* () {
          for await (const e of inner) {
            events.push(`deliver ${e.key}`);
            const json = e.json.bind(e);
            yield Object.assign(Object.create(e) as KvEntry, { json: () => (events.push(`decode ${e.key}`), json()) });
          }
        })();
      };
    },
  });
  const snap = await new StateStore(observed, ours, silentLogger()).loadSnapshot();
  t.deepEqual([...snap.nodes.keys()].sort(), names);
  // Before: every entry was delivered (and held) first, then all decoded.
  t.deepEqual(
    events,
    names.flatMap((n) => [`deliver ${kvKeys.node(n)}`, `decode ${kvKeys.node(n)}`]),
  );
});
