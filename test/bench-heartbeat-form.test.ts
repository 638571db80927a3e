// The bench's simulated fleet heartbeats as the agent does (bench/agent-fleet.ts): MAC heartbeats
// (protocol/heartbeat-mac.ts) with K agreed at registration; against a coordinator from before them
// (which refuses the MAC form as `invalid`) each node falls back to signed heartbeats after one
// refusal, so an A/B against old code measures signatures there; XL_BENCH_HEARTBEAT_FORM=signed
// forces signatures. A scripted coordinator on a real nats-server (127.0.0.1).
import test, { type ExecutionContext } from 'ava';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { AgentFleet, makeAgents } from '../bench/agent-fleet.ts';
import { waitFor } from '../lib/wait.ts';
import { HeartbeatMacKeys } from '../protocol/heartbeat-mac.ts';
import { Heartbeat, RegistrationRequest, type HeartbeatReply, type RegisterReply } from '../protocol/messages.ts';
import { generateSigningKeyPair, openEnvelopeUnverified, signEnvelopeNow, type SigningKeyPair } from '../protocol/signing.ts';
import { subjects } from '../protocol/subjects.ts';
import { openHeartbeat, openSignedRequest } from '../protocol/validate-registration.ts';
import { scratchNames, useNatsServer } from './helpers/nats-fixture.ts';

const server = useNatsServer('xl-benchform');
const NODES = 20;

interface Seen {
  mac: number;
  signed: number;
  refused: number;
}

/** A coordinator that registers anyone and takes heartbeats in the forms it knows (`old`: signed only, as before MACs). */
async function scriptedCoordinator(t: ExecutionContext, key: SigningKeyPair, prefix: string, old: boolean): Promise<{ nc: NatsConnection; seen: Seen }> {
  const nc = await connect({ servers: server().url });
  t.teardown(() => nc.close());
  const s = subjects(prefix);
  const seen: Seen = { mac: 0, signed: 0, refused: 0 };
  const keys = new HeartbeatMacKeys(key);
  nc.subscribe(s.register, {
    callback: (_err, msg) => {
      const req = RegistrationRequest.parse(openEnvelopeUnverified(JSON.parse(msg.string()) as never));
      const { sentAt: _s, agentVersion: _a, ...rest } = req;
      const record = signEnvelopeNow({ ...rest, kind: 'node', overlayIp: '100.96.0.7', generation: 1, registeredAt: 1, updatedAt: 1 }, key.secretKey);
      msg.respond(JSON.stringify({ ok: true, record, heartbeatIntervalMs: 200, nodeTtlMs: 1000 } satisfies RegisterReply));
    },
  });
  nc.subscribe(s.heartbeat, {
    callback: (_err, msg) => {
      void (async () => {
        const isMac = 'mac' in (JSON.parse(msg.string()) as object);
        const opened = old ? await openSignedRequest(msg.data, Heartbeat) : openHeartbeat(msg.data, Heartbeat, keys);
        if (opened.ok) seen[isMac ? 'mac' : 'signed']++;
        else seen.refused++;
        msg.respond(JSON.stringify((opened.ok ? { ok: true } : { ok: false, error: opened.error }) satisfies HeartbeatReply));
      })();
    },
  });
  await nc.flush();
  return { nc, seen };
}

async function run(t: ExecutionContext, o: { old: boolean; form?: string }): Promise<{ seen: Seen; fleet: AgentFleet }> {
  const key = await generateSigningKeyPair();
  const { prefix } = scratchNames('xlbenchform');
  const { seen } = await scriptedCoordinator(t, key, prefix, o.old);
  const nc = await connect({ servers: server().url });
  t.teardown(() => nc.close());
  const saved = process.env['XL_BENCH_HEARTBEAT_FORM'];
  if (o.form === undefined) delete process.env['XL_BENCH_HEARTBEAT_FORM'];
  else process.env['XL_BENCH_HEARTBEAT_FORM'] = o.form;
  const fleet = new AgentFleet({ nc, prefix, credentialFor: () => undefined, coordinatorKey: key.publicKey }, await makeAgents(0, NODES), 3000);
  if (saved === undefined) delete process.env['XL_BENCH_HEARTBEAT_FORM'];
  else process.env['XL_BENCH_HEARTBEAT_FORM'] = saved;
  const reg = await fleet.registerAll(10);
  t.is(reg.failed, 0);
  fleet.startHeartbeats(200);
  try {
    // Every node heartbeats three times or more, answered ok.
    await waitFor(() => fleet.counters.ok >= 3 * NODES && fleet.lastOkAt.size === NODES, { timeoutMs: 20_000, intervalMs: 20, what: `three heartbeats per node answered (${fleet.counters.ok})` });
  } finally {
    await fleet.stopHeartbeats();
  }
  return { seen, fleet };
}

test.serial('against this coordinator: every heartbeat is MAC\'d, none refused', async (t) => {
  const { seen, fleet } = await run(t, { old: false });
  t.like(seen, { signed: 0, refused: 0 });
  t.true(seen.mac >= 3 * NODES);
  t.deepEqual(fleet.heartbeatForms(), { mac: NODES, signed: 0 });
});

test.serial('against a coordinator from before MAC heartbeats: one refusal per node, then signed ones (sent again at once), none failed', async (t) => {
  const { seen, fleet } = await run(t, { old: true });
  t.is(seen.refused, NODES, 'one MAC heartbeat per node refused (`invalid`), no more');
  t.is(seen.mac, 0);
  t.is(fleet.counters.macRefused, NODES);
  t.is(fleet.counters.failed, 0, 'the refusal is no failed heartbeat: the signed one went at once');
  t.deepEqual(fleet.heartbeatForms(), { mac: 0, signed: NODES });
});

test.serial('XL_BENCH_HEARTBEAT_FORM=signed: signed heartbeats only, with this coordinator', async (t) => {
  const { seen, fleet } = await run(t, { old: false, form: 'signed' });
  t.like(seen, { mac: 0, refused: 0 });
  t.deepEqual(fleet.heartbeatForms(), { mac: 0, signed: NODES });
});
