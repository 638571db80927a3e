// Persistent identity and replay protection against a real nats-server and coordinator:
// a silent node's name is never taken by another key (finding 6); the owner, a deregistration or
// `release` frees it; captured registrations, heartbeats and deregistrations cannot be replayed,
// not after deregistration and not after a coordinator restart (finding 5); an offline node is
// revoked with the keys the coordinator stored (finding 4).
import test, { type ExecutionContext } from 'ava';
import { connect } from '@nats-io/transport-node';
import { parseCoordinatorConfig } from '../coordinator/config.ts';
import { Coordinator } from '../coordinator/coordinator.ts';
import { IdentityBinding } from '../coordinator/bindings.ts';
import { releaseNode } from '../coordinator/release-admin.ts';
import { revokeNode } from '../coordinator/revocation-admin.ts';
import { StateStore } from '../coordinator/store.ts';
import { fakeAgent, rpc, signed, type FakeAgent } from './helpers/fake-agent.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { verifyEnvelope } from '../protocol/signing.ts';
import { DeregisterReply, HeartbeatReply, NodeRecord, RegisterReply, type ErrorBody, type Heartbeat } from '../protocol/messages.ts';
import { kvKeys, subjects } from '../protocol/subjects.ts';
import { present, startCoordinatorEnv, type CoordinatorEnv } from './helpers/coordinator-fixture.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';

const server = useNatsServer('xl-identity');

const setup = (t: ExecutionContext): Promise<CoordinatorEnv> =>
  startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlident', config: { nodeTtl: '1s' } });

const storeOf = (env: CoordinatorEnv): StateStore => new StateStore(env.kv, env.key, silentLogger());

async function expired(env: CoordinatorEnv, name: string): Promise<void> {
  await waitFor(async () => !(await present(env.kv, kvKeys.node(name))), { timeoutMs: 20_000, what: `expiry of ${name}` });
}

function refusal(reply: RegisterReply | HeartbeatReply): ErrorBody | undefined {
  return reply.ok ? undefined : reply.error;
}

async function binding(env: CoordinatorEnv, agent: FakeAgent): Promise<IdentityBinding | undefined> {
  const r = await storeOf(env).readBinding(agent.identity.publicKey);
  return r?.value;
}

test('finding 6: a silent node keeps its name; another key is refused, the owner is not; release frees it', async (t) => {
  const env = await setup(t);
  const owner = await fakeAgent('node-a', { podCidrs: ['10.20.1.0/24'] });
  const thief = await fakeAgent('node-a', { podCidrs: ['10.20.1.0/24'], endpoints: ['198.51.100.66:51820'] });
  const first = await env.client.register(owner);
  t.true(first.ok);
  t.like(await binding(env, owner), { name: 'node-a', publicKey: owner.wireguard.publicKey });
  t.deepEqual(await env.client.heartbeat(owner), { ok: true });

  await expired(env, 'node-a');
  const stolen = refusal(await env.client.register(thief));
  t.like(stolen, { code: 'unauthorized', field: 'identityKey' });
  t.regex(stolen?.message ?? '', /bound to identity key .*release node-a/);
  t.false(await present(env.kv, kvKeys.node('node-a')), 'nothing stored for the thief');

  // The owner comes back to the same address.
  const back = await env.client.register(owner);
  if (!back.ok || !first.ok) return t.fail('owner refused');
  const [was, now] = await Promise.all([first.record, back.record].map((r) => verifyEnvelope(r, env.key.publicKey, NodeRecord)));
  t.is(now?.overlayIp, was?.overlayIp);

  // One key speaks for one node: the owner cannot grab a second name while bound.
  t.like(refusal(await env.client.register(owner, { name: 'node-b' })), { code: 'conflict', field: 'name' });

  // release refuses a live node; after expiry it frees the name for the new key.
  await t.throwsAsync(releaseNode({ store: storeOf(env), clock: systemClock }, 'node-a'), { name: 'ReleaseError', message: /is registered/ });
  await expired(env, 'node-a');
  const released = await releaseNode({ store: storeOf(env), clock: systemClock }, 'node-a');
  t.is(released.identityKey, owner.identity.publicKey);
  await t.throwsAsync(releaseNode({ store: storeOf(env), clock: systemClock }, 'node-a'), { name: 'ReleaseError', message: /not bound/ });
  t.true((await env.client.register(thief)).ok, 'the name is free after release');
  t.like(refusal(await env.client.register(owner)), { code: 'unauthorized', field: 'identityKey' });
});

test('finding 5: captured registrations, deregistrations and heartbeats cannot be replayed, not even after a coordinator restart', async (t) => {
  const env = await setup(t);
  const a = await fakeAgent('node-r', { podCidrs: ['10.20.2.0/24'] });
  const s = subjects(env.prefix);
  const capturedRegistration = await env.client.registrationBody(a);
  t.true(RegisterReply.parse(JSON.parse((await env.nc.request(s.register, capturedRegistration, { timeout: 5000 })).string())).ok);
  // The same bytes again, at once: refused (sentAt must move forward).
  t.like(refusal(await rpc(env.nc, s.register, capturedRegistration, RegisterReply)), { code: 'stale', field: 'sentAt' });

  const hb: Heartbeat = { v: 1, name: 'node-r', identityKey: a.identity.publicKey, generation: 1, sentAt: a.nextSentAt() };
  const capturedHeartbeat = await signed(hb, a.identity.secretKey);
  t.deepEqual(await rpc(env.nc, s.heartbeat, capturedHeartbeat, HeartbeatReply), { ok: true });
  t.like(refusal(await rpc(env.nc, s.heartbeat, capturedHeartbeat, HeartbeatReply)), { code: 'stale', field: 'sentAt' });

  const capturedDeregistration = await signed({ v: 1, name: 'node-r', identityKey: a.identity.publicKey, sentAt: a.nextSentAt() }, a.identity.secretKey);
  t.deepEqual(await rpc(env.nc, s.deregister, capturedDeregistration, DeregisterReply), { ok: true });
  t.like(await binding(env, a), { releasedBy: 'deregistered' });

  // After deregistration the replayed registration does not bring the node back.
  t.like(refusal(await rpc(env.nc, s.register, capturedRegistration, RegisterReply)), { code: 'stale', field: 'sentAt' });
  t.false(await present(env.kv, kvKeys.node('node-r')));

  // It registers again for real; a replayed deregistration cannot remove it.
  t.true((await env.client.register(a)).ok);
  t.like(refusal(await rpc(env.nc, s.deregister, capturedDeregistration, DeregisterReply)), { code: 'stale' });
  t.true(await present(env.kv, kvKeys.node('node-r')));

  // A fresh coordinator on the same bucket (the old one stopped): the marks come from the bucket.
  await env.coordinator.stop();
  const cnc = await connect({ servers: server().url, name: 'xl-identity-second' });
  const second = await Coordinator.start({
    nc: cnc,
    clock: systemClock,
    logger: silentLogger(),
    config: parseCoordinatorConfig({ bucket: env.bucket, subjectPrefix: env.prefix, leaseTtl: '5s', nodeTtl: '30s' }),
    signingKey: env.key,
  });
  t.teardown(async () => {
    await second.stop();
    await cnc.close();
  });
  await waitFor(() => second.isLeader(), { timeoutMs: 15_000, what: 'second coordinator leads' });
  t.like(refusal(await rpc(env.nc, s.register, capturedRegistration, RegisterReply)), { code: 'stale', field: 'sentAt' });
  t.like(refusal(await rpc(env.nc, s.heartbeat, capturedHeartbeat, HeartbeatReply)), { code: 'stale', field: 'sentAt' });
  t.like(refusal(await rpc(env.nc, s.deregister, capturedDeregistration, DeregisterReply)), { code: 'stale' });
  t.true(await present(env.kv, kvKeys.node('node-r')));
  t.deepEqual(await env.client.heartbeat(a), { ok: true }, 'the honest node keeps working');
});

test('finding 4: revoking an offline node uses its stored keys; they cannot register under a new name', async (t) => {
  const env = await setup(t);
  const a = await fakeAgent('node-o', { podCidrs: ['10.20.3.0/24'] });
  t.true((await env.client.register(a)).ok);
  await expired(env, 'node-o');
  const r = await revokeNode({ store: storeOf(env), clock: systemClock }, 'node-o', 'stolen laptop');
  t.is(r.revocation.identityKey, a.identity.publicKey);
  t.is(r.revocation.publicKey, a.wireguard.publicKey);
  const other = await fakeAgent('node-new', { podCidrs: ['10.20.4.0/24'] });
  // The revoked identity key under a new name; the revoked WireGuard key under a new identity.
  const sameIdentity: FakeAgent = { ...a, name: 'node-new', request: (o = {}) => a.request({ name: 'node-new', ...o }) };
  await waitFor(async () => refusal(await env.client.register(sameIdentity))?.code === 'unauthorized', { timeoutMs: 10_000, what: 'revoked identity refused' });
  t.like(refusal(await env.client.register(sameIdentity)), { code: 'unauthorized', field: 'identityKey' });
  t.like(refusal(await env.client.register(other, { publicKey: a.wireguard.publicKey })), { code: 'unauthorized', field: 'publicKey' });
  t.like(refusal(await env.client.register(a)), { code: 'unauthorized', field: 'name' });
  t.false(await present(env.kv, kvKeys.node('node-new')));
  t.true((await env.client.register(other)).ok, 'an honest node still registers');
});
