// ControlPlane against a real nats-server and a scripted fake coordinator: retries while nobody
// answers, slow retries on rejection, verification of the reply, heartbeats and re-registration.
import test, { type ExecutionContext } from 'ava';
import { connect, type Msg, type NatsConnection, type Status } from '@nats-io/transport-node';
import { ControlPlane } from '../agent/control/control-plane.ts';
import { readinessOf } from '../agent/status/readiness.ts';
import type { NodeIdentity } from '../agent/plan/model.ts';
import { systemClock, type Clock } from '../lib/clock.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { NatsServer } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { Deregister, Heartbeat, RegistrationRequest, type NodeRecord, type RegisterReply } from '../protocol/messages.ts';
import { generateSigningKeyPair, generateWireguardKeyPair, signEnvelope, verifyEnvelope, openEnvelopeUnverified, type SigningKeyPair } from '../protocol/signing.ts';
import { subjects } from '../protocol/subjects.ts';
import { coordinatorHeartbeatMacKey, HeartbeatMacKeys } from '../protocol/heartbeat-mac.ts';
import { watchRequestMacKey } from '../protocol/watch-request-mac.ts';
import { openHeartbeat } from '../protocol/validate-registration.ts';
import { AgentStatus } from '../protocol/status.ts';
import { scriptedStatus, type ScriptedStatus } from './helpers/scripted-status.ts';

const S = subjects();
const IDENTITY: NodeIdentity = {
  name: 'node-a',
  cluster: 'c1',
  location: 'lab',
  endpoints: ['192.0.2.1:51820'],
  privateAddresses: ['10.0.0.1'],
  podCidrs: ['10.244.1.0/24'],
  topology: 'mesh',
  gatewayEligible: true,
};

interface Fixture {
  server: NatsServer;
  nc: NatsConnection;
  coordNc: NatsConnection;
  coordinator: SigningKeyPair;
  cp: ControlPlane;
  identityKey: SigningKeyPair;
  wgPublicKey: string;
}

async function setup(
  t: ExecutionContext,
  identity: () => NodeIdentity = () => IDENTITY,
  clock: Clock = systemClock,
  keys?: (coordinator: SigningKeyPair) => string[],
  /** What the agent's connection looks like to the ControlPlane (e.g. scripted status events). */
  wrap: (nc: NatsConnection) => NatsConnection = (nc) => nc,
): Promise<Fixture> {
  const server = await NatsServer.start({ name: 'xl-cp' });
  const nc = wrap(await connect({ servers: server.url }));
  const coordNc = await connect({ servers: server.url });
  const coordinator = await generateSigningKeyPair();
  const identityKey = await generateSigningKeyPair();
  const wg = await generateWireguardKeyPair();
  const cp = new ControlPlane({
    nc,
    clock,
    logger: silentLogger(),
    coordinatorKey: keys?.(coordinator) ?? coordinator.publicKey,
    wireguardPublicKey: wg.publicKey,
    identityKey,
    identity,
    listenPort: 51820,
    agentVersion: 'test',
    // Real time (nats.js's request timer): every fake coordinator here answers at once, and one
    // answering slowly on a loaded machine must not count as unanswered (lastError set, a retry
    // between the beats a manual-clock test counts): 500 ms flaked under a parallel suite.
    requestTimeoutMs: 5000,
    retryMinMs: 50,
    retryMaxMs: 200,
    rejectedRetryMs: 400,
    notReadyRetryMaxMs: 100,
  });
  t.teardown(async () => {
    await cp.stop();
    await nc.close();
    await coordNc.close();
    await server.stop();
  });
  return { server, nc, coordNc, coordinator, cp, identityKey, wgPublicKey: wg.publicKey };
}

function recordFor(req: RegistrationRequest, generation: number): NodeRecord {
  const { sentAt: _s, agentVersion: _a, ...rest } = req;
  return { ...rest, kind: 'node', overlayIp: '100.96.0.7', generation, registeredAt: 1, updatedAt: 1 };
}

/** A fake coordinator answering register with `answer` and counting requests. */
async function serveRegister(f: Fixture, answer: (req: RegistrationRequest, n: number) => Promise<RegisterReply>): Promise<{ count: () => number; requests: RegistrationRequest[] }> {
  const requests: RegistrationRequest[] = [];
  f.coordNc.subscribe(S.register, {
    callback: (_err, msg: Msg) => {
      void (async () => {
        const env = JSON.parse(msg.string()) as unknown;
        // The agent signs with its identity key, which the request names.
        const claimed = RegistrationRequest.parse(openEnvelopeUnverified(env as never));
        const req = await verifyEnvelope(env, claimed.identityKey, RegistrationRequest);
        requests.push(req);
        msg.respond(JSON.stringify(await answer(req, requests.length)));
      })();
    },
  });
  // Flushed: the server has the subscription before the agent's first request. Unflushed, that request
  // could meet "no responders" and the agent would sleep on a manual clock nobody advances.
  await f.coordNc.flush();
  return { count: () => requests.length, requests };
}

/** A heartbeat as the coordinator opens it (either form: protocol/validate-registration.ts openHeartbeat); throws unless it verifies. */
function openBeat(f: Fixture, data: Uint8Array): { hb: Heartbeat; form: 'mac' | 'signed' } {
  const opened = openHeartbeat(data, Heartbeat, new HeartbeatMacKeys(f.coordinator));
  if (!opened.ok) throw new Error(`heartbeat refused: ${opened.error.message}`);
  return { hb: opened.value, form: 'mac' in (JSON.parse(Buffer.from(data).toString('utf8')) as object) ? 'mac' : 'signed' };
}

const ok = (f: Fixture, signer?: SigningKeyPair) => async (req: RegistrationRequest, n: number): Promise<RegisterReply> => ({
  ok: true,
  record: await signEnvelope(recordFor(req, n), (signer ?? f.coordinator).secretKey),
  heartbeatIntervalMs: 200,
  nodeTtlMs: 1000,
});

test('retries while no coordinator answers, then registers with a signed, verified request', async (t) => {
  const f = await setup(t);
  f.cp.start();
  await waitFor(() => /coordinator unavailable/.test(f.cp.state().lastError ?? ''), { timeoutMs: 5000, what: 'a failed attempt' });
  t.false(f.cp.state().registered);

  const reg = await serveRegister(f, ok(f));
  // The fake answers every heartbeat too: under load the poll may observe the state after the
  // first heartbeat (200 ms later), which an unanswered one would have turned into lastError.
  f.coordNc.subscribe(S.heartbeat, { callback: (_err, msg) => void msg.respond(JSON.stringify({ ok: true })) });
  // The state as of the moment registration is observed.
  const st = await waitFor(() => { const s = f.cp.state(); return s.registered ? s : undefined; }, { timeoutMs: 5000, what: 'registered' });
  const req = reg.requests[0]!;
  t.like(req, { name: 'node-a', cluster: 'c1', publicKey: f.wgPublicKey, identityKey: f.identityKey.publicKey, listenPort: 51820, gatewayEligible: true });
  t.is(st.record?.overlayIp, '100.96.0.7');
  t.is(st.heartbeatIntervalMs, 200);
  t.is(st.lastError, null);
});

/** The control plane's loop asleep on the manual clock: how long until it wakes (it is the clock's only sleeper). */
const parkedFor = (clock: ManualClock, what: string): Promise<number> =>
  waitFor(() => (clock.sleepers === 1 ? (clock.wakeups[0] ?? 0) - clock.now() : undefined), { timeoutMs: 5000, intervalMs: 5, what });

/** Moves `clock` to the loop's next wake-up (the heartbeat due) and waits for that heartbeat (`beats`: how many were seen). */
const beatByBeat = (clock: ManualClock, beats: () => number) => async (): Promise<void> => {
  const n = beats();
  clock.advance(await parkedFor(clock, `heartbeat ${n + 1} due`));
  await waitFor(() => beats() > n, { timeoutMs: 5000, intervalMs: 5, what: `heartbeat ${n + 1}` });
};

test('a rejection is reported with its field and retried slowly (no spinning)', async (t) => {
  const clock = new ManualClock();
  const f = await setup(t, undefined, clock);
  const reg = await serveRegister(f, () => Promise.resolve({ ok: false, error: { code: 'invalid', field: 'podCidrs[0]', message: 'podCidrs[0]: overlaps node-b' } }));
  f.cp.start();
  await waitFor(() => reg.count() >= 1, { timeoutMs: 5000, what: 'first request' });
  // Asleep after the refusal: for the rejection backoff (400 ms ±20 %), not the 50 ms retry of an unanswered request.
  for (let n = 1; n <= 3; n++) {
    const delay = await parkedFor(clock, `the retry sleep after refusal ${n}`);
    t.true(delay >= 320 && delay <= 480, `retry ${n} after ${delay} ms (rejectedRetryMs 400 ±20 %)`);
    t.is(reg.count(), n, 'nothing sent while asleep');
    clock.advance(delay);
    await waitFor(() => reg.count() > n, { timeoutMs: 5000, intervalMs: 5, what: `request ${n + 1}` });
  }
  t.false(f.cp.state().registered);
  t.is(f.cp.state().lastError, 'invalid (podCidrs[0]): podCidrs[0]: overlaps node-b');
});

test('a coordinator answering unavailable (no stream leader yet) is retried on the short cap; rate-limited keeps the long one', async (t) => {
  const clock = new ManualClock();
  const f = await setup(t, undefined, clock);
  let code: 'unavailable' | 'rate-limited' = 'unavailable';
  const reg = await serveRegister(f, () => Promise.resolve({ ok: false, error: { code, message: 'jetstream is not enabled' } }));
  f.cp.start();
  await waitFor(() => reg.count() >= 1, { timeoutMs: 5000, what: 'first request' });
  const delays: number[] = [];
  for (let n = 1; n <= 6; n++) {
    if (n === 4) code = 'rate-limited';
    const delay = await parkedFor(clock, `the retry sleep after refusal ${n}`);
    delays.push(delay);
    clock.advance(delay);
    await waitFor(() => reg.count() > n, { timeoutMs: 5000, intervalMs: 5, what: `request ${n + 1}` });
  }
  // retryMinMs 50 doubling, ±20 %: unavailable capped at notReadyRetryMaxMs 100, rate-limited at retryMaxMs 200.
  t.true(delays.slice(0, 3).every((d) => d <= 120), `unavailable: ${delays.join(', ')}`);
  t.true(delays.slice(4).every((d) => d >= 160), `rate-limited: ${delays.join(', ')}`);
});

test('a reply signed by another key is not trusted', async (t) => {
  const f = await setup(t);
  const impostor = await generateSigningKeyPair();
  await serveRegister(f, ok(f, impostor));
  f.cp.start();
  await waitFor(() => /does not verify/.test(f.cp.state().lastError ?? ''), { timeoutMs: 5000, what: 'verification failure' });
  t.false(f.cp.state().registered);
});

test('heartbeats flow; unknown-node makes it register again; deregister is signed', async (t) => {
  const f = await setup(t);
  const reg = await serveRegister(f, ok(f));
  const beats: Heartbeat[] = [];
  let forget = false;
  f.coordNc.subscribe(S.heartbeat, {
    callback: (_err, msg) => {
      const { hb } = openBeat(f, msg.data);
      beats.push(hb);
      msg.respond(JSON.stringify(forget ? { ok: false, error: { code: 'unknown-node', message: 'expired' } } : { ok: true }));
    },
  });
  f.cp.start();
  await waitFor(() => beats.length >= 2, { timeoutMs: 5000, what: 'heartbeats' });
  t.like(beats[0], { name: 'node-a', identityKey: f.identityKey.publicKey });
  // The generation of a record the coordinator handed out (under load a registration may time out and be repeated).
  t.true(beats[0]!.generation >= 1 && beats[0]!.generation <= reg.count());
  t.truthy(f.cp.state().lastHeartbeatAt);

  forget = true;
  await waitFor(() => reg.count() >= 2, { timeoutMs: 5000, what: 're-registration after unknown-node' });
  forget = false;
  await waitFor(() => f.cp.state().record?.generation === 2, { timeoutMs: 5000, what: 'new record' });

  f.cp.requestRegister('identity changed');
  await waitFor(() => reg.count() >= 3, { timeoutMs: 5000, what: 're-registration on request' });

  let dereg: Deregister | undefined;
  f.coordNc.subscribe(S.deregister, {
    callback: (_err, msg) => {
      void (async () => {
        dereg = await verifyEnvelope(msg.data, f.identityKey.publicKey, Deregister);
        msg.respond(JSON.stringify({ ok: true }));
      })();
    },
  });
  await f.coordNc.flush();
  await f.cp.stop();
  t.true(await f.cp.deregister());
  t.like(dereg, { name: 'node-a', identityKey: f.identityKey.publicKey });
});

test('a newer copy of our record from the KV is adopted; one with other keys triggers re-registration', async (t) => {
  const f = await setup(t);
  const reg = await serveRegister(f, ok(f));
  f.cp.start();
  await waitFor(() => f.cp.state().registered, { timeoutMs: 5000, what: 'registered' });
  const seen: number[] = [];
  f.cp.onRecord((r) => seen.push(r.generation));
  const current = f.cp.state().record!;
  f.cp.observeOwnRecord({ ...current, generation: 9, endpoints: ['192.0.2.99:51820'] });
  t.is(f.cp.state().record?.generation, 9);
  t.deepEqual(seen, [9]);
  f.cp.observeOwnRecord({ ...current, generation: 3 });
  t.is(f.cp.state().record?.generation, 9, 'older copies are ignored');
  const other = await generateWireguardKeyPair();
  f.cp.observeOwnRecord({ ...current, generation: 10, publicKey: other.publicKey });
  await waitFor(() => reg.count() >= 2, { timeoutMs: 5000, what: 're-registration' });
  t.pass();
});

test('an invalid own identity is reported without contacting the coordinator', async (t) => {
  const f = await setup(t, () => ({ ...IDENTITY, podCidrs: [] }));
  const reg = await serveRegister(f, ok(f));
  f.cp.start();
  await waitFor(() => f.cp.state().lastError !== null, { timeoutMs: 5000, what: 'error' });
  t.regex(f.cp.state().lastError ?? '', /our own registration is invalid: podCidrs/);
  t.is(reg.count(), 0);
});

test('finding 10: a revoked heartbeat reply stops heartbeats and registrations; state and readiness say revoked', async (t) => {
  const clock = new ManualClock();
  const f = await setup(t, undefined, clock);
  const reg = await serveRegister(f, ok(f));
  const beats: Heartbeat[] = [];
  const strictlyIncreasing = (xs: number[]): boolean => xs.every((x, i) => i === 0 || x > (xs[i - 1] ?? 0));
  let revoke = false;
  f.coordNc.subscribe(S.heartbeat, {
    callback: (_err, msg) => {
      beats.push(openBeat(f, msg.data).hb);
      const refusal = { code: 'unauthorized', field: 'name', revoked: true, message: 'node "node-a" was revoked at … (reason: "stolen")' };
      msg.respond(JSON.stringify(revoke ? { ok: false, error: refusal } : { ok: true }));
    },
  });
  await f.coordNc.flush();
  f.cp.start();
  // Time moves only here: to the loop's next wake-up (the heartbeat due), one heartbeat at a time.
  const nextBeat = beatByBeat(clock, () => beats.length);
  await waitFor(() => f.cp.state().registered, { timeoutMs: 5000, what: 'registered' });
  await nextBeat();
  await nextBeat();
  t.true(strictlyIncreasing([reg.requests[0]!.sentAt, ...beats.map((b) => b.sentAt)]), 'sentAt moves forward with every request');
  revoke = true;
  await nextBeat();
  await waitFor(() => f.cp.state().revoked !== null, { timeoutMs: 5000, what: 'revoked' });
  t.false(f.cp.state().registered);
  t.regex(f.cp.state().revoked ?? '', /revoked/);
  const readiness = readinessOf({ controlPlane: f.cp.state(), meshComplete: true, reconciled: true, lastReconcile: null, policyNotReady: null });
  t.false(readiness.ready);
  t.regex(readiness.reason, /^revoked by an operator/);
  const [beatsThen, regsThen] = [beats.length, reg.count()];
  // Asked to re-register, then 50 heartbeat intervals (10 s) later: the loop has run again (woken,
  // then past every heartbeat it would have sent) and parked for an hour — sending nothing. The counts
  // are read in the poll that sees it parked (or that sees something sent).
  f.cp.requestRegister('identity changed');
  clock.advance(10_000);
  const seen = await waitFor(
    () => (clock.hasSleeperAt(clock.now() + 3_600_000) || beats.length !== beatsThen || reg.count() !== regsThen ? { beats: beats.length, regs: reg.count() } : undefined),
    { timeoutMs: 5000, intervalMs: 5, what: 'the revoked loop parked after the wake-up' },
  );
  t.is(seen.beats, beatsThen, 'no heartbeat after revocation');
  t.is(seen.regs, regsThen, 'no registration after revocation');
});

test('MAC heartbeats after registering; a coordinator refusing them (`invalid`, as one older than them) gets signed ones at once, until the next registration; no storm', async (t) => {
  const clock = new ManualClock();
  const f = await setup(t, undefined, clock);
  const reg = await serveRegister(f, ok(f));
  const beats: { hb: Heartbeat; form: 'mac' | 'signed' }[] = [];
  let refuseMac = false;
  f.coordNc.subscribe(S.heartbeat, {
    callback: (_err, msg) => {
      const beat = openBeat(f, msg.data);
      beats.push(beat);
      // What a coordinator from before MAC heartbeats answers: the strict signed envelope refuses the shape.
      const refusal = { code: 'invalid', field: 'sig', message: 'not a signed envelope: sig: Required' };
      msg.respond(JSON.stringify(refuseMac && beat.form === 'mac' ? { ok: false, error: refusal } : { ok: true }));
    },
  });
  await f.coordNc.flush();
  t.is(f.cp.watchRequestMac(), undefined, 'no K before the first registration: watch requests go without a MAC');
  f.cp.start();
  const nextBeat = beatByBeat(clock, () => beats.length);
  const forms = (): string => beats.map((b) => b.form).join(',');
  await waitFor(() => f.cp.state().registered, { timeoutMs: 5000, what: 'registered' });
  await nextBeat();
  await nextBeat();
  t.is(forms(), 'mac,mac', 'MAC heartbeats once registered');
  t.deepEqual(f.cp.state().heartbeat, { form: 'mac', coordinatorKey: f.coordinator.publicKey, fallback: null }, 'the status says MAC, with the key K was agreed with');
  // Watch-broker requests are MAC'd under K_watch, derived from the K the coordinator agrees too.
  t.deepEqual(f.cp.watchRequestMac(), { node: 'node-a', key: watchRequestMacKey(coordinatorHeartbeatMacKey(f.coordinator, f.identityKey.publicKey)) });

  refuseMac = true;
  const before = beats.length;
  await nextBeat();
  // Refused: the signed heartbeat goes at once — no clock movement — and then the loop parks for an interval.
  await waitFor(() => beats.length === before + 2, { timeoutMs: 5000, intervalMs: 5, what: 'the signed heartbeat sent at once after the refusal' });
  const parked = await parkedFor(clock, 'the loop parked after the signed heartbeat');
  t.true(parked >= 180 && parked <= 220, `next heartbeat an interval later (${parked} ms)`);
  t.is(beats.length, before + 2, 'exactly one resend');
  for (let i = 0; i < 10; i++) await nextBeat();
  t.is(beats.length, before + 12, 'one heartbeat per interval: no storm');
  t.deepEqual(beats.slice(before).map((b) => b.form), ['mac', ...Array<string>(11).fill('signed')], 'signed from the refusal on');
  // The fake coordinator has seen the last heartbeat; its answer reaches the agent a moment later.
  await waitFor(() => f.cp.state().lastHeartbeatAt === clock.now(), { timeoutMs: 5000, intervalMs: 5, what: 'the last signed heartbeat answered ok' });
  t.is(f.cp.state().lastError, null, 'the signed heartbeats are answered ok: the node stays alive');
  t.deepEqual(f.cp.state().heartbeat, { form: 'signed', coordinatorKey: null, fallback: { code: 'invalid', message: 'not a signed envelope: sig: Required' } }, 'the status says signed, and the refusal why');
  t.is(f.cp.watchRequestMac(), undefined, 'fallen back: watch requests go without a MAC too (the shared budget)');
  t.like(AgentStatus.shape.controlPlane.parse({ ...f.cp.state(), knownNodes: 0 }), { heartbeat: { form: 'signed' } }, 'what the status document carries');

  // The next registration tries MACs again: one refused MAC heartbeat per registration, not per interval.
  f.cp.requestRegister('identity changed');
  await waitFor(() => reg.count() === 2, { timeoutMs: 5000, what: 're-registration' });
  const again = beats.length;
  await nextBeat();
  await waitFor(() => beats.length === again + 2, { timeoutMs: 5000, intervalMs: 5, what: 'MAC, refused, then signed at once' });
  t.deepEqual(beats.slice(again).map((b) => b.form), ['mac', 'signed']);
  t.true(beats.every((b) => b.hb.identityKey === f.identityKey.publicKey && b.hb.name === 'node-a'));
});

test('during a coordinator key rotation the MAC key is agreed with the key of the set that signed our record, not the first one', async (t) => {
  const old = await generateSigningKeyPair();
  const clock = new ManualClock();
  // The agent holds the old key first; the coordinator signs with the new one.
  const f = await setup(t, undefined, clock, (c) => [old.publicKey, c.publicKey]);
  await serveRegister(f, ok(f));
  const beats: { coordinatorKey: string | undefined; form: 'mac' | 'signed' }[] = [];
  f.coordNc.subscribe(S.heartbeat, {
    callback: (_err, msg) => {
      const body = JSON.parse(msg.string()) as { coordinatorKey?: string };
      const opened = openHeartbeat(msg.data, Heartbeat, new HeartbeatMacKeys(f.coordinator));
      beats.push({ coordinatorKey: body.coordinatorKey, form: 'mac' in body ? 'mac' : 'signed' });
      msg.respond(JSON.stringify(opened.ok ? { ok: true } : { ok: false, error: opened.error }));
    },
  });
  await f.coordNc.flush();
  f.cp.start();
  await waitFor(() => f.cp.state().registered, { timeoutMs: 5000, what: 'registered' });
  await beatByBeat(clock, () => beats.length)();
  // Answered (a refused MAC would have been followed by a signed resend before this).
  await waitFor(() => f.cp.state().lastHeartbeatAt === clock.now(), { timeoutMs: 5000, intervalMs: 5, what: 'the heartbeat answered' });
  t.deepEqual(beats, [{ coordinatorKey: f.coordinator.publicKey, form: 'mac' }]);
  t.is(f.cp.state().lastError, null, 'the MAC verified with the coordinator\'s K');
  t.like(f.cp.state().heartbeat, { form: 'mac', coordinatorKey: f.coordinator.publicKey, fallback: null });
});

test('a heartbeat and a deregister lost with the connection end at the disconnect and go again after the reconnect (manual clock)', async (t) => {
  const clock = new ManualClock();
  let scripted: ScriptedStatus | undefined;
  const f = await setup(t, () => IDENTITY, clock, undefined, (nc) => (scripted = scriptedStatus(nc)).nc);
  const say = (s: Status): void => scripted!.say(s);
  await serveRegister(f, ok(f));
  // The first heartbeat reaches the coordinator, whose reply is lost (never sent): as when the
  // agent's server goes away with the reply. The request timeout (5 s) is real time, never reached.
  const beats: number[] = [];
  f.coordNc.subscribe(S.heartbeat, {
    callback: (_err, msg) => {
      beats.push(clock.now());
      if (beats.length > 1) msg.respond(JSON.stringify({ ok: true }));
    },
  });
  await f.coordNc.flush();
  f.cp.start();
  await waitFor(() => f.cp.state().registered, { timeoutMs: 5000, what: 'registered' });
  await waitFor(() => clock.sleepers > 0, { timeoutMs: 5000, what: 'the heartbeat timer' });
  clock.advance(300);
  await waitFor(() => beats.length === 1, { timeoutMs: 5000, what: 'the first heartbeat' });
  say({ type: 'disconnect', server: 'nats://gone:4222' });
  await waitFor(() => /lost while the request/.test(f.cp.state().lastError ?? ''), { timeoutMs: 3000, what: 'the heartbeat ended at the disconnect' });
  // Nothing is sent again before the reconnect (a publish while dialling is discarded by nats.js).
  const lostAt = clock.now();
  await waitFor(() => clock.wakeups.includes(lostAt + 5000), { timeoutMs: 3000, what: 'the wait for the reconnect (at most one request timeout)' });
  t.is(beats.length, 1);
  say({ type: 'reconnect', server: 'nats://other:4222' });
  // Then at a random moment within retryMinMs (50 ms here), not the after-reconnect spread of half an interval.
  // (A spread of 0 ms sends it at once, with no sleeper armed.)
  await waitFor(() => beats.length === 2 || (clock.wakeups.some((w) => w <= lostAt + 50) && !clock.wakeups.includes(lostAt + 5000)), { timeoutMs: 3000, what: 'the retry armed within retryMinMs' });
  clock.advance(50);
  await waitFor(() => beats.length === 2 && f.cp.state().lastError === null, { timeoutMs: 3000, what: 'the heartbeat sent again and answered' });
  t.true(beats[1]! <= lostAt + 50);

  // Deregister on shutdown: the first request lost with the connection, the second answered.
  await f.cp.stop();
  const deregs: Deregister[] = [];
  f.coordNc.subscribe(S.deregister, {
    callback: (_err, msg) => {
      void (async () => {
        deregs.push(await verifyEnvelope(msg.data, f.identityKey.publicKey, Deregister));
        if (deregs.length > 1) msg.respond(JSON.stringify({ ok: true }));
      })();
    },
  });
  await f.coordNc.flush();
  const done = f.cp.deregister(2000);
  await waitFor(() => deregs.length === 1, { timeoutMs: 3000, what: 'the first deregister' });
  const armed = clock.sleepers;
  say({ type: 'disconnect', server: 'nats://gone:4222' });
  await waitFor(() => clock.sleepers > armed, { timeoutMs: 3000, what: 'the deregister waiting for the reconnect' });
  say({ type: 'reconnect', server: 'nats://other:4222' });
  t.true(await done, 'deregistered by the second request');
  t.is(deregs.length, 2);
  t.true(deregs[1]!.sentAt > deregs[0]!.sentAt, 'a fresh request (the coordinator refuses a replayed sentAt)');
});
