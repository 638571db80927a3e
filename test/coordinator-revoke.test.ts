// Node revocation: the pure revocation table, then against a real nats-server and a real
// Coordinator (fake agents from test/helpers/fake-agent.ts): revoke deletes the record (watchers see the
// DEL), the node's heartbeats and registrations are refused with a message naming the revocation,
// its keys are refused under any name, unrevoke lets it back, a revoked gateway is replaced at once,
// and the bin's revoke/unrevoke/revocations commands.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Kvm, type KV } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { parseCoordinatorConfig, type RawRunOptions } from '../coordinator/config.ts';
import { Coordinator } from '../coordinator/coordinator.ts';
import { IpamEntry } from '../coordinator/ipam.ts';
import { Liveness } from '../coordinator/liveness.ts';
import { Registry } from '../coordinator/registry.ts';
import { listRevocations, revokeNode, unrevokeNode } from '../coordinator/revocation-admin.ts';
import { RevocationTable, revocationError } from '../coordinator/revocations.ts';
import { StateStore } from '../coordinator/store.ts';
import { fakeAgent, signedRegistration, type AgentClient, type FakeAgent } from './helpers/fake-agent.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { NatsServer } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { NodeRecord, Revocation, type ErrorBody } from '../protocol/messages.ts';
import { generateSigningKeyPair, verifyEnvelope, type SigningKeyPair } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { present, readClusterRecord, runCoordinatorBin, startCoordinatorEnv, type CoordinatorEnv } from './helpers/coordinator-fixture.ts';
import { scratchNames, useNatsServer } from './helpers/nats-fixture.ts';
import { tempDir } from './helpers/temp-dir.ts';
import { enrollingClient, TestEnrollment } from './helpers/enrollment.ts';

const server = useNatsServer('xl-coordrevoke');

// ---- the pure table ------------------------------------------------------------------------------

const K = (n: number): string => Buffer.alloc(32, n).toString('base64');

function revocation(name: string, extra: Partial<Revocation> = {}): Revocation {
  return { kind: 'revocation', v: 1, name, identityKey: K(1), publicKey: K(2), reason: 'stolen', revokedAt: 1_700_000_000_000, ...extra };
}

const matchRows: {
  name: string;
  held: Revocation[];
  req: { name: string; identityKey: string; publicKey: string };
  registration: 'name' | 'identityKey' | 'publicKey' | undefined;
  heartbeat: 'name' | 'identityKey' | undefined;
}[] = [
  { name: 'nothing revoked', held: [], req: { name: 'a', identityKey: K(1), publicKey: K(2) }, registration: undefined, heartbeat: undefined },
  { name: 'the name, whatever the identity', held: [revocation('a')], req: { name: 'a', identityKey: K(7), publicKey: K(8) }, registration: 'name', heartbeat: 'name' },
  { name: 'a name revoked while unregistered (no keys)', held: [revocation('a', { identityKey: null, publicKey: null })], req: { name: 'a', identityKey: K(7), publicKey: K(8) }, registration: 'name', heartbeat: 'name' },
  { name: 'the identity key under another name', held: [revocation('a')], req: { name: 'b', identityKey: K(1), publicKey: K(8) }, registration: 'identityKey', heartbeat: 'identityKey' },
  { name: 'the WireGuard key under another name (heartbeats carry no WireGuard key)', held: [revocation('a')], req: { name: 'b', identityKey: K(7), publicKey: K(2) }, registration: 'publicKey', heartbeat: undefined },
  { name: 'other names and keys pass', held: [revocation('a')], req: { name: 'b', identityKey: K(7), publicKey: K(8) }, registration: undefined, heartbeat: undefined },
];

for (const row of matchRows) {
  test(`RevocationTable matches: ${row.name}`, (t) => {
    const table = new RevocationTable();
    row.held.forEach((r, i) => table.apply(r.name, r, i + 1));
    t.is(table.forRegistration(row.req)?.field, row.registration);
    t.is(table.forHeartbeat(row.req.name, row.req.identityKey)?.field, row.heartbeat);
  });
}

test('RevocationTable: changes apply in revision order, so an overlapping snapshot or a replay cannot undo a newer one', (t) => {
  const table = new RevocationTable();
  t.true(table.apply('a', revocation('a'), 10));
  t.false(table.apply('a', revocation('a'), 10), 'same revision again (watch replays the snapshot)');
  t.false(table.apply('a', null, 9), 'an older delete');
  t.truthy(table.get('a'));
  t.true(table.apply('a', null, 11));
  t.is(table.get('a'), undefined);
  t.false(table.apply('a', revocation('a'), 10), 'an older put after the delete');
  t.is(table.forRegistration({ name: 'b', identityKey: K(1), publicKey: K(2) }), undefined, 'key index follows deletes');
  t.true(table.apply('a', revocation('a', { reason: 'again' }), 12));
  t.is(table.get('a')?.reason, 'again');
  t.deepEqual(table.all().map((r) => r.name), ['a']);
});

test('revocationError: unauthorized, names what was revoked, when, why, and how to undo', (t) => {
  const e = revocationError({ revocation: revocation('node-a'), field: 'name' });
  t.is(e.code, 'unauthorized');
  t.is(e.field, 'name');
  t.regex(e.message, /node "node-a" was revoked at 2023-11-14T22:13:20\.000Z \(reason: "stolen"\).*crosslink-coordinator unrevoke node-a/);
  const k = revocationError({ revocation: revocation('node-a', { reason: '' }), field: 'publicKey' });
  t.regex(k.message, /publicKey: ".*" is the WireGuard key of node "node-a".*no reason given.*any name/);
});

// ---- against nats-server -------------------------------------------------------------------------

interface Env extends CoordinatorEnv {
  readonly store: StateStore;
}

async function setup(t: ExecutionContext, opts: Partial<RawRunOptions> = {}): Promise<Env> {
  // A long TTL: anything that happens within the test's deadlines is the revocation, not expiry.
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlrevoke', config: { nodeTtl: '60s', ...opts } });
  return { ...env, store: new StateStore(env.kv, env.key, silentLogger()) };
}

async function registered(t: ExecutionContext, client: AgentClient, a: FakeAgent): Promise<void> {
  const r = await client.register(a);
  t.true(r.ok, r.ok ? '' : r.error.message);
}

/** Waits until the leader refuses `attempt` (it applies a revocation as soon as its watch delivers it). */
function refused(attempt: () => Promise<{ ok: true } | { ok: false; error: ErrorBody }>, what: string): Promise<ErrorBody> {
  return waitFor(async () => {
    const r = await attempt();
    return r.ok ? undefined : r.error;
  }, { timeoutMs: 5000, intervalMs: 100, what });
}

test('revoke a live node: record deleted (watchers see DEL), heartbeat and re-registration refused as revoked, its keys refused under any name', async (t) => {
  const env = await setup(t);
  const a = await fakeAgent('node-a', { podCidrs: ['10.20.1.0/24'] });
  await registered(t, env.client, a);
  t.like(await env.client.heartbeat(a), { ok: true });

  const result = await revokeNode({ store: env.store, clock: systemClock }, 'node-a', 'laptop stolen');
  t.like(result.revocation, { name: 'node-a', identityKey: a.identity.publicKey, publicKey: a.wireguard.publicKey, reason: 'laptop stolen' });
  t.is(result.removed?.name, 'node-a');
  t.is(result.previous, null);

  await waitFor(() => env.events.some((e) => e.key === kvKeys.node('node-a') && e.op === 'DEL'), { timeoutMs: 5000, what: 'DEL of nodes.node-a' });
  t.false(await present(env.kv, kvKeys.node('node-a')));

  // The entry is coordinator-signed.
  const entry = await env.kv.get(kvKeys.revoked('node-a'));
  const signed = await verifyEnvelope(entry?.value, env.key.publicKey, Revocation);
  t.deepEqual(signed, result.revocation);

  // Heartbeat: unauthorized (not unknown-node, which would make the agent re-register in a loop).
  const hb = await refused(() => env.client.heartbeat(a), 'heartbeat refused');
  t.is(hb.code, 'unauthorized');
  t.regex(hb.message, /node "node-a" was revoked at .*reason: "laptop stolen".*crosslink-coordinator unrevoke node-a/);

  const reg = await env.client.register(a);
  t.like(reg, { ok: false, error: { code: 'unauthorized', field: 'name' } });
  if (!reg.ok) t.regex(reg.error.message, /revoked at .*laptop stolen.*unrevoke node-a/);
  t.false(await present(env.kv, kvKeys.node('node-a')), 'nothing stored for the refused registration');

  // A new identity under the revoked name: refused too (the name is blocked until unrevoked).
  const newcomer = await fakeAgent('node-a', { podCidrs: ['10.20.2.0/24'] });
  t.like(await env.client.register(newcomer), { ok: false, error: { code: 'unauthorized', field: 'name' } });

  // The stolen WireGuard key under another name, and the stolen identity under another name.
  const thief = await fakeAgent('node-z', { podCidrs: ['10.20.3.0/24'] });
  const wg = await env.client.register(thief, { publicKey: a.wireguard.publicKey });
  t.like(wg, { ok: false, error: { code: 'unauthorized', field: 'publicKey' } });
  if (!wg.ok) t.regex(wg.error.message, /WireGuard key of node "node-a"/);
  t.like(await env.client.register(a, { name: 'node-y', publicKey: thief.wireguard.publicKey }), { ok: false, error: { code: 'unauthorized', field: 'identityKey' } });
  // An innocent node still registers.
  await registered(t, env.client, thief);

  // The ipam entry was released (the address may go to another node once the pool is full).
  await waitFor(async () => IpamEntry.parse((await env.kv.get(kvKeys.ipam('node-a')))?.json()).releasedAt !== undefined, {
    timeoutMs: 5000,
    what: 'ipam entry of node-a released',
  });
});

test('unrevoke: the node may register again (same overlay IP); unrevoking an unrevoked node is an error', async (t) => {
  const env = await setup(t);
  const a = await fakeAgent('node-a');
  const first = await env.client.register(a);
  if (!first.ok) {
    t.fail(first.error.message);
    return;
  }
  await revokeNode({ store: env.store, clock: systemClock }, 'node-a', undefined);
  await refused(() => env.client.register(a), 'registration refused after revoke');

  const lifted = await unrevokeNode({ store: env.store }, 'node-a');
  t.is(lifted.reason, '');
  t.false(await present(env.kv, kvKeys.revoked('node-a')));
  const back = await waitFor(async () => {
    const r = await env.client.register(a);
    return r.ok ? r : undefined;
  }, { timeoutMs: 5000, intervalMs: 100, what: 'registration after unrevoke' });
  const [was, now] = await Promise.all([first.record, back.record].map((r) => verifyEnvelope(r, env.key.publicKey, NodeRecord)));
  t.is(now?.overlayIp, was?.overlayIp);
  t.true((now?.generation ?? 0) > (was?.generation ?? 0));
  t.like(await env.client.heartbeat(a), { ok: true });

  await t.throwsAsync(unrevokeNode({ store: env.store }, 'node-a'), { name: 'RevocationAdminError', message: /not revoked/ });
});

test('revoking a name that is not registered blocks the name for any identity', async (t) => {
  const env = await setup(t);
  const r = await revokeNode({ store: env.store, clock: systemClock }, 'ghost', 'decommissioned');
  t.like(r, { removed: null, revocation: { identityKey: null, publicKey: null } });
  const g = await fakeAgent('ghost');
  const err = await refused(() => env.client.register(g), 'registration of ghost refused');
  t.like(err, { code: 'unauthorized', field: 'name' });

  // Repeating revoke keeps the original time; a new reason replaces the old one.
  const again = await revokeNode({ store: env.store, clock: { now: () => r.revocation.revokedAt + 5000, sleep: (ms, signal) => systemClock.sleep(ms, signal) } }, 'ghost', 'scrapped');
  t.is(again.revocation.revokedAt, r.revocation.revokedAt);
  t.is(again.revocation.reason, 'scrapped');
  t.is(again.previous?.reason, 'decommissioned');
  t.deepEqual((await listRevocations({ store: env.store })).map((x) => [x.value.name, x.signedByUs]), [['ghost', true]]);
});

test('revoking the active gateway: another node becomes gateway at once (epoch + 1), long before any TTL', async (t) => {
  const env = await setup(t);
  const base = { cluster: 'edge', topology: 'gateway' as const, gatewayEligible: true };
  const gw = await fakeAgent('a-gw', { ...base, endpoints: ['203.0.113.1:51820'], podCidrs: ['10.40.1.0/24'] });
  const standby = await fakeAgent('b-standby', { ...base, endpoints: ['203.0.113.2:51820'], podCidrs: ['10.40.2.0/24'] });
  await registered(t, env.client, gw);
  await registered(t, env.client, standby);
  const before = await waitFor(async () => {
    const c = await readClusterRecord(env.kv, env.key, 'edge');
    return c?.gateway === 'a-gw' ? c : undefined;
  }, { timeoutMs: 5000, what: 'a-gw as gateway' });

  await revokeNode({ store: env.store, clock: systemClock }, 'a-gw', 'compromised');
  // The node TTL is 60 s: a change within 5 s is the revocation.
  const after = await waitFor(async () => {
    const c = await readClusterRecord(env.kv, env.key, 'edge');
    return c?.gateway === 'b-standby' ? c : undefined;
  }, { timeoutMs: 5000, what: 'b-standby as gateway' });
  t.is(after.gatewayEpoch, before.gatewayEpoch + 1);
  t.true(after.generation > before.generation);
});

test('a revocation whose record was left behind (interrupted revoke) is enforced by the leader: live, and at start-up', async (t) => {
  const env = await setup(t);
  const a = await fakeAgent('node-a', { podCidrs: ['10.50.1.0/24'] });
  const b = await fakeAgent('node-b', { podCidrs: ['10.50.2.0/24'] });
  await registered(t, env.client, a);
  await registered(t, env.client, b);

  // Only the revocation is written (as if the command died before deleting the record).
  await env.store.putRevocation(revocation('node-a', { identityKey: a.identity.publicKey, publicKey: a.wireguard.publicKey, revokedAt: Date.now() }), undefined);
  await waitFor(async () => !(await present(env.kv, kvKeys.node('node-a'))), { timeoutMs: 5000, what: 'the leader deleting nodes.node-a' });

  // With no coordinator running: revoke node-b by writing the entry alone, then start a leader.
  await env.coordinator.stop();
  await env.store.putRevocation(revocation('node-b', { identityKey: b.identity.publicKey, publicKey: b.wireguard.publicKey, revokedAt: Date.now() }), undefined);
  t.true(await present(env.kv, kvKeys.node('node-b')));
  const cnc = await connect({ servers: server().url });
  t.teardown(() => cnc.close());
  const config = parseCoordinatorConfig({ bucket: env.bucket, subjectPrefix: env.prefix, nodeTtl: '60s', leaseTtl: '5s' });
  const next = await Coordinator.start({ nc: cnc, clock: systemClock, logger: silentLogger(), config, signingKey: env.key });
  t.teardown(() => next.stop());
  await waitFor(() => next.isLeader(), { timeoutMs: 10_000, what: 'the second coordinator leading' });
  await waitFor(async () => !(await present(env.kv, kvKeys.node('node-b'))), { timeoutMs: 5000, what: 'nodes.node-b deleted at load' });
  t.pass();
});

test('revocations keep being followed across a NATS restart (the watch is re-created)', async (t) => {
  // Its own server: restarting the shared one would disturb the other tests of this file.
  const own = await NatsServer.start({ name: `xl-coordrevoke-r-${randomBytes(3).toString('hex')}` });
  t.teardown(() => own.stop());
  const { id, bucket, prefix } = scratchNames('xlrevoke');
  const key = await generateSigningKeyPair();
  const reconnecting = { servers: own.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 };
  const cnc = await connect({ ...reconnecting, name: `xl-coord-${id}` });
  const nc = await connect({ ...reconnecting, name: `xl-test-${id}` });
  // The fake agents here sign no epoch (as in test/helpers/coordinator-fixture.ts).
  const config = parseCoordinatorConfig({ bucket, subjectPrefix: prefix, nodeTtl: '60s', leaseTtl: '5s' });
  const coordinator = await Coordinator.start({ nc: cnc, clock: systemClock, logger: silentLogger(), config, signingKey: key });
  t.teardown(async () => {
    await coordinator.stop();
    await cnc.close();
    await nc.close();
  });
  await waitFor(() => coordinator.isLeader(), { timeoutMs: 10_000, what: 'leadership' });
  const client = await enrollingClient(nc, prefix, bucket, key, 2000);
  const store = new StateStore(await new Kvm(nc).open(bucket), key, silentLogger());
  const a = await fakeAgent('node-a', { podCidrs: ['10.60.1.0/24'] });
  const b = await fakeAgent('node-b', { podCidrs: ['10.60.2.0/24'] });
  await registered(t, client, a);
  await registered(t, client, b);
  await revokeNode({ store, clock: systemClock }, 'node-a', 'before the restart');
  await refused(() => client.heartbeat(a), 'node-a refused before the restart');

  await own.restart();
  await waitFor(async () => (await client.heartbeat(b)).ok, { timeoutMs: 30_000, intervalMs: 250, what: 'heartbeats served after the restart' });

  // Changes made after the restart reach the leader.
  await revokeNode({ store, clock: systemClock }, 'node-b', 'after the restart');
  const err = await refused(() => client.heartbeat(b), 'node-b refused after the restart');
  t.regex(err.message, /after the restart/);
  await unrevokeNode({ store }, 'node-a');
  await waitFor(async () => (await client.register(a)).ok, { timeoutMs: 10_000, intervalMs: 100, what: 'node-a registering after its unrevoke' });
  t.pass();
});

/** A store whose first delete of `nodes.<name>` finds the record already deleted by someone else
 *  (the revoke command winning the race): the leader's conditional delete then fails by CAS. */
class RacingStore extends StateStore {
  raced = false;
  constructor(
    kv: KV,
    key: SigningKeyPair,
    private readonly node: string,
  ) {
    super(kv, key, silentLogger());
  }
  override async delete(key: string, revision: number): Promise<void> {
    if (!this.raced && key === kvKeys.node(this.node)) {
      this.raced = true;
      await this.kv.delete(key);
    }
    await super.delete(key, revision);
  }
}

test('the leader losing the delete race to the revoke command still releases the node and replaces it as gateway', async (t) => {
  const { id, bucket } = scratchNames('xlrevoke');
  const nc = await connect({ servers: server().url, name: `xl-test-${id}` });
  t.teardown(() => nc.close());
  const key = await generateSigningKeyPair();
  const kv = await new Kvm(nc).create(bucket, { history: 1 });
  const store = new RacingStore(kv, key, 'a-gw');
  const config = parseCoordinatorConfig({ bucket, nodeTtl: '60s' });
  const registry = await Registry.load({ store, clock: systemClock, logger: silentLogger(), config, liveness: new Liveness(), holdsLease: () => true });
  t.teardown(() => registry.end());
  const base = { cluster: 'edge', topology: 'gateway' as const, gatewayEligible: true };
  const gw = await fakeAgent('a-gw', { ...base, endpoints: ['203.0.113.1:51820'], podCidrs: ['10.70.1.0/24'] });
  const standby = await fakeAgent('b-standby', { ...base, podCidrs: ['10.70.2.0/24'] });
  const enrollment = new TestEnrollment(kv, key);
  for (const a of [gw, standby]) {
    const req = a.request();
    const r = await registry.register(Buffer.from(await signedRegistration(req, a.identity.secretKey, await enrollment.credentialFor(req))));
    t.true(r.ok, r.ok ? '' : r.error.message);
  }
  const before = await readClusterRecord(kv, key, 'edge');
  t.is(before?.gateway, 'a-gw');

  const stored = await store.putRevocation(revocation('a-gw', { identityKey: gw.identity.publicKey, publicKey: gw.wireguard.publicKey }), undefined);
  await registry.applyRevocation('a-gw', stored, stored.revision);
  t.true(store.raced, 'the race happened');
  t.deepEqual(registry.liveNodeNames(), ['b-standby']);
  t.like(await readClusterRecord(kv, key, 'edge'), { gateway: 'b-standby', gatewayEpoch: (before?.gatewayEpoch ?? 0) + 1 });
  t.not(IpamEntry.parse((await kv.get(kvKeys.ipam('a-gw')))?.json()).releasedAt, undefined);
  t.like(registry.heartbeat({ v: 1, name: 'a-gw', identityKey: gw.identity.publicKey, generation: 1, sentAt: Date.now() }), { ok: false, error: { code: 'unauthorized' } });
});

/** A store in which "the leader" deletes the node's record right after the revoke command wrote its
 *  revocation (the leader winning the race): the command's own conditional delete then conflicts. */
class LeaderFirstStore extends StateStore {
  override async putRevocation(revocation: Revocation, revision: number | undefined): ReturnType<StateStore['putRevocation']> {
    const stored = await super.putRevocation(revocation, revision);
    await this.kv.delete(kvKeys.node(revocation.name));
    return stored;
  }
}

test('revoke command losing the delete race to the leader still reports a first revocation', async (t) => {
  const { id, bucket } = scratchNames('xlrevrace');
  const nc = await connect({ servers: server().url, name: `xl-test-${id}` });
  t.teardown(() => nc.close());
  const key = await generateSigningKeyPair();
  const kv = await new Kvm(nc).create(bucket, { history: 1 });
  const store = new LeaderFirstStore(kv, key, silentLogger());
  const config = parseCoordinatorConfig({ bucket, nodeTtl: '60s' });
  const registry = await Registry.load({ store, clock: systemClock, logger: silentLogger(), config, liveness: new Liveness(), holdsLease: () => true });
  t.teardown(() => registry.end());
  const a = await fakeAgent('node-a', { podCidrs: ['10.71.1.0/24'] });
  const req = a.request();
  const r = await registry.register(Buffer.from(await signedRegistration(req, a.identity.secretKey, await new TestEnrollment(kv, key).credentialFor(req))));
  t.true(r.ok, r.ok ? '' : r.error.message);

  const result = await revokeNode({ store, clock: systemClock }, 'node-a', 'lost laptop');
  t.is(result.previous, null, 'our own revocation, read back on the retry, is not "already revoked"');
  t.is(result.removed?.name, 'node-a');
  t.is(result.revocation.identityKey, a.identity.publicKey);
  t.false(await present(kv, kvKeys.node('node-a')));
});

// ---- the bin -------------------------------------------------------------------------------------

test('bin: revoke, revocations (table and --json), unrevoke, against the coordinator', async (t) => {
  const env = await setup(t);
  const dir = await tempDir(t, 'xl-coordrevoke-');
  const keyFile = join(dir, 'coordinator.key');
  await writeFile(keyFile, JSON.stringify({ publicKey: env.key.publicKey, secretKey: env.key.secretKey }), { mode: 0o600 });
  const flags = ['--nats-url', server().url, '--bucket', env.bucket];
  const envVars = { CROSSLINK_SIGNING_KEY_FILE: keyFile };

  const a = await fakeAgent('node-a');
  await registered(t, env.client, a);

  const revoked = await runCoordinatorBin(['revoke', 'node-a', '--reason', 'disk stolen', ...flags], envVars);
  t.is(revoked.code, 0, revoked.stderr);
  t.regex(revoked.stdout, /revoked node "node-a" at .*reason: "disk stolen"/);
  t.true(revoked.stdout.includes(a.identity.publicKey) && revoked.stdout.includes(a.wireguard.publicKey));
  t.regex(revoked.stdout, /removed nodes\.node-a \(cluster c1, overlay IP 100\.96\.0\.1\)/);
  t.regex(revoked.stdout, /crosslink-coordinator unrevoke node-a/);
  t.false(await present(env.kv, kvKeys.node('node-a')));
  const err = await refused(() => env.client.heartbeat(a), 'heartbeat refused after the bin revoked');
  t.like(err, { code: 'unauthorized', field: 'name' });

  const table = await runCoordinatorBin(['revocations', ...flags], envVars);
  t.is(table.code, 0, table.stderr);
  t.regex(table.stdout, /^NAME\s+REVOKED AT\s+IDENTITY KEY\s+WIREGUARD KEY\s+REASON\nnode-a\s+\S+Z\s+\S+\s+\S+\s+disk stolen\n$/);
  const json = await runCoordinatorBin(['revocations', '--json', ...flags], envVars);
  t.is(json.code, 0, json.stderr);
  t.like(JSON.parse(json.stdout), [{ name: 'node-a', identityKey: a.identity.publicKey, reason: 'disk stolen', signedByCoordinatorKey: true }]);

  const lifted = await runCoordinatorBin(['unrevoke', 'node-a', ...flags], envVars);
  t.is(lifted.code, 0, lifted.stderr);
  t.regex(lifted.stdout, /lifted the revocation of node "node-a".*may register again/);
  await waitFor(async () => (await env.client.register(a)).ok, { timeoutMs: 5000, intervalMs: 100, what: 'registration after the bin unrevoked' });

  const again = await runCoordinatorBin(['unrevoke', 'node-a', ...flags], envVars);
  t.is(again.code, 1);
  t.regex(again.stderr, /node "node-a" is not revoked/);
  const none = await runCoordinatorBin(['revocations', ...flags], envVars);
  t.is(none.stdout, 'no nodes are revoked\n');

  // Usage errors exit 2 naming the problem; a missing key file is never created by revoke.
  const bad = await runCoordinatorBin(['revoke', 'Node_A', ...flags], envVars);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /node: "Node_A" is not valid/);
  const noKey = await runCoordinatorBin(['revoke', 'node-a', ...flags], { CROSSLINK_SIGNING_KEY_FILE: join(dir, 'missing.key') });
  t.is(noKey.code, 2);
  t.regex(noKey.stderr, /missing\.key.*does not exist/);
});
