// The distributed engine, exercised: a KV watch that silently stalls is detected and resumed, and a
// real 3-server nats-server cluster (routes on 127.0.0.1, bucket at R3) loses its bucket's stream
// leader: no record is lost, registrations and heartbeats go on, every agent's watch — the node
// records (MeshWatch), the service exports (ServiceWatch) and the cluster enrollments
// (EnrollmentWatch), whichever server it is connected to — sees a node, a service export and an
// enrollment written right after the loss, without a full re-read, and the returning server rejoins.
import test from 'ava';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { brokeredWatchSource } from '../agent/control/brokered-watch.ts';
import { MeshWatch } from '../agent/control/mesh-watch.ts';
import { EnrollmentWatch } from '../agent/policy/enrollment-watch.ts';
import { requestExport } from '../agent/services/export-client.ts';
import { ServiceWatch } from '../agent/services/service-watch.ts';
import { judgeProgress, nextProgressCheckMs } from '../agent/control/watch-progress.ts';
import { parseCoordinatorConfig } from '../coordinator/config.ts';
import { Coordinator } from '../coordinator/coordinator.ts';
import { fakeAgent, type FakeAgent } from './helpers/fake-agent.ts';
import { enrollingClient, TestEnrollment } from './helpers/enrollment.ts';
import { systemClock } from '../lib/clock.ts';
import { createLogger, silentLogger } from '../lib/logger.ts';
import { NatsCluster } from '../lib/nats-cluster.ts';
import { waitFor } from '../lib/wait.ts';
import { serviceKeys } from '../protocol/service.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';
import { nodeRecord, putNode } from './agent-helpers.ts';
import { startWatchFixture } from './helpers/mesh-watch-fixture.ts';
import { scratchNames } from './helpers/nats-fixture.ts';

const NAMES = ['nodes.>', 'clusters.>'];

test('judgeProgress: in step, behind (maybe in flight), stalled (still short of what the last look saw)', (t) => {
  t.deepEqual(judgeProgress([10, 4], [10, 4], undefined, NAMES), { kind: 'in-step' });
  t.deepEqual(judgeProgress([10, 4], [10, 4], [12, 4], NAMES), { kind: 'in-step' }, 'caught up meanwhile');
  t.deepEqual(judgeProgress([12, 4], [10, 4], undefined, NAMES), { kind: 'behind', targets: [12, 4] });
  t.deepEqual(judgeProgress([13, 4], [12, 4], [12, 4], NAMES), { kind: 'behind', targets: [13, 4] }, 'progressing: reached the last target');
  const stalled = judgeProgress([12, 4], [10, 4], [12, 4], NAMES);
  t.is(stalled.kind, 'stalled');
  t.regex(stalled.kind === 'stalled' ? stalled.reason : '', /nodes\.>: the bucket had revision 12 a look ago, the watch is still at 10/);
  t.is(nextProgressCheckMs(1000, 5000, 1000, 15_000), 1000, 'burst after a cluster change');
  t.is(nextProgressCheckMs(6000, 5000, 1000, 15_000), 15_000, 'then the slow interval');
  t.is(nextProgressCheckMs(6000, 5000, 1000, 15_000, true), 1000, 'a look that found the watch behind is followed up soon, not an interval later');
});

test('a watch whose consumer vanished without a word is detected as stalled and resumed, not re-read', async (t) => {
  // The consumer is deleted behind the watch's back: no error, no disconnect, no message — what a
  // client sees when the server holding its consumer leaves the cluster. The library itself would
  // notice only after two missed 30 s idle heartbeats.
  const f = await startWatchFixture(t, { label: 'xl-stall', watch: { debounceMs: 20, rewatchJitterMs: 0, progressCheckMs: 300, auditIntervalMs: 0 } });
  for (let i = 0; i < 20; i++) await putNode(f.kv, f.coordinator, await nodeRecord({ name: `node-${i}` }));
  f.watch.start();
  await waitFor(() => f.watch.synced && f.watch.snapshot().nodes.size === 20, { timeoutMs: 15_000, what: 'snapshot' });
  const before = f.watch.stats();

  const jsm = await jetstreamManager(f.nc);
  const stream = 'KV_crosslink';
  for await (const c of jsm.consumers.list(stream)) await jsm.consumers.delete(stream, c.name);
  await putNode(f.kv, f.coordinator, await nodeRecord({ name: 'node-late' }));

  await waitFor(() => f.watch.snapshot().nodes.has('node-late'), { timeoutMs: 30_000, what: 'the record written after the stall' });
  const after = f.watch.stats();
  t.true(after.stalls >= 1, 'a stall was detected');
  t.true(after.resumes > before.resumes, 'the watch resumed from its last revision');
  t.true(after.totalEntries - before.totalEntries < 5, `read ${after.totalEntries - before.totalEntries} entries after the stall, not all 21`);
  t.is(f.watch.snapshot().nodes.size, 21);
});

test('3-server cluster: losing the bucket stream leader loses nothing; every watch (nodes, services, enrollments) sees what is written right after; the server rejoins', async (t) => {
  const cluster = await NatsCluster.start({ name: `xl-natsc-${scratchNames('x').id}` });
  t.teardown(() => cluster.stop());
  const { bucket, prefix } = scratchNames('xlcl');
  // Each client prefers one server (as agents spread over a cluster) and fails over to the others.
  const connectTo = (first: number, name: string): Promise<NatsConnection> => cluster.connectPreferring(first, name);

  const signingKey = await generateSigningKeyPair();
  const coordNc = await connectTo(0, 'xl-coordinator');
  t.teardown(() => coordNc.close());
  // The fake agents here sign no epoch (test/helpers/coordinator-fixture.ts).
  const config = parseCoordinatorConfig({ bucket, subjectPrefix: prefix, replicas: '3', nodeTtl: '60s', leaseTtl: '2s' });
  const coordinator = await Coordinator.start({ nc: coordNc, clock: systemClock, logger: silentLogger(), config, signingKey, holderId: 'xl-cl-coord' });
  t.teardown(() => coordinator.stop());
  await waitFor(() => coordinator.isLeader(), { timeoutMs: 30_000, what: 'coordinator leads' });

  // One agent's watches per server, on one connection as in crosslink-agent: the node records, the
  // service exports and the cluster enrollments (default stall detection and catch-up settings).
  const logger = (what: string) => (process.env['XL_DEBUG'] ? createLogger(what, 'debug') : silentLogger());
  const watches: MeshWatch[] = [];
  const services: ServiceWatch[] = [];
  const enrollments: EnrollmentWatch[] = [];
  for (let i = 0; i < 3; i++) {
    const nc = await connectTo(i, `xl-watch-${i}`);
    t.teardown(() => nc.close());
    const w = new MeshWatch({ nc, bucket, coordinatorKey: signingKey.publicKey, logger: logger(`watch-${i}`), clock: systemClock, debounceMs: 20, auditIntervalMs: 0 });
    const sw = new ServiceWatch({ nc, bucket, coordinatorKey: signingKey.publicKey, logger: logger(`services-${i}`), clock: systemClock });
    const ew = new EnrollmentWatch({ nc, bucket, coordinatorKeys: [signingKey.publicKey], logger: logger(`enrollments-${i}`), clock: systemClock });
    t.teardown(() => Promise.all([w.stop(), sw.stop(), ew.stop()]));
    watches.push(w);
    services.push(sw);
    enrollments.push(ew);
  }
  const clientNc = await connectTo(1, 'xl-agents');
  t.teardown(() => clientNc.close());
  const client = await enrollingClient(clientNc, prefix, bucket, signingKey, 5000);
  const register = async (a: FakeAgent): Promise<void> => {
    // Registrations may fail while JetStream elects a new leader: retried like an agent does.
    await waitFor(async () => (await client.register(a)).ok, { timeoutMs: 30_000, intervalMs: 250, what: `registration of ${a.name}` });
  };
  const agents: FakeAgent[] = [];
  for (let i = 0; i < 10; i++) {
    const a = await fakeAgent(`node-${i}`, { podCidrs: [`10.20.${i}.0/24`] });
    agents.push(a);
    await register(a);
  }
  // Services exported as an agent does (a request signed by a live node of the cluster, written by
  // the coordinator) and clusters enrolled as `crosslink-coordinator cluster add` does; both retried
  // while JetStream elects a new leader (the enrollment's JetStream requests time out after 2 s, as
  // the agent's, so one sent to the lost leader is retried soon).
  const enrollment = new TestEnrollment(await new Kvm(jetstream(clientNc, { timeout: 2000 })).open(bucket), signingKey);
  const exportService = (name: string, by: FakeAgent, address: string): Promise<unknown> =>
    waitFor(
      () =>
        requestExport(
          { nc: clientNc, coordinatorKey: signingKey.publicKey, identityKey: by.identity, subjectPrefix: prefix, timeoutMs: 5000 },
          { v: 1, node: by.name, identityKey: by.identity.publicKey, cluster: 'c1', namespace: 'shop', name, ports: [{ name: 'http', port: 80, protocol: 'TCP' }], addresses: [address], sentAt: by.nextSentAt() },
        ),
      { timeoutMs: 30_000, intervalMs: 250, what: `the export of ${name}` },
    );
  const enroll = (name: string, podCidr: string): Promise<unknown> =>
    // A retry after a write that went through but was not confirmed finds it enrolled.
    waitFor(async () => (await enrollment.store.readDefinition(name)) ?? (await enrollment.enroll(name, [podCidr])), { timeoutMs: 30_000, intervalMs: 250, what: `the enrollment of ${name}` });
  const serviceKey = (name: string): string => serviceKeys.export('shop', name, 'c1');
  for (let i = 0; i < 5; i++) {
    await exportService(`svc-${i}`, agents[i]!, `10.20.${i}.5`);
    await enroll(`east-${i}`, `10.40.${i}.0/24`);
  }
  for (const w of [...watches, ...services, ...enrollments]) w.start();
  await waitFor(() => watches.every((w) => w.synced && w.snapshot().nodes.size === 10), { timeoutMs: 30_000, what: 'every watch has 10 nodes' });
  await waitFor(() => services.every((w) => w.synced && w.current().size === 5), { timeoutMs: 30_000, what: 'every service watch has 5 services' });
  // c1 (enrolled by the first registration) and east-0 … east-4.
  await waitFor(() => enrollments.every((w) => w.state().known && w.state().definitions.size === 6), { timeoutMs: 30_000, what: 'every enrollment watch has 6 clusters' });
  const entriesBefore = watches.map((w) => w.stats().totalEntries);
  const servicesBefore = services.map((w) => w.stats().totalEntries);
  const enrollmentsBefore = enrollments.map((w) => w.stats().totalEntries);

  // Stop the server leading the bucket's stream.
  const jsm = await jetstreamManager(clientNc);
  const leaderName = (await jsm.streams.info(`KV_${bucket}`)).cluster?.leader ?? '';
  const lost = cluster.indexOf(leaderName);
  t.true(lost >= 0, `stream leader ${leaderName} is a member`);
  const t0 = Date.now();
  const mark = (what: string): void => t.log(`${what}: ${Date.now() - t0} ms after the loss`);
  await cluster.server(lost).stopProcess();

  // A node joins, a service is exported and a cluster enrolled right after the loss; heartbeats go on.
  const late = await fakeAgent('node-late', { podCidrs: ['10.21.0.0/24'] });
  await register(late);
  mark('node-late registered');
  await exportService('svc-late', agents[0]!, '10.20.0.6');
  mark('svc-late exported');
  await enroll('late', '10.41.0.0/24');
  mark('late enrolled');
  await waitFor(async () => (await client.heartbeat(agents[0]!, { generation: 1 })).ok, { timeoutMs: 30_000, intervalMs: 250, what: 'a heartbeat answered after the loss' });
  await waitFor(() => watches.every((w) => w.snapshot().nodes.has('node-late')), {
    timeoutMs: 45_000,
    what: 'every watch (on every server) sees the node that joined after the loss',
  });
  mark('every watch has node-late');
  t.log(watches.map((w) => w.stats()));
  for (const [i, w] of watches.entries()) {
    const read = w.stats().totalEntries - (entriesBefore[i] ?? 0);
    t.true(read < 10, `watch ${i} read ${read} entries after the loss: resumed, not re-read`);
  }
  await waitFor(() => services.every((w) => w.current().has(serviceKey('svc-late'))), { timeoutMs: 45_000, what: 'every service watch (on every server) sees the service exported after the loss' });
  await waitFor(() => enrollments.every((w) => w.state().definitions.has('late')), { timeoutMs: 45_000, what: 'every enrollment watch (on every server) sees the cluster enrolled after the loss' });
  mark('every service and enrollment watch has svc-late and late');
  t.log({ services: services.map((w) => w.stats()), enrollments: enrollments.map((w) => w.stats()) });
  // A full re-read would be 6 entries (services) and 7 (enrollments); after the loss there are 1 and
  // 2 new ones (c1 widened for node-late's pod range, and late).
  for (const [i, w] of services.entries()) {
    const read = w.stats().totalEntries - (servicesBefore[i] ?? 0);
    t.true(read < 5, `service watch ${i} read ${read} entries after the loss: resumed, not re-read`);
  }
  for (const [i, w] of enrollments.entries()) {
    const read = w.stats().totalEntries - (enrollmentsBefore[i] ?? 0);
    t.true(read < 5, `enrollment watch ${i} read ${read} entries after the loss: resumed, not re-read`);
  }

  // No record lost: the bucket (read through a surviving server) still has all 11.
  const kv = await new Kvm(clientNc).open(bucket);
  const keys = await waitFor(
    async () => {
      const out: string[] = [];
      for await (const k of await kv.keys('nodes.>')) out.push(k);
      return out;
    },
    { timeoutMs: 30_000, intervalMs: 500, what: 'the bucket keys through a surviving server' },
  );
  t.is(keys.length, 11);

  // The server comes back and rejoins: the stream has 3 current replicas again, and a node joining
  // now reaches every watch too.
  await cluster.server(lost).restart();
  await waitFor(
    async () => {
      const info = await jsm.streams.info(`KV_${bucket}`);
      return (info.cluster?.replicas ?? []).length === 2 && (info.cluster?.replicas ?? []).every((r) => r.current);
    },
    { timeoutMs: 45_000, intervalMs: 500, what: 'the returning server is a current replica again' },
  );
  mark('rejoined');
  const after = await fakeAgent('node-after', { podCidrs: ['10.22.0.0/24'] });
  await register(after);
  await exportService('svc-after', agents[1]!, '10.20.1.6');
  await enroll('after', '10.42.0.0/24');
  await waitFor(() => watches.every((w) => w.snapshot().nodes.has('node-after') && w.snapshot().nodes.size === 12), { timeoutMs: 45_000, what: 'every watch sees the node joining after the rejoin' });
  await waitFor(() => services.every((w) => w.current().has(serviceKey('svc-after')) && w.current().size === 7), { timeoutMs: 45_000, what: 'every service watch sees the service exported after the rejoin' });
  await waitFor(() => enrollments.every((w) => w.state().definitions.has('after') && w.state().definitions.size === 8), { timeoutMs: 45_000, what: 'every enrollment watch sees the cluster enrolled after the rejoin' });
  mark('every watch has node-after, svc-after and after');
});


test('fault: after the loss the cluster refuses every consumer create; an agent watching through the broker still sees a node joining right after, by catch-up (direct gets, no consumer)', async (t) => {
  const cluster = await NatsCluster.start({ name: `xl-natsc-${scratchNames('x').id}` });
  t.teardown(() => cluster.stop());
  const { bucket, prefix } = scratchNames('xlcu');
  const stream = `KV_${bucket}`;
  // Each client prefers one server (as agents spread over a cluster) and fails over to the others.
  const connectTo = (first: number, name: string): Promise<NatsConnection> => cluster.connectPreferring(first, name);
  const adminNc = await connectTo(1, 'xl-admin');
  t.teardown(() => adminNc.close());
  const jsm = await jetstreamManager(adminNc);
  // The bucket as the coordinator makes it, but with a consumer cap (nats-server 2.9 cannot change it
  // later): once the test has filled it, creating a consumer is refused — the fault, made certain.
  await new Kvm(adminNc).create(bucket, { replicas: 3, history: 1 });
  const config = (await jsm.streams.info(stream)).config;
  await jsm.streams.delete(stream);
  await jsm.streams.add({ ...config, max_consumers: 12 });

  const signingKey = await generateSigningKeyPair();
  const coordNc = await connectTo(0, 'xl-coordinator');
  t.teardown(() => coordNc.close());
  const coordinator = await Coordinator.start({ nc: coordNc, clock: systemClock, logger: silentLogger(), config: parseCoordinatorConfig({ bucket, subjectPrefix: prefix, replicas: '3', nodeTtl: '60s', leaseTtl: '2s' }), signingKey, holderId: 'xl-cu-coord' });
  t.teardown(() => coordinator.stop());
  await waitFor(() => coordinator.isLeader(), { timeoutMs: 30_000, what: 'coordinator leads' });
  const client = await enrollingClient(adminNc, prefix, bucket, signingKey, 5000);
  const register = async (a: FakeAgent): Promise<void> => {
    await waitFor(async () => (await client.register(a)).ok, { timeoutMs: 30_000, intervalMs: 250, what: `registration of ${a.name}` });
  };
  for (let i = 0; i < 3; i++) await register(await fakeAgent(`node-${i}`, { podCidrs: [`10.30.${i}.0/24`] }));

  // The agent's side: its watches through the coordinator's broker, as crosslink-agent does.
  const agentNc = await connectTo(2, 'xl-agent');
  t.teardown(() => agentNc.close());
  const src = brokeredWatchSource({ nc: agentNc, bucket, subjectPrefix: prefix, logger: silentLogger(), clock: systemClock, coordinatorKey: signingKey.publicKey });
  const watch = new MeshWatch({ nc: agentNc, watches: src, bucket, coordinatorKey: signingKey.publicKey, logger: process.env['XL_DEBUG'] ? createLogger('agent-watch', 'debug') : silentLogger(), clock: systemClock, debounceMs: 20, auditIntervalMs: 0, rewatchJitterMs: 0, progressCheckMs: 2000, progressBurstMs: 500 });
  t.teardown(() => watch.stop());
  watch.start();
  await waitFor(() => watch.synced && watch.snapshot().nodes.size === 3 && src.stats().brokered === 2, { timeoutMs: 30_000, what: 'the agent has 3 nodes through two brokered watches' });

  // Lose the server holding the agent's nodes.> consumer (its watch goes silent or its connection moves).
  let host = '';
  for await (const c of jsm.consumers.list(stream)) if (c.name.startsWith('xlw_') && c.config.filter_subject === `$KV.${bucket}.nodes.>`) host = c.cluster?.leader ?? '';
  const lost = cluster.indexOf(host);
  t.true(lost >= 0, `the watch consumer's server ${host} is a member`);
  // Fill the cap first: from now on every consumer create is refused (the agent's own consumers, on
  // the server about to go, keep their slots in the meta layer's assignments).
  let filled = 0;
  let lastErr = '';
  const fill = (what: string): Promise<string> =>
    waitFor(
      async () => {
        try {
          await jsm.consumers.add(stream, { filter_subject: `$KV.${bucket}.clusters.>`, mem_storage: true, num_replicas: 1, inactive_threshold: 120_000_000_000 });
          filled++;
          return undefined;
        } catch (err) {
          lastErr = String(err);
          return /maximum consumers/i.test(lastErr) ? lastErr : undefined;
        }
      },
      { timeoutMs: 30_000, intervalMs: 10, what },
    ).catch((err: unknown) => {
      throw new Error(`${String(err)} (filled ${filled}; last error ${lastErr})`);
    });
  await fill('consumer creates refused at the cap');
  const brokeredBefore = src.stats().brokered;
  await cluster.server(lost).stopProcess();
  // Should the loss have freed a slot, take it back before anyone else can.
  const refusal = await fill('consumer creates still refused after the loss');
  t.log(`creates refused: ${refusal}`);

  const late = await fakeAgent('node-late', { podCidrs: ['10.31.0.0/24'] });
  await register(late);
  await waitFor(() => watch.snapshot().nodes.has('node-late'), { timeoutMs: 30_000, what: 'the agent sees node-late although no watch can be created' });
  const s = watch.stats();
  t.log({ mesh: s, source: src.stats() });
  t.true(s.catchUpSessions >= 1 && s.catchingUp, 'followed by catch-up');
  t.is(src.stats().brokered, brokeredBefore, 'no watch was created after the loss');
  t.true(src.stats().catchUps >= 1);
  t.is(watch.snapshot().nodes.size, 4);
});
