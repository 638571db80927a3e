// The heartbeat schedule: jittered intervals, and a random delay (up to half an interval) before
// the heartbeat after a NATS reconnect, so a fleet that reconnected together does not heartbeat in
// the same instant from then on. Pure table for the delays; then real ControlPlanes against a real
// nats-server that is restarted, driven by a test clock, so the times are exact (no timing asserts).
import test, { type ExecutionContext } from 'ava';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ControlPlane, heartbeatDelayMs } from '../agent/control/control-plane.ts';
import { onConnectionStatus } from '../lib/nats-status.ts';
import type { NodeIdentity } from '../agent/plan/model.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { NatsServer } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { Heartbeat, RegistrationRequest, type HeartbeatReply, type NodeRecord, type RegisterReply } from '../protocol/messages.ts';
import { generateSigningKeyPair, generateWireguardKeyPair, openEnvelopeUnverified, signEnvelope, verifyEnvelope, type SigningKeyPair } from '../protocol/signing.ts';
import { subjects } from '../protocol/subjects.ts';
import type { LeaderUp } from '../protocol/leader-up.ts';

const rows: { kind: 'interval' | 'after-reconnect'; interval: number; random: number; want: number }[] = [
  { kind: 'interval', interval: 10_000, random: 0, want: 9_000 },
  { kind: 'interval', interval: 10_000, random: 0.5, want: 10_000 },
  { kind: 'interval', interval: 10_000, random: 0.999_999, want: 11_000 },
  { kind: 'after-reconnect', interval: 10_000, random: 0, want: 0 },
  { kind: 'after-reconnect', interval: 10_000, random: 0.5, want: 2_500 },
  { kind: 'after-reconnect', interval: 10_000, random: 0.999_999, want: 5_000 },
];
for (const r of rows) {
  test(`heartbeatDelayMs ${r.kind}, interval ${r.interval}, random ${r.random} → ${r.want}`, (t) => {
    t.is(heartbeatDelayMs(r.kind, r.interval, r.random), r.want);
  });
}

test('a fleet of random draws spreads: intervals within ±10 %, post-reconnect delays over half an interval', (t) => {
  let seed = 42;
  // Park–Miller: deterministic, and exact in doubles.
  const random = (): number => (seed = (seed * 16_807) % 2_147_483_647) / 2_147_483_647;
  const afterReconnect = Array.from({ length: 500 }, () => heartbeatDelayMs('after-reconnect', 5000, random()));
  const intervals = Array.from({ length: 500 }, () => heartbeatDelayMs('interval', 5000, random()));
  t.true(afterReconnect.every((d) => d >= 0 && d <= 2500));
  t.true(intervals.every((d) => d >= 4500 && d <= 5500));
  // Spread, not one instant: no 50 ms slot of the window holds more than a few percent of the fleet.
  const slots = new Map<number, number>();
  for (const d of afterReconnect) slots.set(Math.floor(d / 50), (slots.get(Math.floor(d / 50)) ?? 0) + 1);
  t.true(Math.max(...slots.values()) <= 30, `fullest slot: ${Math.max(...slots.values())} of 500`);
});

const S = subjects();

function identity(name: string): NodeIdentity {
  return {
    name,
    cluster: 'c1',
    location: 'lab',
    endpoints: ['192.0.2.1:51820'],
    privateAddresses: ['10.0.0.1'],
    podCidrs: [name === 'node-a' ? '10.244.1.0/24' : '10.244.2.0/24'],
    topology: 'mesh',
    gatewayEligible: true,
  };
}

/** Resolves at the next 'reconnect' status event of `nc`. */
function nextReconnect(nc: NatsConnection): Promise<void> {
  return new Promise((resolve) => {
    const stop = onConnectionStatus(nc, (s) => {
      if (s.type === 'reconnect') {
        stop();
        resolve();
      }
    });
  });
}

/** A fake coordinator's register service: every registration accepted and answered with a signed record (`epoch`: a coordinator of the epoch era). */
function serveRegistrations(nc: NatsConnection, coordinator: SigningKeyPair, o: { interval: number; overlayIp: string; epoch?: string }): void {
  nc.subscribe(S.register, {
    callback: (_err, msg) => {
      void (async () => {
        const env = JSON.parse(msg.string()) as unknown;
        const claimed = RegistrationRequest.parse(openEnvelopeUnverified(env as never));
        const req = await verifyEnvelope(env, claimed.identityKey, RegistrationRequest);
        const { sentAt: _s, agentVersion: _a, ...rest } = req;
        const record: NodeRecord = { ...rest, kind: 'node', overlayIp: o.overlayIp, generation: 1, registeredAt: 1, updatedAt: 1 };
        const reply: RegisterReply = {
          ok: true,
          record: await signEnvelope(record, coordinator.secretKey),
          heartbeatIntervalMs: o.interval,
          nodeTtlMs: 4 * o.interval,
          ...(o.epoch === undefined ? {} : { epoch: o.epoch }),
        };
        msg.respond(JSON.stringify(reply));
      })();
    },
  });
}

/** An agent's control plane on the test clock with a fixed random draw, registered in `cps` for teardown. */
async function startControlPlane(o: { nc: NatsConnection; clock: ManualClock; coordinator: SigningKeyPair; name: string; random: number; cps: ControlPlane[] }): Promise<ControlPlane> {
  const cp = new ControlPlane({
    nc: o.nc,
    clock: o.clock,
    logger: silentLogger(),
    coordinatorKey: o.coordinator.publicKey,
    wireguardPublicKey: (await generateWireguardKeyPair()).publicKey,
    identityKey: await generateSigningKeyPair(),
    identity: () => identity(o.name),
    listenPort: 51820,
    agentVersion: 'test',
    requestTimeoutMs: 2000,
    random: () => o.random,
  });
  o.cps.push(cp);
  cp.start();
  return cp;
}

/** A nats-server, the test clock, a fake coordinator's and an agent's connection; all stopped at teardown. */
async function twoConnections(t: ExecutionContext, name: string): Promise<{ clock: ManualClock; T0: number; coordNc: NatsConnection; agentNc: NatsConnection; cps: ControlPlane[]; coordinator: SigningKeyPair }> {
  const server = await NatsServer.start({ name });
  const clock = new ManualClock();
  const coordNc = await connect({ servers: server.url });
  const agentNc = await connect({ servers: server.url });
  const cps: ControlPlane[] = [];
  t.teardown(async () => {
    for (const c of cps) await c.stop();
    await agentNc.close();
    await coordNc.close();
    await server.stop();
  });
  return { clock, T0: clock.now(), coordNc, agentNc, cps, coordinator: await generateSigningKeyPair() };
}

test('after a NATS restart, agents heartbeat at their own random moment, then every jittered interval', async (t) => {
  const INTERVAL = 10_000;
  const server = await NatsServer.start({ name: 'xl-hbj' });
  const clock = new ManualClock();
  const T0 = clock.now();
  const conns: NatsConnection[] = [];
  const cps: ControlPlane[] = [];
  t.teardown(async () => {
    for (const cp of cps) await cp.stop();
    for (const nc of conns) await nc.close();
    await server.stop();
  });
  const open = async (): Promise<NatsConnection> => {
    const nc = await connect({ servers: server.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    conns.push(nc);
    return nc;
  };
  const coordinator = await generateSigningKeyPair();
  const coordNc = await open();
  // A fake coordinator: accepts every registration, records every heartbeat's (clock) send time.
  const beats: Heartbeat[] = [];
  serveRegistrations(coordNc, coordinator, { interval: INTERVAL, overlayIp: '100.96.0.7' });
  coordNc.subscribe(S.heartbeat, {
    callback: (_err, msg) => {
      const hb = Heartbeat.parse(openEnvelopeUnverified(JSON.parse(msg.string()) as never));
      beats.push(hb);
      msg.respond(JSON.stringify({ ok: true }));
    },
  });
  await coordNc.flush();

  // node-a draws 0.1 every time, node-b 0.9: the same reconnect, different moments.
  const draws = { 'node-a': 0.1, 'node-b': 0.9 };
  for (const [name, random] of Object.entries(draws)) {
    await startControlPlane({ nc: await open(), clock, coordinator, name, random, cps });
  }
  await waitFor(() => cps.every((cp) => cp.state().registered), { timeoutMs: 10_000, what: 'both registered' });
  t.is(beats.length, 0, 'no heartbeat before the (test) clock moves');

  const reconnected = conns.map((nc) => nextReconnect(nc));
  await server.stopProcess();
  await server.restart();
  await Promise.all(reconnected);
  // The fake coordinator's subscriptions are re-sent on reconnect; a round trip on its connection
  // makes sure the server has them before any agent heartbeats (else: "no responders").
  await coordNc.flush();
  await waitFor(() => cps.every((cp) => cp.state().connected), { timeoutMs: 10_000, what: 'agents see the reconnect' });

  const sentAt = (name: string): number[] => beats.filter((b) => b.name === name).map((b) => b.sentAt - T0);
  // Half an interval × the draw after the reconnect (the clock still stands at T0). The agents
  // arm those sleeps when they handle the reconnect, which may come after `connected` flips.
  await waitFor(() => clock.hasSleeperAt(T0 + 500) && clock.hasSleeperAt(T0 + 4500), { timeoutMs: 10_000, what: 'post-reconnect heartbeat delays armed' });
  clock.advanceTo(T0 + 500);
  await waitFor(() => sentAt('node-a').length === 1, { timeoutMs: 10_000, what: 'node-a heartbeat after reconnect' });
  t.deepEqual(sentAt('node-b'), [], 'node-b waits for its own moment');
  clock.advanceTo(T0 + 4500);
  await waitFor(() => sentAt('node-b').length === 1, { timeoutMs: 10_000, what: 'node-b heartbeat after reconnect' });
  t.deepEqual(sentAt('node-a'), [500]);
  t.deepEqual(sentAt('node-b'), [4500]);

  // From there every interval is jittered: node-a 0.92 × 10 s, node-b 1.08 × 10 s.
  await waitFor(() => clock.hasSleeperAt(T0 + 500 + 9200), { timeoutMs: 10_000, what: 'node-a next heartbeat armed' });
  clock.advanceTo(T0 + 500 + 9200);
  await waitFor(() => sentAt('node-a').length === 2, { timeoutMs: 10_000, what: 'node-a next heartbeat' });
  await waitFor(() => clock.hasSleeperAt(T0 + 4500 + 10_800), { timeoutMs: 10_000, what: 'node-b next heartbeat armed' });
  clock.advanceTo(T0 + 4500 + 10_800);
  await waitFor(() => sentAt('node-b').length === 2, { timeoutMs: 10_000, what: 'node-b next heartbeat' });
  t.deepEqual(sentAt('node-a'), [500, 9700]);
  t.deepEqual(sentAt('node-b'), [4500, 15_300]);
});

test('an unanswered heartbeat is retried at a flat ~1 s; stale-epoch is re-signed at once with the new epoch; then the interval resumes', async (t) => {
  const INTERVAL = 10_000;
  const { clock, T0, coordNc, agentNc, cps, coordinator } = await twoConnections(t, 'xl-hbr');
  serveRegistrations(coordNc, coordinator, { interval: INTERVAL, overlayIp: '100.96.0.7', epoch: 'e1' });
  await coordNc.flush();
  const cp = await startControlPlane({ nc: agentNc, clock, coordinator, name: 'node-a', random: 0.5, cps });
  await waitFor(() => cp.state().registered, { timeoutMs: 10_000, what: 'registered' });

  // Nobody answers heartbeats (the coordinator is restarting): "no responders" at once.
  const step = async (at: number, what: string): Promise<void> => {
    await waitFor(() => clock.hasSleeperAt(at), { timeoutMs: 10_000, what });
    clock.advanceTo(at);
  };
  await step(T0 + INTERVAL, 'first heartbeat armed at one interval');
  await step(T0 + INTERVAL + 1000, 'first retry armed 1 s after the failure');
  await waitFor(() => clock.hasSleeperAt(T0 + INTERVAL + 2000), { timeoutMs: 10_000, what: 'second retry armed 1 s after the second failure (flat)' });
  // The coordinator is back before the second retry: first still loading its bucket ("unavailable",
  // retried soon like no answer), then a new leader whose epoch the agent does not have yet
  // (stale-epoch: sign again at once, the clock does not move), then serving.
  const beats: { at: number; epoch: string | undefined }[] = [];
  coordNc.subscribe(S.heartbeat, {
    callback: (_err, msg) => {
      const hb = Heartbeat.parse(openEnvelopeUnverified(JSON.parse(msg.string()) as never));
      beats.push({ at: hb.sentAt - T0, epoch: hb.epoch });
      const loading: HeartbeatReply = { ok: false, error: { code: 'unavailable', message: 'taking over' } };
      const staleEpoch: HeartbeatReply = { ok: false, error: { code: 'stale-epoch', field: 'epoch', message: 'new leader' }, epoch: 'e2' };
      const current = hb.epoch === 'e2' || hb.epoch === 'e3';
      msg.respond(JSON.stringify(beats.length === 1 ? loading : !current ? staleEpoch : { ok: true, epoch: hb.epoch }));
    },
  });
  await coordNc.flush();
  clock.advanceTo(T0 + INTERVAL + 2000);
  await waitFor(() => beats.length === 1, { timeoutMs: 10_000, what: 'the retried heartbeat answered "unavailable"' });
  t.deepEqual(beats, [{ at: INTERVAL + 2000, epoch: 'e1' }], 'the epoch learned at registration');
  await step(T0 + INTERVAL + 3000, '"unavailable": retried 1 s later, not an interval later');
  await waitFor(() => beats.length === 3, { timeoutMs: 10_000, what: 'stale-epoch, then the same heartbeat re-signed at once' });
  // sentAt moves on by 1 ms within one clock instant (every request gets a larger one).
  t.deepEqual(beats, [
    { at: INTERVAL + 2000, epoch: 'e1' },
    { at: INTERVAL + 3000, epoch: 'e1' },
    { at: INTERVAL + 3001, epoch: 'e2' },
  ]);
  await step(T0 + INTERVAL + 3000 + INTERVAL, 'answered: the normal interval again');
  await waitFor(() => beats.length === 4, { timeoutMs: 10_000, what: 'the next regular heartbeat' });
  t.deepEqual(beats[3], { at: 2 * INTERVAL + 3000, epoch: 'e2' });

  // A new leader announces itself (signed "leader up", spread 1 s): heard at random 0.5 × 1 s, not an
  // interval later, with the announced epoch. One signed by another key changes nothing.
  const now = clock.now();
  const announce = async (value: LeaderUp, secretKey: string): Promise<void> => {
    coordNc.publish(S.leaderUp, JSON.stringify(await signEnvelope(value, secretKey)));
    await coordNc.flush();
  };
  await announce({ kind: 'leader-up', v: 1, holder: 'forger', epoch: 'e9', at: now, spreadMs: 0 }, (await generateSigningKeyPair()).secretKey);
  await announce({ kind: 'leader-up', v: 1, holder: 'coordinator-2', epoch: 'e3', at: now, spreadMs: 1000 }, coordinator.secretKey);
  await step(now + 500, 'a heartbeat armed within the announced spread');
  await waitFor(() => beats.length === 5, { timeoutMs: 10_000, what: 'the heartbeat after leader-up' });
  t.deepEqual(beats[4], { at: now + 500 - T0, epoch: 'e3' });
  t.false(beats.some((b) => b.epoch === 'e9'), 'the forged announcement was ignored');
});

test('registered by a coordinator older than the epoch (no epoch in the reply): `epoch-required` carries the epoch, and the heartbeat is re-signed with it at once', async (t) => {
  const INTERVAL = 10_000;
  const { clock, T0, coordNc, agentNc, cps, coordinator } = await twoConnections(t, 'xl-hbq');
  // No epoch in the reply: a coordinator older than the epoch (an upgrade in progress).
  serveRegistrations(coordNc, coordinator, { interval: INTERVAL, overlayIp: '100.96.0.8' });
  const beats: (string | undefined)[] = [];
  coordNc.subscribe(S.heartbeat, {
    callback: (_err, msg) => {
      const hb = Heartbeat.parse(openEnvelopeUnverified(JSON.parse(msg.string()) as never));
      beats.push(hb.epoch);
      const required: HeartbeatReply = { ok: false, error: { code: 'epoch-required', field: 'epoch', message: 'epoch: missing' }, epoch: 'e1' };
      msg.respond(JSON.stringify(hb.epoch === 'e1' ? { ok: true, epoch: 'e1' } : required));
    },
  });
  await coordNc.flush();
  const cp = await startControlPlane({ nc: agentNc, clock, coordinator, name: 'node-q', random: 0.5, cps });
  await waitFor(() => cp.state().registered, { timeoutMs: 10_000, what: 'registered' });
  await waitFor(() => clock.hasSleeperAt(T0 + INTERVAL), { timeoutMs: 10_000, what: 'first heartbeat armed at one interval' });
  clock.advanceTo(T0 + INTERVAL);
  // The clock does not move again: the second heartbeat can only be the immediate re-sign.
  const seen = await waitFor(() => (beats.length >= 2 ? [...beats] : undefined), { timeoutMs: 10_000, what: 'epoch-required, then the heartbeat re-signed at once with the epoch' });
  t.deepEqual(seen, [undefined, 'e1']);
});
