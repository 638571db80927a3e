// The registration's writes (coordinator/registry.ts): the ipam entry and the identity binding go
// out together, both before the node record, and registrations of different nodes do not queue
// behind each other's ipam write — the address is held in the index from the decision on, so
// concurrent registrations still get distinct addresses, and a failed write gives it back.
// In-process, on a bucket whose writes the test holds (test/helpers/gated-kv.ts): no NATS.
import test from 'ava';
import { GatedKv } from './helpers/gated-kv.ts';
import { fakeAgent, signedRegistration, type FakeAgent } from './helpers/fake-agent.ts';
import { addCluster } from '../coordinator/cluster-admin.ts';
import { defaultRunOptions, parseCoordinatorConfig } from '../coordinator/config.ts';
import { Liveness } from '../coordinator/liveness.ts';
import { Registry } from '../coordinator/registry.ts';
import { StateStore, type SignedNode } from '../coordinator/store.ts';
import type { Schedule } from '../coordinator/deferred-events.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import type { JoinCredential } from '../protocol/join-credential.ts';
import { NodeRecord, type RegisterReply } from '../protocol/messages.ts';
import { generateSigningKeyPair, openEnvelopeUnverified, verifyEnvelope, type SigningKeyPair } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';

interface Env {
  readonly gate: GatedKv;
  readonly registry: Registry;
  readonly credential: JoinCredential;
  readonly store: StateStore;
  readonly signingKey: SigningKeyPair;
}

async function setup(o: { nextTurn?: Schedule; store?: (s: StateStore) => StateStore } = {}): Promise<Env> {
  const gate = new GatedKv();
  const signingKey = await generateSigningKeyPair();
  const store = (o.store ?? ((s) => s))(new StateStore(gate.kv, signingKey, silentLogger()));
  const { credential } = await addCluster({ store, clock: systemClock }, { name: 'c1', podCidrs: ['10.10.0.0/16'], topology: 'mesh', allowPublic: false });
  const config = parseCoordinatorConfig({ ...defaultRunOptions(), natsUrl: 'nats://127.0.0.1:4222', overlayCidr: '100.96.0.0/24' });
  const registry = await Registry.load({
    store,
    clock: systemClock,
    logger: silentLogger(),
    config,
    liveness: new Liveness(),
    holdsLease: () => true,
    ...(o.nextTurn ? { nextTurn: o.nextTurn } : {}),
  });
  return { gate, registry, credential, store, signingKey };
}

/**
 * A store whose signNode calls (optionally altered: `alter` changes the record it signs) and putNode
 * arguments are recorded.
 */
function signSpy(alter?: (r: NodeRecord) => NodeRecord): { made: SignedNode[]; puts: (NodeRecord | SignedNode)[]; wrap: (s: StateStore) => StateStore } {
  const made: SignedNode[] = [];
  const puts: (NodeRecord | SignedNode)[] = [];
  return {
    made,
    puts,
    wrap: (s) => {
      const sign = s.signNode.bind(s);
      const put = s.putNode.bind(s);
      s.signNode = (record) => {
        const signed = sign(alter ? alter(record) : record);
        made.push(signed);
        return signed;
      };
      s.putNode = (record, revision) => {
        puts.push(record);
        return put(record, revision);
      };
      return s;
    },
  };
}

const agent = (name: string, pod: string): Promise<FakeAgent> => fakeAgent(name, { cluster: 'c1', podCidrs: [pod] });

function register(env: Env, a: FakeAgent): Promise<RegisterReply> {
  return signedRegistration(a.request(), a.identity.secretKey, env.credential).then((body) => env.registry.register(Buffer.from(body)));
}

/** The held writes' keys once at least `n` are in flight (waits with a deadline). */
function heldKeys(env: Env, n: number): Promise<string[]> {
  return waitFor(() => env.gate.pending.length >= n && env.gate.pending.map((w) => w.key).sort(), { timeoutMs: 5000, intervalMs: 5, what: `${n} writes in flight at once` });
}

const overlayIpOf = (reply: RegisterReply): string | undefined => (reply.ok ? (openEnvelopeUnverified(reply.record) as { overlayIp: string }).overlayIp : undefined);

test('the ipam entry and the identity binding are in flight together, the node record only after both', async (t) => {
  const env = await setup();
  const a = await agent('node-a', '10.10.1.0/24');
  env.gate.held = true;
  const reply = register(env, a);
  t.deepEqual(await heldKeys(env, 2), [kvKeys.identity(a.identity.publicKey), kvKeys.ipam('node-a')].sort());
  for (const w of env.gate.pending.splice(0)) w.release();
  t.deepEqual(await heldKeys(env, 1), [kvKeys.node('node-a')]);
  env.gate.releaseAll();
  t.true((await reply).ok);
});

test('registrations of different nodes do not wait for each other, and get distinct addresses', async (t) => {
  const env = await setup();
  const a = await agent('node-a', '10.10.1.0/24');
  const b = await agent('node-b', '10.10.2.0/24');
  env.gate.held = true;
  const replies = Promise.all([register(env, a), register(env, b)]);
  // Both nodes' ipam entries are written before either is acknowledged (a table-wide lock held
  // across the write would let only one out).
  const keys = await heldKeys(env, 4);
  t.deepEqual(keys.filter((k) => k.startsWith('ipam.')), ['ipam.node-a', 'ipam.node-b']);
  const ips = env.gate.pending.filter((w) => w.key.startsWith('ipam.')).map((w) => (JSON.parse(w.text) as { ip: string }).ip);
  t.is(new Set(ips).size, 2, `distinct addresses: ${ips.join(', ')}`);
  env.gate.releaseAll();
  const [ra, rb] = await replies;
  t.true(ra.ok && rb.ok);
  t.deepEqual([overlayIpOf(ra), overlayIpOf(rb)].sort(), [...ips].sort());
});

test('a failed ipam write fails the registration and gives its address back', async (t) => {
  const env = await setup();
  const a = await agent('node-a', '10.10.1.0/24');
  env.gate.held = true;
  const first = register(env, a);
  await heldKeys(env, 2);
  const ipamWrite = env.gate.pending.find((w) => w.key === 'ipam.node-a');
  const held = (JSON.parse(ipamWrite?.text ?? '{}') as { ip?: string }).ip;
  ipamWrite?.fail(new Error('stream unavailable (injected)'));
  env.gate.releaseAll();
  const reply = await first;
  t.false(reply.ok);
  if (!reply.ok) t.is(reply.error.code, 'internal');
  // The address the failed registration held is free again: the next node gets it.
  const b = await agent('node-b', '10.10.2.0/24');
  const rb = await register(env, b);
  t.is(overlayIpOf(rb), held);
});

test('a CAS conflict on the ipam write after the binding was stored: the retry of the same request is not refused as its own replay', async (t) => {
  const env = await setup();
  const a = await agent('node-a', '10.10.1.0/24');
  env.gate.held = true;
  const body = Buffer.from(await signedRegistration(a.request(), a.identity.secretKey, env.credential));
  const first = env.registry.register(body);
  await heldKeys(env, 2);
  // The binding (with this request's sentAt) lands; the ipam write loses a compare-and-set race.
  for (const w of env.gate.pending.splice(0)) {
    if (w.key === 'ipam.node-a') w.fail(Object.assign(new Error('wrong last sequence for ipam.node-a (injected)'), { name: 'JetStreamApiError', code: 10071 }));
    else w.release();
  }
  env.gate.releaseAll();
  const reply = await first;
  t.true(reply.ok, reply.ok ? '' : `${reply.error.code}: ${reply.error.message}`);
  // A real replay of the same bytes afterwards is still refused.
  const replay = await env.registry.register(body);
  t.false(replay.ok);
  if (!replay.ok) t.is(replay.error.code, 'stale');
});

// The node record is signed while the ipam entry and the binding are in flight (the registry's next
// turn), so its write leaves as soon as both are stored; it is still written only after them.

test('the node record is signed while the ipam entry and binding are in flight, and that envelope is the one written', async (t) => {
  const spy = signSpy();
  const env = await setup({ store: spy.wrap });
  const a = await agent('node-a', '10.10.1.0/24');
  env.gate.held = true;
  const reply = register(env, a);
  await heldKeys(env, 2);
  await waitFor(() => spy.made.length === 1, { timeoutMs: 5000, intervalMs: 5, what: 'the record signed ahead' });
  // Signed, not written: the two writes it depends on are still unacknowledged.
  t.deepEqual(env.gate.pending.map((w) => w.key).sort(), [kvKeys.identity(a.identity.publicKey), kvKeys.ipam('node-a')].sort());
  for (const w of env.gate.pending.splice(0)) w.release();
  await heldKeys(env, 1);
  const nodeWrite = env.gate.pending[0];
  t.is(nodeWrite?.key, kvKeys.node('node-a'));
  t.is(spy.puts[0], spy.made[0], 'the record signed ahead is the one put (not signed again)');
  t.is(nodeWrite?.text, spy.made[0]?.data, 'its envelope is what is written');
  env.gate.releaseAll();
  const r = await reply;
  t.true(r.ok);
  t.is(spy.made.length, 1, 'signed once');
  const stored = await verifyEnvelope(JSON.parse(nodeWrite?.text ?? '{}'), env.signingKey.publicKey, NodeRecord);
  t.like(stored, { name: 'node-a', generation: 1, podCidrs: ['10.10.1.0/24'] });
  t.is<string | undefined, string | undefined>(stored.overlayIp, overlayIpOf(r));
});

test('a record signed ahead that differs from the record to store is not written: the record is signed again', async (t) => {
  // The signature made ahead covers a wrong generation (as if the node's state had moved meanwhile).
  const spy = signSpy((rec) => ({ ...rec, generation: rec.generation + 5 }));
  const env = await setup({ store: spy.wrap });
  const a = await agent('node-a', '10.10.1.0/24');
  env.gate.held = true;
  const reply = register(env, a);
  await heldKeys(env, 2);
  await waitFor(() => spy.made.length === 1, { timeoutMs: 5000, intervalMs: 5, what: 'the record signed ahead' });
  env.gate.releaseAll();
  const r = await reply;
  t.true(r.ok);
  t.is(spy.made.length, 1, 'signed ahead once');
  t.false(spy.puts[0] === spy.made[0], 'the record signed ahead is not put');
  const written = await env.store.readNode('node-a');
  t.is(written?.value.generation, 1);
  t.true(written?.signedByUs);
  t.not(written?.envelope.sig, spy.made[0]?.envelope.sig, 'not the envelope signed ahead');
});

test('when the next turn never comes, the record is signed at its write', async (t) => {
  const spy = signSpy();
  const env = await setup({ store: spy.wrap, nextTurn: () => undefined });
  const a = await agent('node-a', '10.10.1.0/24');
  const r = await register(env, a);
  t.true(r.ok);
  t.is(spy.made.length, 0, 'nothing signed ahead');
  const written = await env.store.readNode('node-a');
  t.like(written?.value, { name: 'node-a', generation: 1 });
  t.true(written?.signedByUs);
});
