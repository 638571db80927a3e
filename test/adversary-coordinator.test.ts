// Issue 8, the coordinator side, replayed as an attacker would against a real nats-server and
// coordinator (one nats-server for the file; a fresh bucket per test): cluster membership
// (finding 2), foreign signatures, signing-key rotation and a forged lease (3), revoking an offline
// node (4), replay (5), name takeover (6), abuse limits (8). Each asserts nothing hostile is
// stored and honest nodes keep working.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { connect } from '@nats-io/transport-node';
import { parseCoordinatorConfig, type RawRunOptions } from '../coordinator/config.ts';
import { Coordinator } from '../coordinator/coordinator.ts';
import { IdentityBinding } from '../coordinator/bindings.ts';
import { releaseNode } from '../coordinator/release-admin.ts';
import { revokeNode } from '../coordinator/revocation-admin.ts';
import { StateStore } from '../coordinator/store.ts';
import { agentClient, fakeAgent, rpc, signed, type FakeAgent } from './helpers/fake-agent.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { generateSigningKeyPair, signEnvelope, verifyEnvelope } from '../protocol/signing.ts';
import { IpamEntry } from '../coordinator/ipam.ts';
import { ClusterRecord, DeregisterReply, HeartbeatReply, NodeRecord, RegisterReply, type ErrorBody, type Heartbeat } from '../protocol/messages.ts';
import { kvKeys, subjects } from '../protocol/subjects.ts';
import { present, runCoordinatorBin, startCoordinatorEnv, type CoordinatorEnv } from './helpers/coordinator-fixture.ts';
import { tempDir } from './helpers/temp-dir.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';

const server = useNatsServer('xl-identity');

const setup = (t: ExecutionContext, config: Partial<RawRunOptions> = {}): Promise<CoordinatorEnv> =>
  startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xladv', config: { nodeTtl: '1s', ...config } });

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
  t.like(await env.client.heartbeat(owner), { ok: true });

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

  // release refuses a live node (the API: the binary starts slower than the 1 s TTL here)…
  await t.throwsAsync(releaseNode({ store: storeOf(env), clock: systemClock }, 'node-a'), { name: 'ReleaseError', message: /is registered/ });
  t.like(await binding(env, owner), { name: 'node-a' }, 'a refused release changes nothing');
  // …and after expiry the operator's tool, end to end through the real binary, frees the name for the new key.
  await expired(env, 'node-a');
  const keyFile = join(await tempDir(t, 'xl-release-'), 'coordinator.key');
  await writeFile(keyFile, JSON.stringify({ publicKey: env.key.publicKey, secretKey: env.key.secretKey }), { mode: 0o600 });
  const release = () => runCoordinatorBin(['release', 'node-a', '--nats-url', server().url, '--bucket', env.bucket, '--signing-key-file', keyFile]);
  const released = await release();
  t.is(released.code, 0, released.stderr);
  t.regex(released.stdout, new RegExp(`released node name "node-a" \\(bound to identity key ${escapeRegExp(owner.identity.publicKey)}`));
  t.like(await binding(env, owner), { name: 'node-a', releasedBy: 'operator' }, 'the binding is marked released (its replay mark stays)');
  const again = await release();
  t.is(again.code, 1);
  t.regex(again.stderr, /not bound/);
  t.true((await env.client.register(thief)).ok, 'the name is free after release');
  t.like(refusal(await env.client.register(owner)), { code: 'unauthorized', field: 'identityKey' });
});

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('finding 5: captured registrations, deregistrations and heartbeats cannot be replayed, not even after a coordinator restart', async (t) => {
  const env = await setup(t);
  const a = await fakeAgent('node-r', { podCidrs: ['10.20.2.0/24'] });
  const s = subjects(env.prefix);
  const capturedRegistration = await env.client.registrationBody(a);
  const registered = RegisterReply.parse(JSON.parse((await env.nc.request(s.register, capturedRegistration, { timeout: 5000 })).string()));
  t.true(registered.ok);
  // The same bytes again, at once: refused (sentAt must move forward).
  t.like(refusal(await rpc(env.nc, s.register, capturedRegistration, RegisterReply)), { code: 'stale', field: 'sentAt' });

  // Signed with the epoch the registration reply named, as the agent signs it.
  const hb: Heartbeat = { v: 1, name: 'node-r', identityKey: a.identity.publicKey, generation: 1, sentAt: a.nextSentAt(), ...(registered.epoch === undefined ? {} : { epoch: registered.epoch }) };
  const capturedHeartbeat = await signed(hb, a.identity.secretKey);
  t.like(await rpc(env.nc, s.heartbeat, capturedHeartbeat, HeartbeatReply), { ok: true });
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
  // The captured heartbeat is of the earlier term: refused for its epoch (the replay marks of
  // heartbeats without one are adversary-epoch's, with the requirement off).
  t.like(refusal(await rpc(env.nc, s.heartbeat, capturedHeartbeat, HeartbeatReply)), { code: 'stale-epoch', field: 'epoch' });
  t.like(refusal(await rpc(env.nc, s.deregister, capturedDeregistration, DeregisterReply)), { code: 'stale' });
  t.true(await present(env.kv, kvKeys.node('node-r')));
  t.like(await env.client.heartbeat(a), { ok: true }, 'the honest node keeps working');
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

test('finding 2: a credential of cluster A cannot register into B, and topology is the definition, never a node flag', async (t) => {
  const env = await setup(t, { nodeTtl: '30s' });
  const credA = await env.enrollment.enroll('alpha', ['10.30.0.0/16']);
  const credB = await env.enrollment.enroll('beta', ['10.31.0.0/16']);
  const client = agentClient(env.nc, env.prefix);
  const honest = await fakeAgent('beta-1', { cluster: 'beta', podCidrs: ['10.31.1.0/24'] });
  honest.joinCredential = credB;
  t.true((await client.register(honest)).ok);

  const evil = await fakeAgent('0-evil', { cluster: 'beta', topology: 'gateway', gatewayEligible: true, podCidrs: ['10.31.9.0/24'] });
  evil.joinCredential = credA;
  t.like(refusal(await client.register(evil)), { code: 'unauthorized' });
  t.false(await present(env.kv, kvKeys.node('0-evil')), 'nothing stored');
  const beta = await env.kv.get(kvKeys.cluster('beta'));
  const betaRecord = beta ? await verifyEnvelope(beta.json(), env.key.publicKey, ClusterRecord) : undefined;
  t.like(betaRecord, { topology: 'mesh', gateway: null });

  // In its own cluster the gateway flag is ignored: alpha was enrolled as mesh.
  const inA = await fakeAgent('alpha-1', { cluster: 'alpha', topology: 'gateway', gatewayEligible: true, podCidrs: ['10.30.1.0/24'] });
  inA.joinCredential = credA;
  const reply = await client.register(inA);
  if (!reply.ok) return t.fail(reply.error.message);
  t.is((await verifyEnvelope(reply.record, env.key.publicKey, NodeRecord)).topology, 'mesh');
  t.like(await client.heartbeat(honest), { ok: true }, 'the honest node keeps working');
});

test('finding 3: foreign records are never re-signed or enforced, a forged lease causes no harm, previous keys rotate', async (t) => {
  const old = await generateSigningKeyPair();
  const mallory = await generateSigningKeyPair();
  const env = await setup(t, { nodeTtl: '30s', previousPublicKey: old.publicKey });
  const honest = await fakeAgent('honest', { podCidrs: ['10.32.1.0/24'] });
  t.true((await env.client.register(honest)).ok);

  const record = (name: string, cidr: string, a: { identity: { publicKey: string }; wireguard: { publicKey: string } }): NodeRecord => ({
    kind: 'node', v: 1, name, cluster: 'c1', location: 'x', publicKey: a.wireguard.publicKey, identityKey: a.identity.publicKey,
    endpoints: ['203.0.113.66:51820'], privateAddresses: [], podCidrs: [cidr], listenPort: 51820, topology: 'mesh', gatewayEligible: false,
    overlayIp: '100.96.0.200', generation: 1, registeredAt: 1, updatedAt: 1,
  });
  const forgedNode = await fakeAgent('forged', {});
  const rotatedNode = await fakeAgent('rotated', {});
  await env.kv.put(kvKeys.node('forged'), JSON.stringify(await signEnvelope(record('forged', '10.32.9.0/24', forgedNode), mallory.secretKey)));
  await env.kv.put(kvKeys.node('rotated'), JSON.stringify(await signEnvelope(record('rotated', '10.32.8.0/24', rotatedNode), old.secretKey)));
  const revocation = { kind: 'revocation', v: 1, name: 'honest', identityKey: honest.identity.publicKey, publicKey: null, reason: 'forged', revokedAt: Date.now() };
  await env.kv.put(kvKeys.revoked('honest'), JSON.stringify(await signEnvelope(revocation, mallory.secretKey)));
  // A bucket writer takes the lease: the leader steps down, and takes over again after a TTL.
  await env.kv.put(kvKeys.lease, JSON.stringify({ holder: 'mallory', renewedAt: Date.now(), ttlMs: 3_600_000 }));
  await waitFor(() => !env.coordinator.isLeader(), { timeoutMs: 15_000, what: 'leader steps down' });
  await waitFor(() => env.coordinator.isLeader(), { timeoutMs: 30_000, what: 'leader again after the forged lease went unrenewed' });

  const forged = await env.kv.get(kvKeys.node('forged'));
  await t.throwsAsync(verifyEnvelope(forged?.json(), env.key.publicKey, NodeRecord), undefined, 'the forged record was not re-signed');
  await waitFor(async () => {
    const e = await env.kv.get(kvKeys.node('rotated'));
    return e !== null && (await verifyEnvelope(e.json(), env.key.publicKey, NodeRecord).then(() => true, () => false));
  }, { timeoutMs: 10_000, what: 'the record of the previous key re-signed with the current one' });
  t.like(await env.client.heartbeat(honest), { ok: true }, 'a foreign revocation is not enforced');
  t.true(await present(env.kv, kvKeys.node('honest')));
});

test('finding 8: per-cluster registration rate limit answers rate-limited; other clusters are not affected', async (t) => {
  const env = await setup(t, { nodeTtl: '30s', registrationBurst: '3', registrationRate: '1' });
  const flood = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => fakeAgent(`flood-${i}`, { cluster: 'noisy', podCidrs: [`10.33.${i}.0/24`] })));
  const replies = [];
  for (const a of flood) replies.push(await env.client.register(a));
  const limited = replies.filter((r) => !r.ok && r.error.code === 'rate-limited');
  t.true(limited.length >= 2, `at least 2 of 6 refused (got ${limited.length})`);
  t.regex(limited[0] && !limited[0].ok ? limited[0].error.message : '', /rate limit .*retry in \d+ ms/);
  const other = await fakeAgent('quiet-1', { cluster: 'quiet', podCidrs: ['10.34.1.0/24'] });
  t.true((await env.client.register(other)).ok, 'another cluster registers normally');
});

test('finding 8: a node that never came alive loses its name binding and address after the grace period; a live one keeps them', async (t) => {
  const env = await setup(t, { unusedAllocationGrace: '2s' });
  const ghost = await fakeAgent('ghost-1', { podCidrs: ['10.35.1.0/24'] });
  const real = await fakeAgent('real-1', { podCidrs: ['10.35.2.0/24'] });
  t.true((await env.client.register(ghost)).ok);
  t.true((await env.client.register(real)).ok);
  t.like(await env.client.heartbeat(real), { ok: true });
  await waitFor(async () => (await binding(env, real))?.aliveAt !== undefined, { timeoutMs: 10_000, what: 'real-1 recorded alive' });
  await waitFor(async () => !(await present(env.kv, kvKeys.ipam('ghost-1'))), { timeoutMs: 20_000, what: 'ghost-1 allocation reclaimed' });
  t.like(await binding(env, ghost), { releasedBy: 'never-alive' });
  await expired(env, 'real-1');
  t.true(IpamEntry.safeParse((await env.kv.get(kvKeys.ipam('real-1')))?.json()).success, 'the live node keeps its address');
  t.like(await binding(env, real), { name: 'real-1' });
  t.is((await binding(env, real))?.releasedAt, undefined);
});
