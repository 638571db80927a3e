// A registration in flight when the agent's NATS server goes away (issue 10): on a real 3-server
// cluster, the real ControlPlane connected to server 2 registers with the real coordinator (on
// server 0) through a relay that forwards every request but holds the FIRST registration's reply
// forever — the coordinator applies it, the agent never hears. Then server 2 is stopped. The request
// ends at the disconnect (lib/nats-request.ts), and the agent registers again once reconnected to
// another server — a fresh request the coordinator takes as an unchanged re-registration — long
// before the request's own timeout (30 s here), which it would otherwise wait out.
import test from 'ava';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { ControlPlane } from '../agent/control/control-plane.ts';
import type { NodeIdentity } from '../agent/plan/model.ts';
import { parseCoordinatorConfig } from '../coordinator/config.ts';
import { Coordinator } from '../coordinator/coordinator.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { NatsCluster } from '../lib/nats-cluster.ts';
import { waitFor } from '../lib/wait.ts';
import { generateSigningKeyPair, generateWireguardKeyPair } from '../protocol/signing.ts';
import { subjects } from '../protocol/subjects.ts';
import { TestEnrollment } from './helpers/enrollment.ts';
import { scratchNames } from './helpers/nats-fixture.ts';

const IDENTITY: NodeIdentity = {
  name: 'node-inflight',
  cluster: 'c1',
  location: 'lab',
  endpoints: ['192.0.2.10:51820'],
  privateAddresses: ['10.0.0.10'],
  podCidrs: ['10.20.7.0/24'],
  topology: 'mesh',
  gatewayEligible: true,
};

test('3-server cluster: a registration in flight when the agent\'s server stops is sent again after the reconnect, not after its timeout', async (t) => {
  const cluster = await NatsCluster.start({ name: `xl-natsc-${scratchNames('x').id}` });
  t.teardown(() => cluster.stop());
  const { bucket, prefix } = scratchNames('xlif');
  const relayPrefix = `${prefix}-relay`;
  // Each client prefers one server (as agents spread over a cluster) and fails over to the others.
  const connectTo = (first: number, name: string): Promise<NatsConnection> => cluster.connectPreferring(first, name);

  const signingKey = await generateSigningKeyPair();
  const coordNc = await connectTo(0, 'xl-coordinator');
  t.teardown(() => coordNc.close());
  const config = parseCoordinatorConfig({ bucket, subjectPrefix: prefix, replicas: '3', nodeTtl: '60s', leaseTtl: '2s' });
  const coordinator = await Coordinator.start({ nc: coordNc, clock: systemClock, logger: silentLogger(), config, signingKey, holderId: 'xl-if-coord' });
  t.teardown(() => coordinator.stop());
  await waitFor(() => coordinator.isLeader(), { timeoutMs: 30_000, what: 'coordinator leads' });
  const enrollment = new TestEnrollment(await new Kvm(jetstream(coordNc, { timeout: 2000 })).open(bucket), signingKey);
  const joinCredential = await enrollment.claim({ cluster: IDENTITY.cluster, podCidrs: IDENTITY.podCidrs, topology: IDENTITY.topology });

  // The relay (on server 0, as the coordinator): the agent speaks to `relayPrefix`; each request is
  // forwarded to the coordinator; the first registration's reply is held forever.
  const relayNc = await connectTo(0, 'xl-relay');
  t.teardown(() => relayNc.close());
  const to = subjects(prefix);
  const from = subjects(relayPrefix);
  const registers: { at: number; afterStop: boolean; ok?: boolean }[] = [];
  let stopped = false;
  const relay = (inbound: string, outbound: string, hold: (m: Msg) => boolean, seen?: (reply: string) => void): void => {
    relayNc.subscribe(inbound, {
      callback: (_err, msg) => {
        void (async () => {
          const held = hold(msg);
          try {
            const reply = await relayNc.request(outbound, msg.data, { timeout: 10_000 });
            seen?.(reply.string());
            if (!held) msg.respond(reply.data);
          } catch {
            // The agent retries.
          }
        })();
      },
    });
  };
  relay(
    from.register,
    to.register,
    () => registers.push({ at: Date.now(), afterStop: stopped }) === 1,
    (reply) => {
      const r = registers.find((x) => x.ok === undefined);
      if (r) r.ok = (JSON.parse(reply) as { ok: boolean }).ok;
    },
  );
  relay(from.heartbeat, to.heartbeat, () => false);
  await relayNc.flush();

  const agentNc = await connectTo(2, 'xl-agent');
  t.teardown(() => agentNc.close());
  t.is(agentNc.info?.server_name, `${cluster.name}-2`, 'the agent is on server 2');
  const reconnects: string[] = [];
  void (async () => {
    for await (const s of agentNc.status()) if (s.type === 'reconnect') reconnects.push(s.server);
  })();
  const identityKey = await generateSigningKeyPair();
  const wg = await generateWireguardKeyPair();
  const cp = new ControlPlane({
    nc: agentNc,
    clock: systemClock,
    logger: silentLogger(),
    coordinatorKey: signingKey.publicKey,
    wireguardPublicKey: wg.publicKey,
    identityKey,
    joinCredential,
    identity: () => IDENTITY,
    listenPort: 51820,
    agentVersion: 'test',
    subjectPrefix: relayPrefix,
    // Far beyond the wait below: a retry only after the timeout cannot pass.
    requestTimeoutMs: 30_000,
    random: () => 0.5,
  });
  t.teardown(() => cp.stop());
  cp.start();

  // The first registration reached the coordinator, which applied it (its reply is held).
  await waitFor(() => registers[0]?.ok === true, { timeoutMs: 20_000, what: 'the first registration applied by the coordinator' });
  t.false(cp.state().registered, 'the agent has not heard');
  stopped = true;
  const stopAt = Date.now();
  await cluster.server(2).stopProcess();

  await waitFor(() => cp.state().registered, { timeoutMs: 15_000, what: 'the agent registered after the loss of its server (request timeout 30 s)' });
  t.log(`registered ${Date.now() - stopAt} ms after the stop began; the resend reached the coordinator ${(registers[1]?.at ?? Number.NaN) - stopAt} ms after`);
  t.is(registers.length, 2, 'one retry');
  t.true(registers[1]!.afterStop, 'the retry came after the stop');
  t.is(registers[1]!.ok, true, 'the coordinator took the resent registration (an unchanged re-registration, fresh sentAt)');
  t.true(reconnects.length >= 1, 'the agent reconnected');
  t.not(agentNc.info?.server_name, `${cluster.name}-2`, 'through another server');
  t.is(cp.state().record?.name, IDENTITY.name);
  // Heartbeats go on through the new server.
  await waitFor(() => cp.state().lastError === null, { timeoutMs: 5000, what: 'no error left' });
});
