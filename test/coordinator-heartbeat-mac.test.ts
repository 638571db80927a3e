// MAC heartbeats (protocol/heartbeat-mac.ts) against a real nats-server and real coordinators on
// 127.0.0.1: answered ok and recorded as the node's sign of life; forged ones (another node's K, a
// flipped byte, a MAC for another coordinator key) refused naming the field and recorded by neither
// the leader nor a follower; a replayed one refused by the replay marks; a revoked node's refused
// as revoked; /metrics counts the fresh heartbeats by form (mac, signed), forgeries and replays in
// neither. The adversary holding only an agent's NATS user: a flood of MAC heartbeats under fresh key
// pairs (valid MACs, more keys than the coordinator keeps) pushes no node's K out — on the leader
// and on a follower, the nodes' next heartbeats need no new key agreement.
import test, { type ExecutionContext } from 'ava';
import { CoordinatorMetrics } from '../coordinator/metrics.ts';
import { revokeNode } from '../coordinator/revocation-admin.ts';
import { StateStore } from '../coordinator/store.ts';
import { agentClient, fakeAgent, rpc, type FakeAgent } from './helpers/fake-agent.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { heartbeatBody, macEnvelope, nodeHeartbeatMacKey, type HeartbeatMac } from '../protocol/heartbeat-mac.ts';
import { HeartbeatReply, type Heartbeat } from '../protocol/messages.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';
import { subjects } from '../protocol/subjects.ts';
import { startCoordinatorEnv, type CoordinatorEnv, type CoordinatorEnvOptions } from './helpers/coordinator-fixture.ts';
import { flood, startFollower } from './helpers/heartbeat-flood.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';
import { checkMetrics } from './helpers/promtool.ts';

const server = useNatsServer('xl-hbmac');

/** A client whose agents send MAC heartbeats, K agreed with the fixture coordinator's key at registration. */
const macClient = (env: CoordinatorEnv): ReturnType<typeof agentClient> =>
  agentClient(env.nc, env.prefix, { credentialFor: env.enrollment.credentialFor, heartbeatMac: env.key.publicKey });

const hbOf = (a: FakeAgent, o: Partial<Heartbeat> = {}): Heartbeat => ({
  v: 1,
  name: a.name,
  identityKey: a.identity.publicKey,
  generation: 0,
  sentAt: a.nextSentAt(),
  ...(a.epoch === undefined ? {} : { epoch: a.epoch }),
  ...o,
});
const macOf = (a: FakeAgent, coordinatorKey: string): HeartbeatMac => ({ coordinatorKey, key: nodeHeartbeatMacKey(a.identity, coordinatorKey) });

/** The three forgeries of node `b`'s heartbeat by someone holding node `a`'s credential (or an old coordinator key). */
async function forgeries(env: CoordinatorEnv, a: FakeAgent, b: FakeAgent): Promise<{ what: string; body: string; field: string }[]> {
  const rotated = await generateSigningKeyPair();
  const valid = macEnvelope(hbOf(b), macOf(b, env.key.publicKey));
  const flipped = Buffer.from(valid.mac, 'base64');
  flipped[0] = (flipped[0] ?? 0) ^ 1;
  return [
    { what: "node a's K over node b's heartbeat", body: heartbeatBody(hbOf(b), a.identity, macOf(a, env.key.publicKey)), field: 'mac' },
    { what: 'a flipped MAC byte', body: JSON.stringify({ ...valid, mac: flipped.toString('base64') }), field: 'mac' },
    { what: 'a MAC for another coordinator key', body: heartbeatBody(hbOf(b), b.identity, macOf(b, rotated.publicKey)), field: 'coordinatorKey' },
  ];
}

/** One series' value in a scrape, e.g. `crosslink_coordinator_heartbeat_forms_total{form="mac"}` (undefined: none). */
async function seriesValue(metrics: CoordinatorMetrics, series: string): Promise<number | undefined> {
  const line = (await metrics.render()).body.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

/** A leader on a manual clock (skew allowance 1 h) and two agents registered through a MAC-heartbeating client. */
async function leaderWithTwo(t: ExecutionContext, bucketTag: string, metrics?: CoordinatorMetrics, macKeyBounds?: CoordinatorEnvOptions['macKeyBounds']): Promise<{ clock: ManualClock; env: CoordinatorEnv; s: ReturnType<typeof subjects>; a: FakeAgent; b: FakeAgent }> {
  const clock = new ManualClock(Date.now());
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag, config: { nodeTtl: '60s', leaseTtl: '1m', maxClockSkew: '1h' }, clock, ...(metrics ? { metrics } : {}), ...(macKeyBounds ? { macKeyBounds } : {}) });
  const client = macClient(env);
  const a = await fakeAgent('node-a', { podCidrs: ['10.20.1.0/24'] });
  const b = await fakeAgent('node-b', { podCidrs: ['10.20.2.0/24'] });
  t.true((await client.register(a)).ok);
  t.true((await client.register(b)).ok);
  return { clock, env, s: subjects(env.prefix), a, b };
}

test('leader: a MAC heartbeat is answered ok and keeps the node alive; forgeries are refused and keep nobody alive; a replay is refused by the marks', async (t) => {
  const { clock, env, s, a, b } = await leaderWithTwo(t, 'xlhbmac');
  const registeredAt = env.coordinator.lastHeardAt('node-b');
  clock.advance(5000);

  t.deepEqual(await rpc(env.nc, s.heartbeat, heartbeatBody(hbOf(a), a.identity, macOf(a, env.key.publicKey)), HeartbeatReply), { ok: true, epoch: a.epoch });
  t.is(env.coordinator.lastHeardAt('node-a'), clock.now(), 'the MAC heartbeat is node-a\'s sign of life');

  for (const f of await forgeries(env, a, b)) {
    const r = await rpc(env.nc, s.heartbeat, f.body, HeartbeatReply);
    t.like(r, { ok: false, error: { code: 'unauthorized', field: f.field } }, f.what);
  }
  t.is(env.coordinator.lastHeardAt('node-b'), registeredAt, 'no forgery counted as node-b\'s sign of life');

  const honest = heartbeatBody(hbOf(b), b.identity, macOf(b, env.key.publicKey));
  t.like(await rpc(env.nc, s.heartbeat, honest, HeartbeatReply), { ok: true });
  t.is(env.coordinator.lastHeardAt('node-b'), clock.now());
  clock.advance(1000);
  t.like(await rpc(env.nc, s.heartbeat, honest, HeartbeatReply), { ok: false, error: { code: 'stale', field: 'sentAt' } }, 'the captured MAC heartbeat replayed');
  t.is(env.coordinator.lastHeardAt('node-b'), clock.now() - 1000, 'the replay kept nobody alive');
  // The signed form is still taken (older agents, and the fallback).
  t.like(await rpc(env.nc, s.heartbeat, heartbeatBody(hbOf(b), b.identity, undefined), HeartbeatReply), { ok: true });
  t.is(env.coordinator.lastHeardAt('node-b'), clock.now());
});

test('follower: records a MAC heartbeat as a sign of life, and none of the forgeries', async (t) => {
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlhbmacf', config: { nodeTtl: '60s', leaseTtl: '30s' } });
  const s = subjects(env.prefix);
  const f = await startFollower(t, env, server().url);
  const follower = f.coordinator;
  const client = macClient(env);
  const a = await fakeAgent('node-a', { podCidrs: ['10.20.1.0/24'] });
  const b = await fakeAgent('node-b', { podCidrs: ['10.20.2.0/24'] });
  t.true((await client.register(a)).ok);
  t.true((await client.register(b)).ok);
  // Once the follower's presence probe knows the leader's epoch, it records node-a's MAC heartbeats.
  await waitFor(async () => {
    await rpc(env.nc, s.heartbeat, heartbeatBody(hbOf(a), a.identity, macOf(a, env.key.publicKey)), HeartbeatReply);
    return follower.lastHeardAt('node-a') !== undefined;
  }, { timeoutMs: 10_000, intervalMs: 100, what: 'the follower recording node-a\'s MAC heartbeat' });

  /** Sends `body` and waits until the follower has handled it (its heartbeat counter moved). */
  const send = async (body: string): Promise<HeartbeatReply> => {
    const before = f.heard.heartbeats;
    const r = await rpc(env.nc, s.heartbeat, body, HeartbeatReply);
    await waitFor(() => f.heard.heartbeats > before, { timeoutMs: 5000, intervalMs: 5, what: 'the follower handling the heartbeat' });
    return r;
  };
  for (const f of await forgeries(env, a, b)) t.like(await send(f.body), { ok: false, error: { code: 'unauthorized', field: f.field } }, f.what);
  t.is(follower.lastHeardAt('node-b'), undefined, 'the follower recorded no forgery');
  t.like(await send(heartbeatBody(hbOf(b), b.identity, macOf(b, env.key.publicKey))), { ok: true });
  t.not(follower.lastHeardAt('node-b'), undefined, 'the honest MAC heartbeat is recorded (the check above could fail)');
});

test('a revoked node\'s MAC heartbeat is refused as revoked (and the client does not fall back: a revocation is final)', async (t) => {
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlhbmacr', config: { nodeTtl: '60s' } });
  const client = macClient(env);
  const a = await fakeAgent('node-a', { podCidrs: ['10.20.1.0/24'] });
  t.true((await client.register(a)).ok);
  t.like(await client.heartbeat(a), { ok: true });
  await revokeNode({ store: new StateStore(env.kv, env.key, silentLogger()), clock: systemClock }, 'node-a', 'laptop stolen');
  const s = subjects(env.prefix);
  const error = await waitFor(async () => {
    const r = await rpc(env.nc, s.heartbeat, heartbeatBody(hbOf(a), a.identity, macOf(a, env.key.publicKey)), HeartbeatReply);
    return r.ok ? undefined : r.error;
  }, { timeoutMs: 5000, intervalMs: 100, what: 'the MAC heartbeat refused after the revocation' });
  t.like(error, { code: 'unauthorized', revoked: true });
  t.regex(error.message, /revoked/);
  t.like(await client.heartbeat(a), { ok: false, error: { code: 'unauthorized', revoked: true } });
  t.not(a.heartbeatMac.current, undefined, 'still MAC heartbeats: a revocation is no reason to fall back to signing');
});

test('a node whose MAC key was agreed with a previous coordinator key is refused once naming both keys, then heartbeats signed (as the agent does)', async (t) => {
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlhbmack', config: { nodeTtl: '60s' } });
  const previous = await generateSigningKeyPair();
  const s = subjects(env.prefix);
  // The client agrees K with the previous key (an agent registered before the rotation).
  const client = agentClient(env.nc, env.prefix, { credentialFor: env.enrollment.credentialFor, heartbeatMac: previous.publicKey });
  const a = await fakeAgent('node-a', { podCidrs: ['10.20.1.0/24'] });
  t.true((await client.register(a)).ok);
  const refused = await rpc(env.nc, s.heartbeat, heartbeatBody(hbOf(a), a.identity, macOf(a, previous.publicKey)), HeartbeatReply);
  if (refused.ok) return t.fail('a MAC for the previous key was accepted');
  t.like(refused.error, { code: 'unauthorized', field: 'coordinatorKey' });
  t.true(refused.error.message.includes(previous.publicKey) && refused.error.message.includes(env.key.publicKey));
  t.like(await client.heartbeat(a), { ok: true }, 'refused, then sent signed at once');
  t.is(a.heartbeatMac.current, undefined, 'signed until the next registration');
  t.like(await client.heartbeat(a), { ok: true });
  t.true((await macClient(env).register(a)).ok);
  t.not(a.heartbeatMac.current, undefined, 'registered again: MACs with the current key');
  t.is(a.heartbeatMac.current?.coordinatorKey, env.key.publicKey);
  t.like(await client.heartbeat(a), { ok: true });
  t.not(a.heartbeatMac.current, undefined, 'the MAC heartbeat was taken: no fallback');
});

test('metrics: fresh heartbeats counted by form — mac and signed each as sent; forgeries, replays and stale ones in neither; promtool accepts the scrape', async (t) => {
  const metrics = new CoordinatorMetrics({ processMetrics: false });
  t.teardown(() => metrics.stop());
  const { clock, env, s, a, b } = await leaderWithTwo(t, 'xlhbform', metrics);
  const forms = async (): Promise<{ mac: number | undefined; signed: number | undefined }> => ({
    mac: await seriesValue(metrics, 'crosslink_coordinator_heartbeat_forms_total{form="mac"}'),
    signed: await seriesValue(metrics, 'crosslink_coordinator_heartbeat_forms_total{form="signed"}'),
  });
  const before = await forms();
  t.deepEqual(before, { mac: 0, signed: 0 }, 'both series from the start');

  for (let i = 0; i < 3; i++) t.like(await rpc(env.nc, s.heartbeat, heartbeatBody(hbOf(a), a.identity, macOf(a, env.key.publicKey)), HeartbeatReply), { ok: true });
  for (let i = 0; i < 2; i++) t.like(await rpc(env.nc, s.heartbeat, heartbeatBody(hbOf(b), b.identity, undefined), HeartbeatReply), { ok: true });
  for (const f of await forgeries(env, a, b)) t.like(await rpc(env.nc, s.heartbeat, f.body, HeartbeatReply), { ok: false }, f.what);
  t.deepEqual(await forms(), { mac: 3, signed: 2 });

  // Authentic but not fresh: a captured MAC heartbeat and a captured signed one replayed, and a MAC
  // heartbeat from outside the clock-skew window. Their MAC or signature holds; they are refused and
  // are no heartbeat of their form.
  const captured = heartbeatBody(hbOf(a), a.identity, macOf(a, env.key.publicKey));
  const capturedSigned = heartbeatBody(hbOf(b), b.identity, undefined);
  t.like(await rpc(env.nc, s.heartbeat, captured, HeartbeatReply), { ok: true });
  t.like(await rpc(env.nc, s.heartbeat, capturedSigned, HeartbeatReply), { ok: true });
  t.deepEqual(await forms(), { mac: 4, signed: 3 });
  clock.advance(1000);
  t.like(await rpc(env.nc, s.heartbeat, captured, HeartbeatReply), { ok: false, error: { code: 'stale', field: 'sentAt' } }, 'the MAC heartbeat replayed');
  t.like(await rpc(env.nc, s.heartbeat, capturedSigned, HeartbeatReply), { ok: false, error: { code: 'stale', field: 'sentAt' } }, 'the signed heartbeat replayed');
  const early = heartbeatBody(hbOf(a, { sentAt: clock.now() - 2 * 3_600_000 }), a.identity, macOf(a, env.key.publicKey));
  t.like(await rpc(env.nc, s.heartbeat, early, HeartbeatReply), { ok: false, error: { code: 'stale', field: 'sentAt' } }, 'outside the skew window');
  t.deepEqual(await forms(), { mac: 4, signed: 3 }, 'the replays and the stale heartbeat moved neither form');
  const lint = await checkMetrics((await metrics.render()).body);
  t.is(lint.code, 0, lint.output);
  t.is(lint.output.trim(), '', 'no lint findings');
});

test('leader: a flood of MAC heartbeats under fresh key pairs (more than it keeps) pushes no node\'s K out; the nodes\' next heartbeats need no key agreement', async (t) => {
  const metrics = new CoordinatorMetrics({ processMetrics: false });
  t.teardown(() => metrics.stop());
  const { clock, env, s, a, b } = await leaderWithTwo(t, 'xlhbflood', metrics, { max: 4, unknownMax: 4 });
  const agreed = async (): Promise<{ node: number | undefined; unknown: number | undefined }> => ({
    node: await seriesValue(metrics, 'crosslink_coordinator_heartbeat_mac_agreements_total{key="node"}'),
    unknown: await seriesValue(metrics, 'crosslink_coordinator_heartbeat_mac_agreements_total{key="unknown"}'),
  });
  t.deepEqual(await agreed(), { node: 0, unknown: 0 }, 'both series from the start');
  const heartbeat = async (n: FakeAgent): Promise<HeartbeatReply> => rpc(env.nc, s.heartbeat, heartbeatBody(hbOf(n), n.identity, macOf(n, env.key.publicKey)), HeartbeatReply);
  t.like(await heartbeat(a), { ok: true });
  t.like(await heartbeat(b), { ok: true });
  t.like(await heartbeat(a), { ok: true });
  t.deepEqual(await agreed(), { node: 2, unknown: 0 }, 'one agreement per node, on its first MAC heartbeat');

  clock.advance(1000);
  const replies = await flood(env, 12, clock.now(), a.epoch);
  // Every flooded MAC held (the refusal is the registry's, not field mac): each cost one agreement.
  for (const [i, r] of replies.entries()) {
    t.like(r, i % 2 === 0 ? { ok: false, error: { code: 'unknown-node' } } : { ok: false, error: { code: 'unauthorized', field: 'identityKey' } }, `flooded heartbeat ${i}`);
  }
  t.deepEqual(await agreed(), { node: 2, unknown: 12 }, 'the flood shows as unknown agreements');

  t.like(await heartbeat(a), { ok: true });
  t.like(await heartbeat(b), { ok: true });
  t.deepEqual(await agreed(), { node: 2, unknown: 12 }, 'the nodes\' K were still kept: no agreement for their next heartbeats');
});

test('follower: a flood of MAC heartbeats under fresh key pairs pushes no node\'s K out of a follower either (it knows nodes by its warm copy of the bucket)', async (t) => {
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlhbfloodf', config: { nodeTtl: '60s', leaseTtl: '30s' } });
  const s = subjects(env.prefix);
  const f = await startFollower(t, env, server().url, { macKeyBounds: { max: 4, unknownMax: 4 } });
  const client = macClient(env);
  const a = await fakeAgent('node-a', { podCidrs: ['10.20.1.0/24'] });
  const b = await fakeAgent('node-b', { podCidrs: ['10.20.2.0/24'] });
  t.true((await client.register(a)).ok);
  t.true((await client.register(b)).ok);
  await waitFor(() => f.coordinator.identityKeyOf('node-a') === a.identity.publicKey && f.coordinator.identityKeyOf('node-b') === b.identity.publicKey, {
    timeoutMs: 10_000,
    intervalMs: 20,
    what: "the follower's warm copy holding both nodes",
  });
  /** Sends `body` and waits until the follower has handled it. */
  const send = async (body: string): Promise<HeartbeatReply> => {
    const before = f.heard.heartbeats;
    const r = await rpc(env.nc, s.heartbeat, body, HeartbeatReply);
    await waitFor(() => f.heard.heartbeats > before, { timeoutMs: 5000, intervalMs: 5, what: 'the follower handling the heartbeat' });
    return r;
  };
  const heartbeat = (n: FakeAgent): Promise<HeartbeatReply> => send(heartbeatBody(hbOf(n), n.identity, macOf(n, env.key.publicKey)));
  t.like(await heartbeat(a), { ok: true });
  t.like(await heartbeat(b), { ok: true });
  t.deepEqual(f.heard.agreed, { node: 2, unknown: 0 });

  const before = f.heard.heartbeats;
  await flood(env, 12, Date.now(), a.epoch);
  await waitFor(() => f.heard.heartbeats >= before + 12, { timeoutMs: 5000, intervalMs: 5, what: 'the follower handling the flood' });
  t.deepEqual(f.heard.agreed, { node: 2, unknown: 12 }, 'each made-up key cost the follower one agreement');

  t.like(await heartbeat(a), { ok: true });
  t.like(await heartbeat(b), { ok: true });
  t.deepEqual(f.heard.agreed, { node: 2, unknown: 12 }, 'the nodes\' K were still kept by the follower');
});
