// High availability against real nats-servers: two coordinator replicas with a leader lease
// (failover keeps allocations), and a NATS restart in the middle of a run.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { parseCoordinatorConfig, type RawRunOptions } from '../coordinator/config.ts';
import { Coordinator } from '../coordinator/coordinator.ts';
import { FOLLOWER_POLL_MS } from '../coordinator/lease.ts';
import { fakeAgent, signed } from './helpers/fake-agent.ts';
import { systemClock, type Clock } from '../lib/clock.ts';
import { CountingClock } from './helpers/counting-clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { NatsServer } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { NodeRecord, type RegisterReply } from '../protocol/messages.ts';
import { generateSigningKeyPair, verifyEnvelope, type SigningKeyPair } from '../protocol/signing.ts';
import { kvKeys, subjects } from '../protocol/subjects.ts';
import { enrollingClient } from './helpers/enrollment.ts';

async function startServer(t: ExecutionContext): Promise<NatsServer> {
  const server = await NatsServer.start({ name: `xl-coordha-${randomBytes(3).toString('hex')}` });
  t.teardown(() => server.stop());
  return server;
}

interface Replica {
  readonly coordinator: Coordinator;
  readonly nc: NatsConnection;
}

async function startReplica(t: ExecutionContext, server: NatsServer, key: SigningKeyPair, opts: Partial<RawRunOptions>, holderId: string, clock: Clock = systemClock): Promise<Replica> {
  const nc = await connect({ servers: server.url, name: `xl-coord-${holderId}`, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  // The fake agents here sign no epoch (test/helpers/coordinator-fixture.ts).
  const config = parseCoordinatorConfig({ nodeTtl: '30s', leaseTtl: '1s', ...opts });
  const coordinator = await Coordinator.start({ nc, clock, logger: silentLogger(), config, signingKey: key, holderId });
  t.teardown(async () => {
    await coordinator.stop();
    if (!nc.isClosed()) await nc.close();
  });
  return { coordinator, nc };
}

async function overlayIpOf(kv: KV, key: SigningKeyPair, name: string): Promise<{ ip: string; revision: number }> {
  const e = await kv.get(kvKeys.node(name));
  if (!e || e.operation !== 'PUT') throw new Error(`no record for ${name}`);
  return { ip: (await verifyEnvelope(e.value, key.publicKey, NodeRecord)).overlayIp, revision: e.revision };
}

/** How many responders answer one request (requestMany collects replies for `maxWait`). */
async function responders(nc: NatsConnection, subject: string, body: string): Promise<number> {
  let n = 0;
  for await (const _ of await nc.requestMany(subject, body, { maxWait: 700 })) n++;
  return n;
}

const ok = (r: RegisterReply): boolean => r.ok;

test('two replicas: one leader answers; when it dies the follower takes over with allocations intact', async (t) => {
  const server = await startServer(t);
  const id = randomBytes(4).toString('hex');
  const opts = { bucket: `xlha_${id}`, subjectPrefix: `xl.${id}.v1` };
  const key = await generateSigningKeyPair();
  const r1 = await startReplica(t, server, key, opts, `xl-r1-${id}`);
  const r2 = await startReplica(t, server, key, opts, `xl-r2-${id}`);
  await waitFor(() => r1.coordinator.isLeader() || r2.coordinator.isLeader(), { timeoutMs: 10_000, what: 'a leader' });
  const [leader, follower] = r1.coordinator.isLeader() ? [r1, r2] : [r2, r1];
  t.false(follower.coordinator.isLeader());

  const nc = await connect({ servers: server.url, maxReconnectAttempts: -1 });
  t.teardown(() => nc.close());
  const client = await enrollingClient(nc, opts.subjectPrefix, opts.bucket, key);
  const kv = await new Kvm(nc).open(opts.bucket);
  const s = subjects(opts.subjectPrefix);

  // Exactly one replica answers registrations and heartbeats.
  const a = await fakeAgent('node-a', { podCidrs: ['10.10.0.0/24'] });
  const b = await fakeAgent('node-b', { podCidrs: ['10.11.0.0/24'] });
  t.is(await responders(nc, s.register, await client.registrationBody(a)), 1);
  t.true(ok(await client.register(b)));
  const hb = await signed({ v: 1, name: 'node-a', identityKey: a.identity.publicKey, generation: 1, sentAt: Date.now() }, a.identity.secretKey);
  t.is(await responders(nc, s.heartbeat, hb), 1);
  const before = { a: await overlayIpOf(kv, key, 'node-a'), b: await overlayIpOf(kv, key, 'node-b') };

  // The leader "crashes": its connection drops without releasing the lease.
  await leader.nc.close();
  await waitFor(() => follower.coordinator.isLeader(), { timeoutMs: 15_000, what: 'follower takeover' });
  t.false(leader.coordinator.isLeader());

  // Re-registrations keep their addresses (and cause no writes); a new node gets the next address.
  t.true(ok(await client.register(a)));
  t.true(ok(await client.register(b)));
  t.deepEqual(await overlayIpOf(kv, key, 'node-a'), before.a);
  t.deepEqual(await overlayIpOf(kv, key, 'node-b'), before.b);
  const c = await fakeAgent('node-c', { podCidrs: ['10.12.0.0/24'] });
  t.true(ok(await client.register(c)));
  t.is((await overlayIpOf(kv, key, 'node-c')).ip, '100.96.0.3');
  t.like(await client.heartbeat(a), { ok: true });
});

test('a clean stop hands leadership over at once', async (t) => {
  const server = await startServer(t);
  const id = randomBytes(4).toString('hex');
  const opts = { bucket: `xlha_${id}`, subjectPrefix: `xl.${id}.v1`, leaseTtl: '30s' };
  const key = await generateSigningKeyPair();
  const r1 = await startReplica(t, server, key, opts, `xl-r1-${id}`);
  await waitFor(() => r1.coordinator.isLeader(), { timeoutMs: 10_000, what: 'r1 leads' });
  const r2Clock = new CountingClock();
  const r2 = await startReplica(t, server, key, opts, `xl-r2-${id}`, r2Clock);
  // A follower sleeps FOLLOWER_POLL_MS between campaigns (a leader sleeps a third of the 30 s TTL): once
  // two such sleeps have ended, r2 has campaigned twice against the live lease (the first only notes
  // it, the second could take it) and stayed a follower. Read in the same poll.
  const seen = await waitFor(() => (r2Clock.slept(FOLLOWER_POLL_MS) >= 2 ? { leader: r2.coordinator.isLeader() } : undefined), { timeoutMs: 15_000, intervalMs: 50, what: 'r2 campaigned twice as a follower' });
  t.false(seen.leader, 'a follower does not take a live lease');
  await r1.coordinator.stop();
  // With a 30 s lease, only the released lease explains a quick takeover.
  await waitFor(() => r2.coordinator.isLeader(), { timeoutMs: 5000, intervalMs: 50, what: 'r2 takes over the released lease' });
  t.pass();
});

test('a leader dead with its lease held: the follower answers heartbeats `unavailable` at once (not silence) until it leads', async (t) => {
  const server = await startServer(t);
  const id = randomBytes(4).toString('hex');
  // A 60 s lease: the follower cannot lead during the test's window, only the presence probe can answer.
  const opts = { bucket: `xlha_${id}`, subjectPrefix: `xl.${id}.v1`, leaseTtl: '60s' };
  const key = await generateSigningKeyPair();
  const r1 = await startReplica(t, server, key, opts, `xl-r1-${id}`);
  await waitFor(() => r1.coordinator.isLeader(), { timeoutMs: 10_000, what: 'r1 leads' });
  const r2Clock = new CountingClock();
  const r2 = await startReplica(t, server, key, opts, `xl-r2-${id}`, r2Clock);
  const nc = await connect({ servers: server.url, maxReconnectAttempts: -1 });
  t.teardown(() => nc.close());
  const client = await enrollingClient(nc, opts.subjectPrefix, opts.bucket, key, 2000);
  const a = await fakeAgent('node-a', { podCidrs: ['10.10.0.0/24'] });
  t.true(ok(await client.register(a)));

  // The follower has probed the live leader (its 500 ms probe loop went round twice): it stays silent,
  // exactly one replica answers a heartbeat, and it is the leader's ok.
  await waitFor(() => r2Clock.slept(500) >= 2, { timeoutMs: 15_000, intervalMs: 50, what: "r2's presence probe ran twice" });
  const hb = await signed({ v: 1, name: 'node-a', identityKey: a.identity.publicKey, generation: 1, sentAt: Date.now() }, a.identity.secretKey);
  t.is(await responders(nc, subjects(opts.subjectPrefix).heartbeat, hb), 1);
  t.like(await client.heartbeat(a), { ok: true });

  // The leader "is SIGKILLed": its connection drops, the lease stays held for 60 s.
  await r1.nc.close();
  let last = '';
  const seen = await waitFor(
    async () => {
      const r = await client.heartbeat(a).catch((err: unknown) => ({ ok: false as const, error: { code: 'no answer', message: String(err) } }));
      last = JSON.stringify(r);
      return !r.ok && r.error.code === 'unavailable' ? { reply: r, followerLeads: r2.coordinator.isLeader() } : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 100, what: 'a heartbeat answered "unavailable" by the follower' },
  ).catch(() => undefined);
  if (!seen) return t.fail(`heartbeats went unanswered after the leader died (last: ${last})`);
  t.false(seen.followerLeads, 'the answer came from a follower (the 60 s lease is still held)');
  t.regex(seen.reply.ok ? '' : seen.reply.error.message, /no coordinator leads right now/);
  // From then on every heartbeat is answered at once (2 s request timeout), none left in silence.
  for (let i = 0; i < 3; i++) {
    const r = await client.heartbeat(a).catch((err: unknown) => String(err));
    t.deepEqual(typeof r === 'string' ? r : r.ok ? 'ok' : r.error.code, 'unavailable');
  }
});

test('NATS restart mid-run: the coordinator recovers and serves registrations, nothing lost', async (t) => {
  const server = await startServer(t);
  const id = randomBytes(4).toString('hex');
  const opts = { bucket: `xlha_${id}`, subjectPrefix: `xl.${id}.v1`, leaseTtl: '2s' };
  const key = await generateSigningKeyPair();
  const r = await startReplica(t, server, key, opts, `xl-r-${id}`);
  await waitFor(() => r.coordinator.isLeader(), { timeoutMs: 10_000, what: 'leadership' });
  const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  t.teardown(() => nc.close());
  const client = await enrollingClient(nc, opts.subjectPrefix, opts.bucket, key, 2000);
  const a = await fakeAgent('node-a', { podCidrs: ['10.10.0.0/24'] });
  t.true(ok(await client.register(a)));
  const kv = await new Kvm(nc).open(opts.bucket);
  const before = await overlayIpOf(kv, key, 'node-a');

  await server.restart();

  const b = await fakeAgent('node-b', { podCidrs: ['10.11.0.0/24'] });
  const reply = await waitFor(async () => {
    const res = await client.register(b);
    return res.ok ? res : undefined;
  }, { timeoutMs: 30_000, intervalMs: 250, what: 'registration after the NATS restart' });
  t.is((await verifyEnvelope(reply.record, key.publicKey, NodeRecord)).overlayIp, '100.96.0.2');
  t.deepEqual(await overlayIpOf(kv, key, 'node-a'), before);
  await waitFor(async () => (await client.heartbeat(a)).ok, { timeoutMs: 10_000, what: 'heartbeat after restart' });
  t.true(r.coordinator.isLeader());
});
