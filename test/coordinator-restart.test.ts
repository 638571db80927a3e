// Restart without storms (issue 10): a coordinator that crashes (its connection gone, the lease not
// released) and comes back with the same holder id (POD_NAME in the manifests) leads again at once,
// not after its lease runs out; every heartbeating node is heard again (heartbeats caught by the
// outage are retried soon, like the agent does); no node expires and no record is rewritten.
// Real nats-server, real coordinators in-process, simulated nodes that follow the agent's
// heartbeat rules (bench/agent-fleet.ts). A started replica answers heartbeats at once (it
// subscribes after its first lease round; "unavailable" while it loads), never in silence.
import test from 'ava';
import { performance } from 'node:perf_hooks';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { AgentFleet, CLUSTERS, clusterRange, makeAgents } from '../bench/agent-fleet.ts';
import { addCluster } from '../coordinator/cluster-admin.ts';
import { parseCoordinatorConfig } from '../coordinator/config.ts';
import { Coordinator } from '../coordinator/coordinator.ts';
import { StateStore } from '../coordinator/store.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import type { JoinCredential } from '../protocol/join-credential.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';
import { kvKeys, subjects } from '../protocol/subjects.ts';
import { HeartbeatReply, type Heartbeat } from '../protocol/messages.ts';
import { rpc, signed } from './helpers/fake-agent.ts';
import { scratchNames, useNatsServer } from './helpers/nats-fixture.ts';

const server = useNatsServer('xl-restart');
const NODES = 30;
/** Long enough that waiting it out cannot pass for "at once" within the test's deadline. */
const LEASE_TTL = '120s';
const NODE_TTL_MS = 4000;

interface Replica {
  readonly coordinator: Coordinator;
  readonly nc: NatsConnection;
}

test('a crashed coordinator restarted with the same holder id leads at once; every node is heard again; nothing expires or is rewritten', async (t) => {
  const { id, bucket, prefix } = scratchNames('xlrestart');
  const key = await generateSigningKeyPair();
  const config = parseCoordinatorConfig({ bucket, subjectPrefix: prefix, nodeTtl: `${NODE_TTL_MS}ms`, leaseTtl: LEASE_TTL });
  const holderId = `xl-coordinator-${id}`;
  const replicas: Replica[] = [];
  const startReplica = async (): Promise<Replica> => {
    const nc = await connect({ servers: server().url, name: `xl-restart-${id}`, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    const coordinator = await Coordinator.start({ nc, clock: systemClock, logger: silentLogger(), config, signingKey: key, holderId });
    const r = { coordinator, nc };
    replicas.push(r);
    return r;
  };
  const agentsNc = await connect({ servers: server().url, name: `xl-restart-agents-${id}`, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  const fleets: AgentFleet[] = [];
  t.teardown(async () => {
    for (const f of fleets) await f.stopHeartbeats();
    for (const r of replicas) {
      await r.coordinator.stop();
      if (!r.nc.isClosed()) await r.nc.close();
    }
    await agentsNc.close();
  });

  const first = await startReplica();
  await waitFor(() => first.coordinator.isLeader(), { timeoutMs: 20_000, what: 'the first coordinator leads' });
  const kv = await new Kvm(agentsNc).open(bucket);
  const store = new StateStore(kv, key, silentLogger());
  const credentials = new Map<string, JoinCredential>();
  for (let c = 0; c < CLUSTERS; c++) {
    const r = await addCluster({ store, clock: systemClock }, { name: `c${c}`, podCidrs: [clusterRange(c)], topology: 'mesh', allowPublic: false });
    credentials.set(`c${c}`, r.credential);
  }
  const fleet = new AgentFleet({ nc: agentsNc, prefix, credentialFor: (c) => credentials.get(c) }, await makeAgents(0, NODES), 3000);
  fleets.push(fleet);
  const registered = await fleet.registerAll(10);
  t.is(registered.failed, 0);
  fleet.startHeartbeats(registered.heartbeatIntervalMs);
  await waitFor(() => fleet.agents.every((a) => fleet.lastOkAt.has(a.name)), { timeoutMs: 30_000, what: 'every node heartbeated once' });
  const revision = (await kv.status()).streamInfo.state.last_seq;
  fleet.resetCounters();

  // Crash: the connection drops, nothing is released; heartbeats now fail.
  await first.nc.close();
  const crashedAt = performance.now();
  await waitFor(() => fleet.counters.failed > 0, { timeoutMs: 20_000, what: 'a heartbeat failing during the outage' });

  // The same pod name again: it finds its own lease and leads after its first round.
  const second = await startReplica();
  const restartedAt = performance.now();
  // From the moment it has started, it answers at once: "unavailable" while it loads the bucket,
  // then ok — never silence (an agent would wait out its whole request timeout).
  const probe = fleet.agents[0]!;
  // Signed with the epoch it learned from the crashed one, as the agent signs it: the restart is a new
  // term, so the answer at once is "stale-epoch" with the new epoch (the agent re-signs at once), or
  // "unavailable" while the bucket loads, or ok.
  const hb: Heartbeat = { v: 1, name: probe.name, identityKey: probe.identity.publicKey, generation: 0, sentAt: probe.nextSentAt(), ...(probe.epoch === undefined ? {} : { epoch: probe.epoch }) };
  const answer = await rpc(agentsNc, subjects(prefix).heartbeat, await signed(hb, probe.identity.secretKey), HeartbeatReply, 3000);
  t.true(answer.ok || answer.error.code === 'unavailable' || answer.error.code === 'stale-epoch', `answered ${JSON.stringify(answer)}`);
  await waitFor(() => second.coordinator.isLeader(), {
    timeoutMs: 30_000,
    intervalMs: 20,
    what: `the restarted coordinator to lead (a full lease would be ${LEASE_TTL})`,
  });

  // Every node heard again by the new process (retries of the failed heartbeats included).
  await waitFor(() => fleet !== undefined && fleet.agents.every((a) => (fleet.lastOkAt.get(a.name) ?? 0) > restartedAt), {
    timeoutMs: 30_000,
    intervalMs: 20,
    what: 'every node heard again after the restart',
  });
  // Let a whole node TTL pass since the crash while the new leader runs its expiry rounds.
  await waitFor(() => performance.now() - crashedAt > NODE_TTL_MS + 1000, { timeoutMs: 30_000, intervalMs: 100, what: 'one node TTL after the crash' });
  await waitFor(() => fleet !== undefined && fleet.agents.every((a) => (fleet.lastOkAt.get(a.name) ?? 0) > crashedAt + NODE_TTL_MS), {
    timeoutMs: 30_000,
    intervalMs: 20,
    what: 'every node heard after one TTL',
  });

  const counters = fleet.counters;
  t.is(counters.unknownNode, 0, 'no heartbeat was answered "unknown-node" (no node was forgotten or expired)');
  t.is(counters.reregistered, 0);
  let nodeWrites = 0;
  let nodeDeletes = 0;
  let otherWrites = 0;
  for await (const e of await kv.history()) {
    if (e.revision <= revision || e.key === kvKeys.lease) continue;
    if (!e.key.startsWith('nodes.')) otherWrites++;
    else if (e.operation === 'PUT') nodeWrites++;
    else nodeDeletes++;
  }
  t.is(nodeDeletes, 0, 'no node expired');
  t.is(nodeWrites, 0, 'no node record rewritten');
  t.is(otherWrites, 0, 'no ipam or cluster record rewritten');
});
