// The adversary holding one agent's NATS user (docs/security-review.md), against a real nats-server
// and real coordinators, with small injected bounds: what its requests may make a replica keep and
// what they may make it read.
// - Heartbeats under fresh key pairs and made-up names (each MAC'd or signed for its own key, so they
//   open): a follower records none of them as a sign of life (before: one liveness entry per made-up
//   name, kept until the follower took over), and every replica keeps at most `unknownMarksMax` replay
//   marks for keys no node is known by (before: one per key for the whole clock-skew window) — while
//   the nodes' own marks survive the flood (a captured heartbeat stays refused).
// - Registrations for a made-up cluster, and with a join signature that does not verify: the leader
//   confirms such a refusal with a bucket read at most `definitionReadRate.burst` times (before: one
//   read per request), and an honest node of an enrolled cluster still registers after the flood.
// - Refusals it can cause at will (registrations, heartbeats, service requests): logged at info once
//   per interval and kind (before: one info line per message), the repeats at debug and counted.
// - A heartbeat padded to 512 KiB: refused for its size before it is parsed (before: parsed whole on
//   every replica, ~18 ms per MiB of event-loop time each).
import test from 'ava';
import type { KV } from '@nats-io/kv';
import { pino } from 'pino';
import * as z from 'zod';
import { REFUSAL_LOG_INTERVAL_MS } from '../coordinator/config.ts';
import { agentClient, fakeAgent, rpc, signed, signedRegistration, type FakeAgent } from './helpers/fake-agent.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { waitFor } from '../lib/wait.ts';
import { heartbeatBody, nodeHeartbeatMacKey } from '../protocol/heartbeat-mac.ts';
import { HEARTBEAT_MAX_BYTES } from '../protocol/validate-registration.ts';
import { HeartbeatReply, RegisterReply, type Heartbeat } from '../protocol/messages.ts';
import { generateJoinCredential } from '../protocol/join-credential.ts';
import { serviceSubjects } from '../protocol/service.ts';
import { subjects } from '../protocol/subjects.ts';
import { startCoordinatorEnv } from './helpers/coordinator-fixture.ts';
import { flood, startFollower } from './helpers/heartbeat-flood.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';

const server = useNatsServer('xl-flood');

const hbOf = (a: FakeAgent): Heartbeat => ({ v: 1, name: a.name, identityKey: a.identity.publicKey, generation: 0, sentAt: a.nextSentAt(), ...(a.epoch === undefined ? {} : { epoch: a.epoch }) });

test('a flood of heartbeats under fresh key pairs and made-up names: no follower records them, every replica keeps at most unknownMarksMax of their marks, the nodes\' marks survive', async (t) => {
  const UNKNOWN = 4;
  const FLOOD = 12;
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlfloodhb', config: { nodeTtl: '60s', leaseTtl: '30s' }, bounds: { unknownMarksMax: UNKNOWN } });
  const s = subjects(env.prefix);
  const f = await startFollower(t, env, server().url, { unknownMarksMax: UNKNOWN });
  const client = agentClient(env.nc, env.prefix, { credentialFor: env.enrollment.credentialFor });
  const a = await fakeAgent('node-a', { podCidrs: ['10.20.1.0/24'] });
  const b = await fakeAgent('node-b', { podCidrs: ['10.20.2.0/24'] });
  t.true((await client.register(a)).ok);
  t.true((await client.register(b)).ok);
  /** Sends `body` and waits until the follower has handled it too. */
  const send = async (body: string): Promise<HeartbeatReply> => {
    const before = f.heard.heartbeats;
    const r = await rpc(env.nc, s.heartbeat, body, HeartbeatReply);
    await waitFor(() => f.heard.heartbeats > before, { timeoutMs: 5000, intervalMs: 5, what: 'the follower handling the heartbeat' });
    return r;
  };
  // Once the follower knows the leader's epoch and both nodes, it records their heartbeats.
  await waitFor(async () => {
    await send(heartbeatBody(hbOf(a), a.identity, undefined));
    return f.coordinator.lastHeardAt('node-a') !== undefined;
  }, { timeoutMs: 10_000, intervalMs: 100, what: "the follower recording node-a's heartbeat" });
  await waitFor(() => f.coordinator.identityKeyOf('node-b') === b.identity.publicKey, { timeoutMs: 10_000, intervalMs: 20, what: "the follower's warm copy holding node-b" });
  const captured = heartbeatBody(hbOf(b), b.identity, undefined);
  t.like(await send(captured), { ok: true });
  t.not(f.coordinator.lastHeardAt('node-b'), undefined, 'an honest heartbeat is recorded by the follower (the checks below could fail)');

  const before = f.heard.heartbeats;
  for (const mac of [true, false]) {
    const replies = await flood(env, FLOOD / 2, Date.now(), a.epoch, { mac, nameOf: (i) => (i % 3 === 2 ? 'node-a' : `evil-${mac ? 'm' : 's'}${i}`) });
    // Every one opened (the refusal is the registry's, not the MAC's or signature's).
    for (const r of replies) t.true(!r.ok && (r.error.code === 'unknown-node' || (r.error.code === 'unauthorized' && r.error.field === 'identityKey')), JSON.stringify(r));
  }
  await waitFor(() => f.heard.heartbeats >= before + FLOOD, { timeoutMs: 5000, intervalMs: 5, what: 'the follower handling the flood' });

  const made = [0, 1, 3, 4].flatMap((i) => [`evil-m${i}`, `evil-s${i}`]);
  t.deepEqual(made.filter((n) => f.coordinator.lastHeardAt(n) !== undefined), [], 'the follower recorded no made-up name');
  t.deepEqual(made.filter((n) => env.coordinator.lastHeardAt(n) !== undefined), [], 'nor did the leader');
  t.deepEqual(f.coordinator.heartbeatMarkCount, { known: 2, unknown: UNKNOWN }, "the follower: the nodes' marks, and the bound of the others");
  t.deepEqual(env.coordinator.heartbeatMarkCount, { known: 2, unknown: UNKNOWN }, "the leader: the nodes' marks, and the bound of the others");

  t.like(await send(captured), { ok: false, error: { code: 'stale', field: 'sentAt' } }, "node-b's captured heartbeat is still refused: its mark was not pushed out");
  const heard = f.coordinator.lastHeardAt('node-a') ?? 0;
  t.like(await send(heartbeatBody(hbOf(a), a.identity, undefined)), { ok: true });
  t.true((f.coordinator.lastHeardAt('node-a') ?? 0) >= heard, "node-a's next heartbeat is still taken");
});

/** The bucket as the coordinator uses it, counting direct reads of cluster definitions. */
function countingDefinitionReads(counter: { reads: number }): (kv: KV) => KV {
  return (kv) =>
    new Proxy(kv, {
      get: (target, prop) => {
        if (prop === 'get') {
          return (key: string, ...rest: unknown[]): Promise<unknown> => {
            if (key.startsWith('enrollments.')) counter.reads++;
            return (target.get as (k: string, ...r: unknown[]) => Promise<unknown>)(key, ...rest);
          };
        }
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === 'function' ? (v as (...args: unknown[]) => unknown).bind(target) : v;
      },
    });
}

test('registrations for a made-up cluster or with a join signature that does not verify buy at most the budget of bucket reads; an honest node still registers', async (t) => {
  const BURST = 3;
  const counter = { reads: 0 };
  const env = await startCoordinatorEnv(t, {
    natsUrl: server().url,
    bucketTag: 'xlfloodreg',
    config: { nodeTtl: '60s' },
    wrapBucket: countingDefinitionReads(counter),
    // One token a day: the flood gets the burst and nothing more within the test.
    bounds: { definitionReadRate: { ratePerSecond: 1 / 86_400, burst: BURST } },
  });
  const s = subjects(env.prefix);
  await env.enrollment.enroll('c1', ['10.20.0.0/16']);
  const wrongCredential = await generateJoinCredential('c1');
  const readsBefore = counter.reads;
  const refused: RegisterReply[] = [];
  for (let i = 0; i < 10; i++) {
    const evil = await fakeAgent(`evil-${i}`, { podCidrs: [`10.20.${10 + i}.0/24`] });
    // Even: a cluster nobody enrolled, no join signature; odd: the enrolled cluster, signed with a credential that is not its own.
    const body = i % 2 === 0 ? await signedRegistration(evil.request({ cluster: `made-up-${i}` }), evil.identity.secretKey, undefined) : await signedRegistration(evil.request(), evil.identity.secretKey, wrongCredential);
    refused.push(await rpc(env.nc, s.register, body, RegisterReply));
  }
  for (const r of refused) t.like(r, { ok: false, error: { code: 'unauthorized' } });
  t.is(counter.reads - readsBefore, BURST, 'one read per token of the budget, none after');

  const honest = await fakeAgent('node-a', { podCidrs: ['10.20.1.0/24'] });
  honest.joinCredential = env.enrollment.credential('c1');
  t.like(await agentClient(env.nc, env.prefix).register(honest), { ok: true }, 'the enrolled cluster is admitted from the watch-fed table, without a read');
});

test('refusals anyone can cause at will are logged at info once per interval and kind, the repeats at debug and counted in the next line', async (t) => {
  const lines: { level: number; msg: string; suppressedSinceLast?: number }[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as { level: number; msg: string }) });
  const clock = new ManualClock(Date.now());
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlfloodlog', config: { nodeTtl: '60s', leaseTtl: '1m', maxClockSkew: '1h' }, clock, logger });
  const s = subjects(env.prefix);
  const a = await fakeAgent('node-a', { podCidrs: ['10.20.1.0/24'] });
  t.true((await agentClient(env.nc, env.prefix, { credentialFor: env.enrollment.credentialFor }).register(a)).ok);
  const N = 8;
  const registerMadeUp = async (i: number): Promise<RegisterReply> => {
    const evil = await fakeAgent(`evil-${i}`);
    return rpc(env.nc, s.register, await signedRegistration(evil.request({ cluster: `made-up-${i}` }), evil.identity.secretKey, undefined), RegisterReply);
  };
  for (let i = 0; i < N; i++) t.like(await registerMadeUp(i), { ok: false, error: { code: 'unauthorized' } });
  // Fresh keys under node-a's name (refused by the registry), and under made-up names an hour and more off the clock (refused for the skew).
  for (const r of await flood(env, N, clock.now(), a.epoch, { mac: false, nameOf: () => 'node-a' })) t.like(r, { ok: false, error: { code: 'unauthorized', field: 'identityKey' } });
  for (const r of await flood(env, N, clock.now() - 2 * 3_600_000, a.epoch, { mac: false })) t.like(r, { ok: false, error: { code: 'stale' } });
  const stranger = await fakeAgent('evil-x');
  for (let i = 0; i < N; i++) {
    const unexport = { v: 1, node: 'evil-x', identityKey: stranger.identity.publicKey, cluster: 'c1', namespace: 'default', name: `svc-${i}`, sentAt: stranger.nextSentAt() };
    t.like(await rpc(env.nc, serviceSubjects(env.prefix).unexport, await signed(unexport, stranger.identity.secretKey), z.object({ ok: z.boolean() })), { ok: false });
  }

  const at = (msg: string, level: number): number => lines.filter((l) => l.msg === msg && l.level === level).length;
  const INFO = 30;
  const DEBUG = 20;
  for (const msg of ['registration rejected', 'heartbeat refused', 'heartbeat rejected', 'service unexport refused']) {
    t.is(at(msg, INFO), 1, `${msg}: once at info`);
    t.is(at(msg, DEBUG), N - 1, `${msg}: the repeats at debug`);
  }

  clock.advance(REFUSAL_LOG_INTERVAL_MS);
  t.like(await registerMadeUp(N), { ok: false });
  t.like(lines.filter((l) => l.msg === 'registration rejected' && l.level === INFO).at(-1), { suppressedSinceLast: N - 1 }, 'an interval later: at info again, saying how many were held back');
});

test('a heartbeat over HEARTBEAT_MAX_BYTES is refused for its size before it is parsed; the largest honest heartbeat is far below it in either form', async (t) => {
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlfloodsize', config: { nodeTtl: '60s' } });
  const s = subjects(env.prefix);
  const a = await fakeAgent('node-a', { podCidrs: ['10.20.1.0/24'] });
  t.true((await agentClient(env.nc, env.prefix, { credentialFor: env.enrollment.credentialFor }).register(a)).ok);
  // An authentic signed heartbeat with 512 KiB of padding beside it in the envelope.
  const padded = JSON.stringify({ ...(JSON.parse(heartbeatBody(hbOf(a), a.identity, undefined)) as object), pad: 'x'.repeat(512 * 1024) });
  const r = await rpc(env.nc, s.heartbeat, padded, HeartbeatReply);
  if (r.ok) return t.fail('the padded heartbeat was taken');
  t.like(r.error, { code: 'invalid', field: '(root)' });
  t.true(r.error.message.includes(`at most ${HEARTBEAT_MAX_BYTES}`), r.error.message);
  t.like(await rpc(env.nc, s.heartbeat, heartbeatBody(hbOf(a), a.identity, undefined), HeartbeatReply), { ok: true }, 'the same heartbeat unpadded is taken');

  // The largest heartbeat an honest agent can send: a 253-byte name, a 64-byte epoch, large numbers.
  const name = [63, 63, 63, 61].map((n, i) => String.fromCharCode(97 + i).repeat(n)).join('.');
  t.is(name.length, 253);
  const largest: Heartbeat = { v: 1, name, identityKey: a.identity.publicKey, generation: Number.MAX_SAFE_INTEGER, sentAt: Number.MAX_SAFE_INTEGER, epoch: 'e'.repeat(64) };
  const signedBody = heartbeatBody(largest, a.identity, undefined);
  const macBody = heartbeatBody(largest, a.identity, { coordinatorKey: env.key.publicKey, key: nodeHeartbeatMacKey(a.identity, env.key.publicKey) });
  t.true(Math.max(signedBody.length, macBody.length) < HEARTBEAT_MAX_BYTES / 2, `signed ${signedBody.length}, MAC'd ${macBody.length} bytes`);
});
