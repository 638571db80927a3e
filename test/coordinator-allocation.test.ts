// The registration's writes (coordinator/registry.ts): the ipam entry and the identity binding go
// out together, both before the node record, and registrations of different nodes do not queue
// behind each other's ipam write — the address is held in the index from the decision on, so
// concurrent registrations still get distinct addresses, and a failed write gives it back.
// In-process, on a bucket whose writes the test holds (test/helpers/gated-kv.ts): no NATS.
import test from 'ava';
import { GatedKv } from './helpers/gated-kv.ts';
import { fakeAgent, signedRegistration, type FakeAgent } from '../bench/simulated-agent.ts';
import { addCluster } from '../coordinator/cluster-admin.ts';
import { defaultRunOptions, parseCoordinatorConfig } from '../coordinator/config.ts';
import { Liveness } from '../coordinator/liveness.ts';
import { Registry } from '../coordinator/registry.ts';
import { StateStore } from '../coordinator/store.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import type { JoinCredential } from '../protocol/join-credential.ts';
import type { RegisterReply } from '../protocol/messages.ts';
import { generateSigningKeyPair, openEnvelopeUnverified } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';

interface Env {
  readonly gate: GatedKv;
  readonly registry: Registry;
  readonly credential: JoinCredential;
}

async function setup(): Promise<Env> {
  const gate = new GatedKv();
  const store = new StateStore(gate.kv, await generateSigningKeyPair(), silentLogger());
  const { credential } = await addCluster({ store, clock: systemClock }, { name: 'c1', podCidrs: ['10.10.0.0/16'], topology: 'mesh', allowPublic: false });
  const config = parseCoordinatorConfig({ ...defaultRunOptions(), natsUrl: 'nats://127.0.0.1:4222', overlayCidr: '100.96.0.0/24' });
  const registry = await Registry.load({ store, clock: systemClock, logger: silentLogger(), config, liveness: new Liveness(), holdsLease: () => true });
  return { gate, registry, credential };
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
