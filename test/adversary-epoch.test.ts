// Issue 8, finding 5's last gap: a heartbeat captured after the node's latest registration, replayed
// after EVERY coordinator replica restarted (their in-memory replay marks gone). Real nats-server,
// real coordinators on 127.0.0.1. The heartbeat carries the coordinator epoch the agent learned;
// every term mints a new one, so the replay is refused `stale-epoch` and the node — silent for
// real — expires on its short TTL while the attacker keeps replaying.
import test from 'ava';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { parseCoordinatorConfig } from '../coordinator/config.ts';
import { Coordinator } from '../coordinator/coordinator.ts';
import { fakeAgent, rpc, signed } from './helpers/fake-agent.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { HeartbeatReply, type Heartbeat } from '../protocol/messages.ts';
import { kvKeys, subjects } from '../protocol/subjects.ts';
import { LeaderUp } from '../protocol/leader-up.ts';
import { verifyEnvelope } from '../protocol/signing.ts';
import { present, startCoordinatorEnv } from './helpers/coordinator-fixture.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';

const server = useNatsServer('xl-epoch');

test('a heartbeat captured in one term is refused after every replica restarted, and keeps no node alive', async (t) => {
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlepoch', config: { nodeTtl: '2s', leaseTtl: '3s' } });
  const s = subjects(env.prefix);
  const config = parseCoordinatorConfig({ bucket: env.bucket, subjectPrefix: env.prefix, leaseTtl: '3s', nodeTtl: '2s' });
  const replicas: { nc: NatsConnection; c: Coordinator }[] = [];
  const startReplica = async (name: string): Promise<Coordinator> => {
    const nc = await connect({ servers: server().url, name });
    const c = await Coordinator.start({ nc, clock: systemClock, logger: silentLogger(), config, signingKey: env.key, holderId: name });
    replicas.push({ nc, c });
    return c;
  };
  const stopAll = async (): Promise<void> => {
    for (const r of replicas.splice(0)) {
      await r.c.stop();
      await r.nc.close();
    }
  };
  t.teardown(stopAll);
  // A second replica following the fixture's leader: both are restarted below.
  await startReplica('xl-epoch-follower-1');

  const a = await fakeAgent('node-e', { podCidrs: ['10.20.3.0/24'] });
  const registered = await env.client.register(a);
  if (!registered.ok) return t.fail(`registration refused: ${registered.error.message}`);
  const firstEpoch = registered.epoch;
  if (firstEpoch === undefined) return t.fail('the registration reply carries no epoch');
  const heartbeat = async (epoch: string | undefined): Promise<string> => {
    const hb: Heartbeat = { v: 1, name: 'node-e', identityKey: a.identity.publicKey, generation: 1, sentAt: a.nextSentAt(), ...(epoch === undefined ? {} : { epoch }) };
    return signed(hb, a.identity.secretKey);
  };
  // The honest heartbeat of the first term, captured on the wire after the last registration.
  const captured = await heartbeat(firstEpoch);
  t.deepEqual(await rpc(env.nc, s.heartbeat, captured, HeartbeatReply), { ok: true, epoch: firstEpoch });
  t.like(await rpc(env.nc, s.heartbeat, captured, HeartbeatReply), { ok: false, error: { code: 'stale', field: 'sentAt' } }, 'within the term: the replay mark');

  // The fresh leader will announce itself, signed, with its new epoch (protocol/leader-up.ts).
  const announced: LeaderUp[] = [];
  const ears = env.nc.subscribe(s.leaderUp, { callback: (_err, m) => void verifyEnvelope(JSON.parse(m.string()) as unknown, env.key.publicKey, LeaderUp).then((a) => announced.push(a)) });
  t.teardown(() => ears.unsubscribe());
  await env.nc.flush();

  // Every replica restarts: the fixture's leader and the follower; two fresh ones take their place.
  await stopAll();
  await env.coordinator.stop();
  const fresh = [await startReplica('xl-epoch-leader-2'), await startReplica('xl-epoch-follower-2')];
  await waitFor(() => fresh.some((c) => c.isLeader()), { timeoutMs: 15_000, what: 'a fresh replica leads' });

  const replayed = await rpc(env.nc, s.heartbeat, captured, HeartbeatReply);
  if (replayed.ok) return t.fail('the replayed heartbeat was accepted after the restart');
  t.like(replayed.error, { code: 'stale-epoch', field: 'epoch' });
  const secondEpoch = replayed.epoch;
  t.truthy(secondEpoch, 'the refusal carries the current epoch');
  t.not(secondEpoch, firstEpoch);
  await waitFor(() => announced.some((a) => a.epoch === secondEpoch), { timeoutMs: 10_000, what: 'the new leader\'s signed leader-up with its epoch' });

  // The honest node, told the new epoch, is heard at once (what the agent does on stale-epoch).
  t.deepEqual(await rpc(env.nc, s.heartbeat, await heartbeat(secondEpoch), HeartbeatReply), { ok: true, epoch: secondEpoch });
  // Then it falls silent; the attacker keeps replaying the captured heartbeat. Each replay is
  // refused, and the node expires on its 2 s TTL regardless (observed in the bucket).
  const refusals = new Set<string>();
  await waitFor(
    async () => {
      const r = await rpc(env.nc, s.heartbeat, captured, HeartbeatReply).catch(() => undefined);
      if (r !== undefined) refusals.add(r.ok ? 'ok' : r.error.code);
      return !(await present(env.kv, kvKeys.node('node-e')));
    },
    { timeoutMs: 30_000, intervalMs: 100, what: 'node-e expiring while its captured heartbeat is replayed' },
  );
  // Refused for its epoch, or (once the fresh leader saw it) by its replay mark: never accepted.
  t.false(refusals.has('ok'), `replies to the replays: ${[...refusals].join(', ')}`);
  t.true(refusals.size > 0);
});

test('a captured heartbeat without an epoch (as agents older than the epoch sent) is refused `epoch-required` and keeps no node alive; with --require-heartbeat-epoch off it counts', async (t) => {
  // The shipped default (on), stated explicitly: the fixture turns it off for its epoch-less fake agents.
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlepochless', config: { nodeTtl: '2s', leaseTtl: '3s', requireHeartbeatEpoch: 'on' } });
  const s = subjects(env.prefix);
  const a = await fakeAgent('node-q', { podCidrs: ['10.20.4.0/24'] });
  const registered = await env.client.register(a);
  if (!registered.ok) return t.fail(`registration refused: ${registered.error.message}`);
  const epoch = registered.epoch;
  if (epoch === undefined) return t.fail('the registration reply carries no epoch');
  const heartbeat = async (o: { epoch?: string }): Promise<string> =>
    signed({ v: 1, name: 'node-q', identityKey: a.identity.publicKey, generation: 1, sentAt: a.nextSentAt(), ...o } satisfies Heartbeat, a.identity.secretKey);
  // Signed by the node's own identity key after its latest registration: all the older rules
  // (signature, clock skew, replay mark) would let it through once.
  const captured = await heartbeat({});
  const refused = await rpc(env.nc, s.heartbeat, captured, HeartbeatReply);
  if (refused.ok) return t.fail('the epoch-less heartbeat was accepted');
  t.like(refused.error, { code: 'epoch-required', field: 'epoch' });
  t.regex(refused.error.message, /--require-heartbeat-epoch/);
  t.is(refused.epoch, epoch, 'the refusal carries the current epoch (a current agent re-signs at once)');
  // The honest node signs the epoch and is heard; then it falls silent while the capture is replayed.
  t.deepEqual(await rpc(env.nc, s.heartbeat, await heartbeat({ epoch }), HeartbeatReply), { ok: true, epoch });
  const refusals = new Set<string>();
  await waitFor(
    async () => {
      const r = await rpc(env.nc, s.heartbeat, captured, HeartbeatReply).catch(() => undefined);
      if (r !== undefined) refusals.add(r.ok ? 'ok' : r.error.code);
      return !(await present(env.kv, kvKeys.node('node-q')));
    },
    { timeoutMs: 30_000, intervalMs: 100, what: 'node-q expiring while its captured epoch-less heartbeat is replayed' },
  );
  t.deepEqual([...refusals], ['epoch-required'], 'every replay refused for its missing epoch');

  // Negative control: the same kind of heartbeat against a coordinator with the requirement off
  // (the behaviour before the cut-over) counts — so the assertions above can fail.
  const lax = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlepochlax', config: { requireHeartbeatEpoch: 'off' } });
  const b = await fakeAgent('node-r', { podCidrs: ['10.20.5.0/24'] });
  t.true((await lax.client.register(b)).ok);
  const old: Heartbeat = { v: 1, name: 'node-r', identityKey: b.identity.publicKey, generation: 1, sentAt: b.nextSentAt() };
  t.deepEqual(await rpc(lax.nc, subjects(lax.prefix).heartbeat, await signed(old, b.identity.secretKey), HeartbeatReply), { ok: true });
});
