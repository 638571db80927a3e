// NATS as deployments run it: a real nats-server with TLS (CA, server and client certificates made
// with openssl here) and the accounts and users `crosslink-coordinator nats-config` renders, with a
// real Coordinator in its account. Each role can do what it needs (a real registration, heartbeat,
// MeshWatch); what it must not do is refused by the server.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AckPolicy, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats, natsFlagOf, natsSettingsFrom, redactUrl, RECONNECT_ONE_SHOT, type NatsSettings, type RawNatsOptions } from '../lib/nats-connect.ts';
import { freeLoopbackPort } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { COORDINATOR_INBOX_PREFIX, renderAccounts, type AccountLimits, type NatsUserSpec } from '../coordinator/nats-permissions.ts';
import { parseMaxConsumers } from '../coordinator/nats-config-command.ts';
import { ValidationError } from '../lib/errors.ts';
import { describeConfig, parseCoordinatorConfig } from '../coordinator/config.ts';
import { Coordinator } from '../coordinator/coordinator.ts';
import { agentClient, fakeAgent } from './helpers/fake-agent.ts';
import { MeshWatch } from '../agent/control/mesh-watch.ts';
import { brokeredWatchSource } from '../agent/control/brokered-watch.ts';
import { WatchReply } from '../protocol/watch-broker.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { generateSigningKeyPair, type SigningKeyPair } from '../protocol/signing.ts';
import { TestEnrollment } from './helpers/enrollment.ts';
import { makeCa, makeCert, makeCerts } from './helpers/tls-certs.ts';
import { parseManifestValues, renderManifests } from '../cli/manifests.ts';
import { readEvents } from '../cli/events.ts';
import { kvEventSigners } from '../cli/event-signers.ts';
import { signEnvelopeNow } from '../protocol/signing.ts';
import type { CrosslinkEvent } from '../protocol/events.ts';
import { healthStreamName } from '../protocol/health-summary.ts';
import { parseAgentConfig } from '../agent/config.ts';
import { parseAllDocuments } from 'yaml';
import { pino } from 'pino';
import { announceLeader } from '../coordinator/leader-announce.ts';
import { watchLeaderUp } from '../agent/control/leader-up-watch.ts';
import type { LeaderUp } from '../protocol/leader-up.ts';
import { requestSubjects } from '../coordinator/nats-permissions.ts';
import { subjects } from '../protocol/subjects.ts';

const BUCKET = 'crosslink';
const P = 'crosslink.v1';

interface Lab {
  dir: string;
  port: number;
  server: ChildProcess;
  log: string;
}

const PASSWORDS = { coordinator: 'c-secret-1', agent: 'a-secret-2', reader: 'r-secret-3' };

const USERS: NatsUserSpec[] = [
  { user: 'crosslink-coordinator', role: 'coordinator', password: PASSWORDS.coordinator },
  { user: 'crosslink-agent', role: 'agent', password: PASSWORDS.agent },
  { user: 'crosslink-reader', role: 'reader', password: PASSWORDS.reader },
];

/** nats-server on 127.0.0.1 with the rendered accounts; TLS with client certificates unless `plain`. */
async function startServer(o: { plain?: boolean; limits?: AccountLimits } = {}): Promise<Lab> {
  const dir = await mkdtemp(join(tmpdir(), 'xl-natsauth-'));
  if (o.plain !== true) await makeCerts(dir);
  const port = await freeLoopbackPort();
  await writeFile(join(dir, 'auth.conf'), renderAccounts(USERS, { bucket: BUCKET, subjectPrefix: P }, o.limits));
  await writeFile(
    join(dir, 'server.conf'),
    [
      `listen: 127.0.0.1:${port}`,
      'server_name: xl-natsauth',
      `jetstream { store_dir: ${JSON.stringify(join(dir, 'js'))} }`,
      ...(o.plain === true
        ? []
        : [`tls { cert_file: ${JSON.stringify(join(dir, 'server.pem'))}, key_file: ${JSON.stringify(join(dir, 'server.key'))}, ca_file: ${JSON.stringify(join(dir, 'ca.pem'))}, verify: true, timeout: 5 }`]),
      'include auth.conf',
      '',
    ].join('\n'),
  );
  const server = spawn('nats-server', ['-c', join(dir, 'server.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lab: Lab = { dir, port, server, log: '' };
  const onData = (d: Buffer): void => {
    lab.log = (lab.log + d.toString()).slice(-20_000);
  };
  server.stdout.on('data', onData);
  server.stderr.on('data', onData);
  await waitFor(() => lab.log.includes('Server is ready') || (server.exitCode !== null ? 'exited' : false), { timeoutMs: 20_000, what: 'nats-server with TLS and users' });
  if (!lab.log.includes('Server is ready')) throw new Error(`nats-server failed: ${lab.log}`);
  return lab;
}

async function stopServer(lab: Lab): Promise<void> {
  if (lab.server.exitCode === null && lab.server.signalCode === null) {
    const exited = new Promise((resolve) => lab.server.once('exit', resolve));
    lab.server.kill('SIGTERM');
    await exited;
  }
  await rm(lab.dir, { recursive: true, force: true });
}

function settings(lab: Lab, raw: Omit<RawNatsOptions, 'urls'> & { url?: string }): NatsSettings {
  return natsSettingsFrom(
    {
      natsTlsCa: join(lab.dir, 'ca.pem'),
      natsTlsCert: join(lab.dir, 'client.pem'),
      natsTlsKey: join(lab.dir, 'client.key'),
      ...raw,
      urls: [raw.url ?? `tls://127.0.0.1:${lab.port}`],
    },
    natsFlagOf,
    '--nats-url',
  );
}

/** Resolves to the error message, or 'ok'. Bounded (the bound's timer is cleared when `p` settles first). */
async function outcome(p: Promise<unknown>): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('timeout')), 8000);
  });
  try {
    await Promise.race([p, bound]);
    return 'ok';
  } catch (err) {
    return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  } finally {
    clearTimeout(timer);
  }
}

const denied = /permission|authorization|timeout|no responders/i;

let lab: Lab;
let coordinatorNc: NatsConnection;
let coordinator: Coordinator;
let signingKey: SigningKeyPair;
let enrollment: TestEnrollment;
const coordinatorWarnings: string[] = [];
const cleanup: (() => Promise<void> | void)[] = [];

test.before(async () => {
  lab = await startServer();
  signingKey = await generateSigningKeyPair();
  // The real coordinator in its account: user:password in a tls:// URL (was ignored before:
  // Authorization Violation), its own inbox prefix (its deliveries stay in its account).
  coordinatorNc = await connectNats(settings(lab, { url: `tls://crosslink-coordinator:${PASSWORDS.coordinator}@127.0.0.1:${lab.port}` }), 'xl-test-coordinator', {
    ...RECONNECT_ONE_SHOT,
    inboxPrefix: COORDINATOR_INBOX_PREFIX,
  });
  const config = parseCoordinatorConfig({ bucket: BUCKET, subjectPrefix: P, nodeTtl: '30s', leaseTtl: '5s' });
  // Its warnings are kept: the consumer reaper logs each removal there (its events are covered by test/consumer-reaper.test.ts).
  const logger = pino({ level: 'warn' }, { write: (line: string) => void coordinatorWarnings.push(line) });
  coordinator = await Coordinator.start({ nc: coordinatorNc, clock: systemClock, logger, config, signingKey });
  await waitFor(() => coordinator.isLeader(), { timeoutMs: 15_000, what: 'coordinator leadership' });
  // Cluster enrollment goes through the coordinator's account (the operator's admin commands do the same).
  enrollment = new TestEnrollment(await new Kvm(coordinatorNc).open(BUCKET), signingKey);
});
test.after.always(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
  await coordinator?.stop().catch(() => undefined);
  await coordinatorNc?.close().catch(() => undefined);
  if (lab) await stopServer(lab);
});

test('settings: user:pass@ is taken out of the URL; redaction hides it', (t) => {
  const s = natsSettingsFrom({ urls: ['tls://u:p%40ss@nats.example:4443', 'nats://u:p%40ss@10.0.0.2'] }, natsFlagOf, '--nats-url');
  t.deepEqual(s.servers, ['tls://nats.example:4443', 'nats://10.0.0.2:4222']);
  t.is(s.user, 'u');
  t.is(s.password, 'p@ss');
  t.not(s.tls, null);
  t.is(redactUrl('tls://u:secret@h:1'), 'tls://***@h:1');
  t.throws(() => natsSettingsFrom({ urls: ['nats://u:a@h', 'nats://u:b@h2'] }, natsFlagOf, '--nats-url'), { message: /same user:password/ });
  t.throws(() => natsSettingsFrom({ urls: ['nats://h'], natsTlsCert: '/c.pem' }, natsFlagOf, '--nats-url'), { message: /both --nats-tls-cert and --nats-tls-key/ });
  t.false(JSON.stringify(s.servers).includes('p@ss'));
  // The coordinator's start-up log line names servers and the kind of auth, never the password.
  const c = parseCoordinatorConfig({ natsUrl: 'tls://crosslink-coordinator:hunter2@10.0.0.1:4222' });
  t.false(JSON.stringify(describeConfig(c)).includes('hunter2'));
  t.is(c.nats.password, 'hunter2');
});

async function agentConnection(name: string): Promise<NatsConnection> {
  await writeFile(join(lab.dir, 'agent.password'), `${PASSWORDS.agent}\n`, { mode: 0o600 });
  const nc = await connectNats(settings(lab, { natsUser: 'crosslink-agent', natsPasswordFile: join(lab.dir, 'agent.password') }), name, RECONNECT_ONE_SHOT);
  cleanup.push(() => nc.close().catch(() => undefined));
  return nc;
}

async function readerConnection(name: string): Promise<NatsConnection> {
  const nc = await connectNats(settings(lab, { url: `tls://crosslink-reader:${PASSWORDS.reader}@127.0.0.1:${lab.port}` }), name, RECONNECT_ONE_SHOT);
  cleanup.push(() => nc.close().catch(() => undefined));
  return nc;
}

/** The agent's watch source: through the coordinator's watch broker, no fallback (agents create no consumer). */
function agentWatches(nc: NatsConnection): ReturnType<typeof brokeredWatchSource> {
  return brokeredWatchSource({ nc, bucket: BUCKET, subjectPrefix: P, logger: silentLogger(), clock: systemClock, coordinatorKey: signingKey.publicKey });
}

test.serial('agent (real coordinator): registers with its join credential, heartbeats, and its MeshWatch sees the signed record and later changes through the watch broker', async (t) => {
  const nc = await agentConnection('xl-test-agent');
  const client = agentClient(nc, P, { timeoutMs: 8000, credentialFor: enrollment.credentialFor });
  const a = await fakeAgent('node-a', { cluster: 'c1', podCidrs: ['10.10.0.0/24'] });
  const reply = await client.register(a);
  t.true(reply.ok, JSON.stringify(reply));
  // As the agent does: the epoch learned from the registration reply is signed into the heartbeat
  // (this coordinator runs the default --require-heartbeat-epoch on).
  const hb = await client.heartbeat(a, { epoch: reply.epoch });
  t.true(hb.ok, JSON.stringify(hb));
  // The agent's own watch: push consumers on nodes.>/clusters.> the coordinator creates for it (the
  // agent credential may not create any), direct gets for progress.
  const watches = agentWatches(nc);
  const watch = new MeshWatch({ nc, watches, bucket: BUCKET, coordinatorKey: signingKey.publicKey, logger: silentLogger(), clock: systemClock });
  let seen = false;
  watch.onSnapshot((s) => (seen ||= s.nodes.has('node-a') && s.clusters.has('c1')));
  watch.start();
  cleanup.push(() => watch.stop());
  await waitFor(() => seen, { timeoutMs: 15_000, what: 'node-a and cluster c1 in the agent\'s MeshWatch' });
  // A later change arrives through the same brokered watch.
  const a2 = await fakeAgent('node-a2', { cluster: 'c1', podCidrs: ['10.10.3.0/24'] });
  t.true((await client.register(a2)).ok);
  await waitFor(() => watch.snapshot().nodes.has('node-a2'), { timeoutMs: 15_000, what: 'a later registration in the agent\'s MeshWatch' });
  t.like(watches.stats(), { brokered: 2, fallbacks: 0 });
  t.deepEqual(await watch.runAudit(), { kind: 'in-step' }, 'the audit counts keys through the broker');
  // The nats.js watch on the agent's own credential is refused: it would create a consumer.
  t.regex(await outcome((await new Kvm(nc).open(BUCKET)).watch({ key: 'nodes.>' })), denied, 'a direct watch with the agent credential');
  // As the agent's PolicyWatch opens it: gets are direct gets (the key is in the subject).
  const kv = await new Kvm(nc).open(BUCKET, { allow_direct: true });
  t.not(await kv.get('nodes.node-a'), null, 'direct get of a node record');
  t.is(await outcome(kv.get('policy.current')), 'ok', 'direct get of the policy');
  // The cluster enrollments (the policy's cluster → CIDR map): readable, and nothing secret in them.
  const def = await kv.get('enrollments.c1');
  t.not(def, null, 'direct get of an enrollment');
  const secret = enrollment.credential('c1')?.secretKey;
  t.truthy(secret);
  const text = def?.string() ?? '';
  const payload = Buffer.from((JSON.parse(text) as { payload: string }).payload, 'base64').toString('utf8');
  t.false(text.includes(secret ?? '?') || payload.includes(secret ?? '?') || payload.includes(Buffer.from(secret ?? '?', 'base64').subarray(0, 32).toString('base64')), 'no part of the join secret');
  t.deepEqual(Object.keys(JSON.parse(payload) as object).sort(), ['allowPublic', 'createdAt', 'credentialGeneration', 'joinKey', 'kind', 'name', 'podCidrs', 'topology', 'updatedAt', 'v']);
  const w = await watches.watch({ key: 'enrollments.>' });
  const watched: string[] = [];
  void (async () => {
    for await (const e of w) watched.push(e.key);
  })();
  await waitFor(() => watched.includes('enrollments.c1'), { timeoutMs: 10_000, what: 'the agent\'s watch of enrollments.>' });
  w.stop();
});

test.serial('agent: no reading ipam, revocations or the lease; no writes; no consumers (on internals or aimed at a service)', async (t) => {
  const nc = await agentConnection('xl-test-agent-evil');
  const kv = await new Kvm(nc).open(BUCKET, { allow_direct: true });
  const ckv = await new Kvm(coordinatorNc).open(BUCKET);
  t.not(await ckv.get('ipam.node-a'), null, 'the coordinator wrote an ipam entry');
  for (const key of ['ipam.node-a', 'coordinator.lease', 'revoked.node-a']) t.regex(await outcome(kv.get(key)), denied, `get ${key}`);
  for (const key of ['ipam.>', 'coordinator.lease', 'identities.>', '>']) t.regex(await outcome(kv.watch({ key })), denied, `watch ${key}`);
  t.regex(await outcome(kv.put('nodes.evil', '{}')), denied, 'put');
  t.regex(await outcome(kv.delete('nodes.node-a')), denied, 'delete');
  const jsm = await jetstreamManager(nc, { timeout: 5000 });
  const stream = `KV_${BUCKET}`;
  t.regex(await outcome(jsm.consumers.add(stream, { durable_name: 'evil', filter_subject: `$KV.${BUCKET}.ipam.>` })), denied, 'durable consumer on ipam');
  t.regex(await outcome(jsm.consumers.add(stream, { durable_name: 'evil2' })), denied, 'unfiltered durable consumer');
  t.regex(await outcome(jsm.consumers.add(stream, { deliver_subject: `${P}.heartbeat`, filter_subject: `$KV.${BUCKET}.ipam.>` })), denied, 'push consumer of ipam');
  t.regex(await outcome(jsm.streams.getMessage(stream, { last_by_subj: `$KV.${BUCKET}.ipam.node-a` })), denied, 'stream msg get');
  // The body-addressed direct get (what the broker's catch-up uses with its own credential) is not the agent's.
  t.regex(await outcome(jsm.direct.getMessage(stream, { seq: 1, next_by_subj: `$KV.${BUCKET}.ipam.>` })), denied, 'direct get by body (next_by_subj) of ipam');
  t.regex(await outcome(jsm.direct.getMessage(stream, { seq: 1, next_by_subj: `$KV.${BUCKET}.nodes.>` })), denied, 'direct get by body, even of a readable range');

  // A push consumer on a readable range, aimed at the coordinator's heartbeat subject: the consumer
  // lives in the STORE account, where nothing subscribes, so the server delivers nowhere.
  const spy: string[] = [];
  const sub = coordinatorNc.subscribe(`${P}.heartbeat`, { callback: (_err, m) => void spy.push(m.subject) });
  await coordinatorNc.flush();
  // An agent credential may not create any consumer (the coordinator's watch broker creates its
  // watches, delivering only to `_INBOX.`); readers' consumers aimed at a service deliver nowhere (below).
  t.regex(await outcome(jsm.consumers.add(stream, { name: 'hijack', deliver_subject: `${P}.heartbeat`, filter_subject: `$KV.${BUCKET}.nodes.>` })), denied, 'push consumer aimed at the heartbeat subject');
  // A real heartbeat still arrives (and is the only thing on the subject).
  const client = agentClient(nc, P, { timeoutMs: 8000, credentialFor: enrollment.credentialFor });
  const b = await fakeAgent('node-b', { cluster: 'c1', podCidrs: ['10.10.1.0/24'] });
  const registeredB = await client.register(b);
  t.true(registeredB.ok);
  t.true((await client.heartbeat(b, { epoch: registeredB.epoch })).ok);
  await waitFor(() => spy.length >= 1, { timeoutMs: 5000, what: 'the heartbeat on the spy' });
  sub.unsubscribe();
  t.is(spy.length, 1, 'only the real heartbeat reached the coordinator\'s subject');
  // The bucket is unchanged.
  t.is(await ckv.get('nodes.evil'), null);
  t.not(await ckv.get('nodes.node-a'), null);
});

test.serial('leader up reaches agents under the accounts; agents create no push consumer, and none a reader creates delivers onto it or onto a coordinator subject', async (t) => {
  const s = subjects(P);
  const stream = `KV_${BUCKET}`;
  const nc = await agentConnection('xl-test-agent-leader-up');
  // Everything that arrives on the leader-up subject in the agents' account, and the agent's own
  // verified view of it (agent/control/leader-up-watch.ts, as the agent runs it).
  const raw: string[] = [];
  const ears = nc.subscribe(s.leaderUp, { callback: (err, m) => void raw.push(err ? `error: ${err.message}` : m.string()) });
  const heard: LeaderUp[] = [];
  const stopWatch = watchLeaderUp({ nc, subject: s.leaderUp, coordinatorKey: signingKey.publicKey, clock: systemClock, logger: silentLogger() }, (a) => void heard.push(a));
  cleanup.push(() => {
    stopWatch();
    ears.unsubscribe();
  });
  // The coordinator's subjects, as the coordinator's account sees them.
  const coordinatorSubjects = [...requestSubjects(P), s.leaderPresence];
  const spied: string[] = [];
  const spies = coordinatorSubjects.map((subject) => coordinatorNc.subscribe(subject, { callback: (_e, m) => void spied.push(m.subject) }));
  cleanup.push(() => spies.forEach((sp) => sp.unsubscribe()));
  await Promise.all([nc.flush(), coordinatorNc.flush()]);
  // A READER credential (agents may create no consumer at all) aims push consumers of a readable range
  // (records exist: the earlier tests registered nodes) at leader-up and at every coordinator subject.
  // They are created in STORE (the bucket's account): their deliveries are published there, where
  // nothing imports these subjects.
  const jsm = await jetstreamManager(await readerConnection('xl-test-reader-aim'), { timeout: 5000 });
  t.regex(await outcome((await jetstreamManager(nc, { timeout: 5000 })).consumers.add(stream, { name: 'aim-agent', deliver_subject: s.leaderUp, filter_subject: `$KV.${BUCKET}.nodes.>`, ack_policy: AckPolicy.None })), denied, 'the agent credential creates none');
  const cjsm = await jetstreamManager(coordinatorNc, { timeout: 5000 });
  const targets = [s.leaderUp, ...coordinatorSubjects];
  for (const [i, deliver] of targets.entries()) {
    const name = `aim${i}`;
    const created = await outcome(jsm.consumers.add(stream, { name, deliver_subject: deliver, filter_subject: `$KV.${BUCKET}.nodes.>`, ack_policy: AckPolicy.None }));
    t.is(created, 'ok', `the reader's consumer aimed at ${deliver}`);
    const info = await cjsm.consumers.info(stream, name);
    t.not(info.push_bound, true, `no interest on ${deliver} in the bucket's account`);
    t.is(info.delivered.consumer_seq, 0, `nothing delivered to ${deliver}`);
    t.true(info.num_pending > 0, `it had records to deliver to ${deliver}`);
    await cjsm.consumers.delete(stream, name);
  }
  // The real announcement (what a new leader publishes once it serves) reaches the agent and verifies.
  await announceLeader({ nc: coordinatorNc, subject: s.leaderUp, signingKey, holder: 'xl-test-coordinator', epoch: '7.0011223344556677', at: Date.now(), nodes: 3, heartbeatIntervalMs: 7500, logger: silentLogger() });
  await waitFor(() => heard.length > 0, { timeoutMs: 10_000, what: 'the agent hearing the signed leader-up under the accounts' });
  t.like(heard[0], { kind: 'leader-up', epoch: '7.0011223344556677', holder: 'xl-test-coordinator' });
  // Captured together: only the announcement was ever on the subject, nothing on the coordinator's.
  const seen = { raw: [...raw], spied: [...spied] };
  t.is(seen.raw.length, 1, `leader-up subject: ${seen.raw.map((m) => m.slice(0, 80)).join(' | ')}`);
  t.deepEqual(seen.spied, []);
  // Agents still cannot publish it (a forged announcement would need the coordinator key anyway) or
  // listen on the coordinator's subjects.
  const before = raw.length;
  nc.publish(s.leaderUp, 'forged');
  await nc.flush();
  t.is(raw.length, before, 'an agent\'s publish on leader-up is refused (it would have come back on its own subscription)');
  const refusals: string[] = [];
  const probe = nc.subscribe(s.heartbeat, { callback: (err) => { if (err) refusals.push(err.message); } });
  cleanup.push(() => probe.unsubscribe());
  await waitFor(() => refusals.length > 0, { timeoutMs: 5000, what: 'the server refusing the agent a subscription to the heartbeat subject' });
  t.regex(refusals[0] ?? '', /permission/i);
});

test.serial('consumers on nats-server 2.9: an agent credential creates none (durables included); a reader\'s durable is removed by the leader at once; legacy durable creates refused; no deleting another agent\'s watch', async (t) => {
  const stream = `KV_${BUCKET}`;
  const nc = await agentConnection('xl-test-agent-durable');
  const jsm = await jetstreamManager(nc, { timeout: 5000 });
  const rjsm = await jetstreamManager(await readerConnection('xl-test-reader-durable'), { timeout: 5000 });
  const cjsm = await jetstreamManager(coordinatorNc, { timeout: 5000 });
  const removed = (): { consumer?: string; found?: string }[] =>
    coordinatorWarnings.map((l) => JSON.parse(l) as { msg: string; consumer?: string; found?: string }).filter((l) => l.msg.startsWith('removed a durable or long-lived consumer'));
  const exists = async (name: string): Promise<boolean> => (await outcome(cjsm.consumers.info(stream, name))) === 'ok';

  // The agent credential: no consumer API at all — the durable on nodes.> (created before the watch
  // broker), an ephemeral, consumer info, a delete.
  t.regex(await outcome(jsm.consumers.add(stream, { durable_name: 'evil-durable-agent', filter_subject: `$KV.${BUCKET}.nodes.>`, ack_policy: AckPolicy.None })), denied, 'an agent\'s durable on nodes.>');
  t.regex(await outcome(jsm.consumers.add(stream, { name: 'evil-ephemeral-agent', filter_subject: `$KV.${BUCKET}.nodes.>`, ack_policy: AckPolicy.None })), denied, 'an agent\'s ephemeral on nodes.>');
  t.false(await exists('evil-durable-agent'));
  t.false(await exists('evil-ephemeral-agent'));
  // Fact: the new-style create subject with durable_name in the body makes a DURABLE consumer (the
  // subject is the one a KV watch uses; permissions cannot see the body): readers, which still create
  // their own watches, can.
  const createdAt = Date.now();
  const created = await outcome(rjsm.consumers.add(stream, { durable_name: 'evil-durable', filter_subject: `$KV.${BUCKET}.nodes.>`, ack_policy: AckPolicy.None }));
  t.is(created, 'ok', 'the server creates it for a reader credential');
  // The leader's reaper removes it (consumer-created advisory), logs it and publishes an event.
  const seen = await waitFor(async () => {
    const event = removed().find((d) => d.consumer === 'evil-durable');
    return event !== undefined && !(await exists('evil-durable')) ? event : undefined;
  }, { timeoutMs: 15_000, intervalMs: 20, what: 'the durable consumer removed by the coordinator' });
  t.is(seen.found, 'advisory');
  t.log(`durable removed within ${Date.now() - createdAt} ms of its create request (polled every 20 ms)`);

  // Legacy DURABLE.CREATE: refused by permissions.
  const legacyBody = (name: string): string => JSON.stringify({ stream_name: stream, config: { durable_name: name, filter_subject: `$KV.${BUCKET}.nodes.>`, ack_policy: 'none', deliver_policy: 'all' } });
  t.regex(await outcome(nc.request(`$JS.API.CONSUMER.DURABLE.CREATE.${stream}.evil2`, legacyBody('evil2'), { timeout: 4000 })), denied, 'legacy DURABLE.CREATE');
  // Legacy 5-token CONSUMER.CREATE: refused by permissions; and the server itself refuses durable_name
  // there (asked with the coordinator's credential, which may call it).
  t.regex(await outcome(nc.request(`$JS.API.CONSUMER.CREATE.${stream}`, legacyBody('evil3'), { timeout: 4000 })), denied, 'legacy 5-token create (agent)');
  const serverSays = (await coordinatorNc.request(`$JS.API.CONSUMER.CREATE.${stream}`, legacyBody('evil3'), { timeout: 4000 })).json<{ error?: { description?: string } }>();
  t.regex(serverSays.error?.description ?? 'no error', /durable/i, 'nats-server 2.9 refuses durable_name on the legacy ephemeral subject');
  // …but that subject carries no filter token, so permissions could not pin what it reads: allowed to
  // agents, it would hand them ipam.* (asked with the coordinator's credential, which may call it).
  type CreateReply = { error?: { description?: string }; name?: string; config?: { filter_subject?: string } };
  const ephemeralBody = (filter: string, extra: object = {}): string => JSON.stringify({ stream_name: stream, config: { filter_subject: filter, ack_policy: 'none', deliver_policy: 'all', inactive_threshold: 5_000_000_000, ...extra } });
  const unpinned = (await coordinatorNc.request(`$JS.API.CONSUMER.CREATE.${stream}`, ephemeralBody(`$KV.${BUCKET}.ipam.>`), { timeout: 4000 })).json<CreateReply>();
  t.is(unpinned.error, undefined, 'the legacy ephemeral create takes any filter from the body');
  t.is(unpinned.config?.filter_subject, `$KV.${BUCKET}.ipam.>`);
  if (unpinned.name !== undefined) await cjsm.consumers.delete(stream, unpinned.name);
  // The subject agents must be allowed (a KV watch's): the filter token is pinned to the body's, and
  // the body may make the consumer durable when durable_name equals the name token — permissions
  // see the subject only (the durable case is the one created and reaped above).
  const pinned = (await coordinatorNc.request(`$JS.API.CONSUMER.CREATE.${stream}.probe1.$KV.${BUCKET}.nodes.>`, ephemeralBody(`$KV.${BUCKET}.ipam.>`), { timeout: 4000 })).json<CreateReply>();
  t.regex(pinned.error?.description ?? 'no error', /did not match filtered subject/i, 'a body filter other than the subject\'s is refused');
  const renamed = (await coordinatorNc.request(`$JS.API.CONSUMER.CREATE.${stream}.probe2.$KV.${BUCKET}.nodes.>`, ephemeralBody(`$KV.${BUCKET}.nodes.>`, { durable_name: 'other' }), { timeout: 4000 })).json<CreateReply>();
  t.regex(renamed.error?.description ?? 'no error', /durable name/i, 'durable_name must equal the name token');
  t.false(await exists('probe1'));
  t.false(await exists('probe2'));
  t.false(await exists('evil3'));
  // Consumers on internal keys: refused.
  for (const key of ['ipam.node-a', 'coordinator.lease', 'revoked.>', 'identities.>']) {
    t.regex(await outcome(jsm.consumers.add(stream, { durable_name: 'evil4', filter_subject: `$KV.${BUCKET}.${key}`, ack_policy: AckPolicy.None })), denied, `consumer on ${key}`);
  }

  // Another agent's watch: its consumer name leaks through the shared _INBOX. (deliveries carry
  // `$JS.ACK.<stream>.<consumer>.…`), but the agent credential cannot delete it.
  const victim = await agentConnection('xl-test-agent-victim');
  // A record for the watch to deliver (this test does not rely on the earlier ones).
  const c = await fakeAgent('node-c', { cluster: 'c1', podCidrs: ['10.10.2.0/24'] });
  t.true((await agentClient(victim, P, { timeoutMs: 8000, credentialFor: enrollment.credentialFor }).register(c)).ok);
  const sniffed: string[] = [];
  const spy = nc.subscribe('_INBOX.>', {
    callback: (_e, m) => {
      if (m.reply?.startsWith(`$JS.ACK.${stream}.`)) sniffed.push(m.reply.split('.')[3] ?? '');
    },
  });
  await nc.flush();
  const watch = await agentWatches(victim).watch({ key: 'nodes.>' });
  cleanup.push(() => watch.stop());
  const victimSaw: string[] = [];
  void (async () => {
    for await (const e of watch) victimSaw.push(e.key);
  })();
  const name = await waitFor(() => sniffed[0], { timeoutMs: 10_000, what: 'the victim\'s watch consumer name on _INBOX.>' });
  spy.unsubscribe();
  t.true(await exists(name), `the victim's consumer ${name} exists`);
  t.regex(await outcome(jsm.consumers.delete(stream, name)), denied, 'delete another agent\'s consumer');
  t.true(await exists(name), 'and it still exists');
  t.is(removed().filter((d) => d.consumer === name).length, 0, 'the reaper leaves watches alone');
  t.true(victimSaw.length > 0, 'the victim\'s watch delivers');
});

test.serial('watch broker (real coordinator, agent credential): refuses internal filters, durables and foreign deliver subjects; creates nothing for them', async (t) => {
  const nc = await agentConnection('xl-test-agent-broker');
  const cjsm = await jetstreamManager(coordinatorNc, { timeout: 5000 });
  const names = async (): Promise<string[]> => {
    const out: string[] = [];
    for await (const c of cjsm.consumers.list(`KV_${BUCKET}`)) out.push(c.name);
    return out.sort();
  };
  const before = await names();
  const ask = async (body: object): Promise<WatchReply> => WatchReply.parse(JSON.parse((await nc.request(subjects(P).watch, JSON.stringify(body), { timeout: 8000 })).string()));
  const ok = { kind: 'watch', filter: 'nodes.>', deliverSubject: '_INBOX.evil', start: { kind: 'last-per-subject' } };
  const cases: [object, string][] = [
    ...['ipam.>', 'identities.>', 'revoked.>', 'coordinator.lease', 'ipam.node-a', '>'].map((filter): [object, string] => [{ ...ok, filter }, 'filter']),
    [{ kind: 'count', filter: 'ipam.>' }, 'filter'],
    ...['ipam.>', 'identities.>', 'revoked.>', 'coordinator.lease'].map((filter): [object, string] => [{ kind: 'catchup', filter, afterRevision: 0, limit: 10, nonce: 'abcdefgh12' }, 'filter']),
    [{ ...ok, durable_name: 'evil' }, 'durable_name'],
    [{ ...ok, durable: 'evil' }, 'durable'],
    [{ ...ok, deliverSubject: `${P}.heartbeat` }, 'deliverSubject'],
    [{ ...ok, deliverSubject: subjects(P).leaderUp }, 'deliverSubject'],
    [{ ...ok, deliverSubject: `${COORDINATOR_INBOX_PREFIX}.x` }, 'deliverSubject'],
  ];
  for (const [body, field] of cases) t.like(await ask(body), { ok: false, code: 'bad-request', field }, JSON.stringify(body));
  t.deepEqual(await names(), before, 'no consumer was created for any of them');
  // What it may read, it reads through the broker's catch-up: node records, signed pages verified with the coordinator's key.
  const page = await agentWatches(nc).catchUp({ filter: 'nodes.>', afterRevision: 0, limit: 256 });
  t.true(page.entries.some((e) => e.key === 'nodes.node-a'), 'node-a through catch-up');
  t.true(page.entries.every((e) => e.key.startsWith('nodes.')));
  t.deepEqual(await names(), before, 'and no consumer for that either');
});

test.serial('events and health summaries under the accounts: the coordinator\'s and agents\' signed publishes land in their streams; the reader reads and verifies them; an agent credential posting in another node\'s name is not attributed to it', async (t) => {
  const agentNc = await agentConnection('xl-test-agent-events');
  const reader = await connectNats(settings(lab, { url: `tls://crosslink-reader:${PASSWORDS.reader}@127.0.0.1:${lab.port}` }), 'xl-test-reader-events', RECONNECT_ONE_SHOT);
  cleanup.push(() => reader.close().catch(() => undefined));
  // The reader verifies as `crosslink events` does: node records read by direct get under its own credential.
  const signers = kvEventSigners(reader, BUCKET, signingKey.publicKey);
  const read = async (): Promise<{ attributed: CrosslinkEvent[]; unverified: { claimed: CrosslinkEvent; reason: string }[] }> => {
    const attributed: CrosslinkEvent[] = [];
    const unverified: { claimed: CrosslinkEvent; reason: string }[] = [];
    await readEvents({ nc: reader, bucket: BUCKET, last: 100, filter: {}, follow: false, signers, onEvent: (ev) => void attributed.push(ev), onUnverified: (_s, claimed, reason) => void unverified.push({ claimed, reason }) });
    return { attributed, unverified };
  };
  // The coordinator publishes node-joined on a registration; the agent publishes its own events (signed
  // with its identity key) and health.
  const e = await fakeAgent('node-e', { cluster: 'c1', podCidrs: ['10.10.4.0/24'] });
  t.true((await agentClient(agentNc, P, { timeoutMs: 8000, credentialFor: enrollment.credentialFor }).register(e)).ok);
  const agentEvent = { v: 1, id: 'abcdef012345', at: Date.now(), type: 'route-repaired', severity: 'info', reporter: { role: 'agent', name: 'node-e' }, node: 'node-e', message: 'repaired 1 route' } as const;
  agentNc.publish(`${P}.events.route-repaired`, JSON.stringify(signEnvelopeNow(agentEvent, e.identity.secretKey)));
  agentNc.publish(`${P}.health.node-e`, 'summary-bytes');
  await agentNc.flush();
  const events = await waitFor(async () => {
    const { attributed } = await read();
    const joined = attributed.some((ev) => ev.type === 'node-joined' && ev.node === 'node-e' && ev.reporter.role === 'coordinator');
    const repaired = attributed.some((ev) => ev.type === 'route-repaired' && ev.reporter.name === 'node-e');
    return joined && repaired ? attributed : undefined;
  }, { timeoutMs: 10_000, what: 'the coordinator\'s and the agent\'s events read back and verified by the reader' });
  t.true(events.length >= 2);
  // An agent cannot publish a coordinator's event type: after its flushed forgery, its own later event
  // is stored and the forgery is not (the stream ingests in order).
  agentNc.publish(`${P}.events.node-revoked`, JSON.stringify({ ...agentEvent, id: 'f0f0f0f0f0f0', type: 'node-revoked', severity: 'warning', reporter: { role: 'coordinator', name: 'forged' }, message: 'forged' }));
  await agentNc.flush();
  // Adversary: the same agent credential, another identity (its own node-x, registered like any
  // node of c1), posts agent events in node-e's name: unsigned (accepted and attributed before
  // events were signed), signed with node-x's key, and node-x reporting about node-e.
  const x = await fakeAgent('node-x', { cluster: 'c1', podCidrs: ['10.10.5.0/24'] });
  t.true((await agentClient(agentNc, P, { timeoutMs: 8000, credentialFor: enrollment.credentialFor }).register(x)).ok);
  const inNameOfE = { ...agentEvent, type: 'route-repaired', severity: 'warning', message: 'FORGED: node-e lost its routes' } as const;
  agentNc.publish(`${P}.events.route-repaired`, JSON.stringify({ ...inNameOfE, id: 'a00000000001' }));
  agentNc.publish(`${P}.events.route-repaired`, JSON.stringify(signEnvelopeNow({ ...inNameOfE, id: 'a00000000002' }, x.identity.secretKey)));
  agentNc.publish(`${P}.events.route-repaired`, JSON.stringify(signEnvelopeNow({ ...inNameOfE, id: 'a00000000003', reporter: { role: 'agent', name: 'node-x' } }, x.identity.secretKey)));
  await agentNc.flush();
  agentNc.publish(`${P}.events.peer-repaired`, JSON.stringify(signEnvelopeNow({ ...agentEvent, id: '0123456789ab', type: 'peer-repaired', message: 'marker' }, e.identity.secretKey)));
  await agentNc.flush();
  const after = await waitFor(async () => {
    const r = await read();
    return r.attributed.some((ev) => ev.message === 'marker') ? r : undefined;
  }, { timeoutMs: 10_000, what: 'the agent\'s marker event after the forged ones' });
  t.false(after.attributed.some((ev) => ev.reporter.name === 'forged'), 'a coordinator event type published with an agent credential is not stored');
  t.deepEqual(after.attributed.filter((ev) => ev.message.startsWith('FORGED')), [], 'no forgery is attributed to node-e (or anyone)');
  // The three were stored and read (the server let the agent credential publish them), and each is
  // reported as unverified with its reason.
  const forged = after.unverified.filter((u) => u.claimed.message.startsWith('FORGED'));
  t.deepEqual(forged.map((u) => u.claimed.id).sort(), ['a00000000001', 'a00000000002', 'a00000000003']);
  t.deepEqual(forged.sort((p, q) => p.claimed.id.localeCompare(q.claimed.id)).map((u) => u.reason), [
    'not signed',
    'signature does not verify with the identity key of node node-e',
    'agent node-x reports about another node (node-e)',
  ]);
  const rjsm = await jetstreamManager(reader, { timeout: 5000 });
  const health = await rjsm.streams.getMessage(healthStreamName(BUCKET), { last_by_subj: `${P}.health.node-e` });
  t.is(health?.string(), 'summary-bytes');
  // The reader's message get is pinned to those streams: the bucket stays direct-get-by-key only.
  t.regex(await outcome(rjsm.streams.getMessage(`KV_${BUCKET}`, { last_by_subj: `$KV.${BUCKET}.ipam.node-a` })), denied);
  // A reader cannot publish health (or events): after its flushed publish, an agent's later one is
  // stored and the reader's is not (the stream ingests in order).
  reader.publish(`${P}.health.node-x`, 'forged');
  await reader.flush();
  agentNc.publish(`${P}.health.node-e2`, 'marker');
  await agentNc.flush();
  const state = await waitFor(async () => {
    const info = await rjsm.streams.info(healthStreamName(BUCKET), { subjects_filter: `${P}.health.>` });
    return info.state.subjects?.[`${P}.health.node-e2`] === 1 ? info.state.subjects : undefined;
  }, { timeoutMs: 10_000, what: 'the agent\'s marker in the health stream' });
  t.deepEqual(Object.keys(state).sort(), [`${P}.health.node-e`, `${P}.health.node-e2`]);
});

test.serial('reader (CLI): reads nodes; cannot register, write or read ipam', async (t) => {
  const nc = await connectNats(settings(lab, { url: `tls://crosslink-reader:${PASSWORDS.reader}@127.0.0.1:${lab.port}` }), 'xl-test-reader', RECONNECT_ONE_SHOT);
  try {
    const kv = await new Kvm(nc).open(BUCKET);
    const w = await kv.watch({ key: 'nodes.>' });
    const seen: string[] = [];
    void (async () => {
      for await (const e of w) seen.push(e.key);
    })();
    await waitFor(() => seen.includes('nodes.node-a'), { timeoutMs: 10_000, what: 'reader watch' });
    w.stop();
    t.regex(await outcome(kv.get('ipam.node-a')), denied);
    t.regex(await outcome(kv.put('nodes.x', '{}')), denied);
    t.regex(await outcome(nc.request(`${P}.register`, '{}', { timeout: 3000 })), denied);
  } finally {
    await nc.close().catch(() => undefined);
  }
});

test('TLS and authentication are enforced: no client certificate, a wrong password, plain TCP', async (t) => {
  const noCert = natsSettingsFrom({ urls: [`tls://127.0.0.1:${lab.port}`], natsUser: 'crosslink-agent', natsPassword: PASSWORDS.agent, natsTlsCa: join(lab.dir, 'ca.pem') }, natsFlagOf, '--nats-url');
  t.not(await outcome(connectNats(noCert, 'xl-test-nocert', RECONNECT_ONE_SHOT).then((c) => c.close())), 'ok');
  t.regex(await outcome(connectNats(settings(lab, { natsUser: 'crosslink-agent', natsPassword: 'wrong' }), 'xl-test-wrong', RECONNECT_ONE_SHOT).then((c) => c.close())), /authorization/i);
  const plain = natsSettingsFrom({ urls: [`nats://127.0.0.1:${lab.port}`], natsUser: 'crosslink-agent', natsPassword: PASSWORDS.agent }, natsFlagOf, '--nats-url');
  t.not(await outcome(connectNats(plain, 'xl-test-plain', RECONNECT_ONE_SHOT).then((c) => c.close())), 'ok');
});

interface EnvVar {
  name: string;
  value?: string;
}
interface SecretVolume {
  name: string;
  secret?: { secretName: string; items: { key: string; path: string }[] };
}
interface DaemonSetShape {
  spec: { template: { spec: { volumes: SecretVolume[]; containers: { env: EnvVar[]; volumeMounts: { name: string; mountPath: string }[] }[] } } };
}

/**
 * What a node runs after `crosslink manifests --nats-tls-cert-file … | kubectl apply`: the rendered
 * Secret's items written under the DaemonSet's mount path (as the kubelet does; here a directory of
 * the test) and the agent configuration parsed from the DaemonSet's env.
 */
async function agentFromManifests(certDir: string, cert: string, mountDir: string, withCert = true): Promise<NatsConnection> {
  const values = parseManifestValues({
    cluster: 'c1',
    location: 'l1',
    natsUrl: `tls://127.0.0.1:${lab.port}`,
    natsTlsCertFile: join(certDir, `${cert}.pem`),
    natsTlsKeyFile: join(certDir, `${cert}.key`),
    natsTlsCaFile: join(lab.dir, 'ca.pem'),
  });
  const files = renderManifests(values);
  const secret = parseAllDocuments(files.find((f) => f.name === 'nats-client-tls.yaml')?.content ?? '')[0]?.toJS() as { metadata: { name: string }; stringData: Record<string, string> };
  const ds = parseAllDocuments(files.find((f) => f.name === 'daemonset.yaml')?.content ?? '')[0]?.toJS() as DaemonSetShape;
  const pod = ds.spec.template.spec;
  const container = pod.containers[0]!;
  const volume = pod.volumes.find((v) => v.secret?.secretName === secret.metadata.name);
  const mount = container.volumeMounts.find((m) => m.name === volume?.name);
  if (!volume?.secret || !mount) throw new Error('the rendered DaemonSet does not mount the rendered Secret');
  await mkdir(mountDir, { recursive: true });
  for (const item of volume.secret.items) await writeFile(join(mountDir, item.path), secret.stringData[item.key] ?? '', { mode: 0o400 });
  await writeFile(join(lab.dir, 'agent.password'), `${PASSWORDS.agent}\n`, { mode: 0o600 });
  const env: Record<string, string> = {};
  for (const e of container.env) if (typeof e.value === 'string') env[e.name] = e.value.replaceAll(mount.mountPath, mountDir);
  // This test server authenticates by password, not a .creds file.
  delete env['CROSSLINK_NATS_CREDS'];
  if (!withCert) {
    delete env['CROSSLINK_NATS_TLS_CERT'];
    delete env['CROSSLINK_NATS_TLS_KEY'];
  }
  const config = parseAgentConfig([], {
    env: {
      ...env,
      NODE_NAME: 'node-m',
      POD_IP: '10.0.0.5',
      CROSSLINK_HEALTH_ADDR: '127.0.0.1:9471',
      CROSSLINK_COORDINATOR_KEY: signingKey.publicKey,
      CROSSLINK_NATS_USER: 'crosslink-agent',
      CROSSLINK_NATS_PASSWORD_FILE: join(lab.dir, 'agent.password'),
      KUBERNETES_SERVICE_HOST: '10.96.0.1',
    },
    hostname: 'ignored',
  });
  return await connectNats(config.nats, 'xl-test-manifests-agent', RECONNECT_ONE_SHOT);
}

test('manifests: an agent with the client certificate Secret `crosslink manifests` renders and mounts connects to a verify: true server; without it, or with another CA\'s, it is refused', async (t) => {
  const nc = await agentFromManifests(lab.dir, 'client', join(lab.dir, 'mount-ok'));
  cleanup.push(() => nc.close().catch(() => undefined));
  const kv = await new Kvm(nc).open(BUCKET, { allow_direct: true });
  t.not(await kv.get('nodes.node-a'), null, 'the agent reads what it may');
  t.not(await outcome(agentFromManifests(lab.dir, 'client', join(lab.dir, 'mount-nocert'), false).then((c) => c.close())), 'ok', 'no client certificate: refused');
  // A certificate signed by another CA (an attacker's own), mounted the same way.
  const rogue = join(lab.dir, 'rogue');
  await mkdir(rogue);
  await makeCa(rogue);
  await makeCert(rogue, 'client', 'client');
  t.not(await outcome(agentFromManifests(rogue, 'client', join(lab.dir, 'mount-rogue')).then((c) => c.close())), 'ok', 'a certificate of another CA: refused');
});

test('nats-config --max-consumers: the STORE account refuses consumers beyond the cap, a durable from a reader included', async (t) => {
  t.throws(() => parseMaxConsumers('0'), { instanceOf: ValidationError, message: /^--max-consumers: "0" is not valid; must be a whole number from 1/ });
  t.throws(() => parseMaxConsumers('lots'), { instanceOf: ValidationError });
  t.is(parseMaxConsumers(' 40 '), 40);
  t.is(parseMaxConsumers(undefined), undefined);
  const capped = await startServer({ plain: true, limits: { maxConsumers: 3 } });
  t.teardown(() => stopServer(capped));
  const url = (user: string, pw: string): NatsSettings => natsSettingsFrom({ urls: [`nats://${user}:${pw}@127.0.0.1:${capped.port}`] }, natsFlagOf, '--nats-url');
  const c = await connectNats(url('crosslink-coordinator', PASSWORDS.coordinator), 'xl-test-cap-coordinator', { ...RECONNECT_ONE_SHOT, inboxPrefix: COORDINATOR_INBOX_PREFIX });
  const a = await connectNats(url('crosslink-agent', PASSWORDS.agent), 'xl-test-cap-agent', RECONNECT_ONE_SHOT);
  t.teardown(async () => {
    await a.close().catch(() => undefined);
    await c.close().catch(() => undefined);
  });
  await new Kvm(c).create(BUCKET, { history: 1 });
  const stream = `KV_${BUCKET}`;
  const cjsm = await jetstreamManager(c, { timeout: 5000 });
  const results: string[] = [];
  for (let i = 0; i < 4; i++) results.push(await outcome(cjsm.consumers.add(stream, { name: `c${i}`, filter_subject: `$KV.${BUCKET}.nodes.>`, ack_policy: AckPolicy.None })));
  t.deepEqual(results.slice(0, 3), ['ok', 'ok', 'ok']);
  t.regex(results[3] ?? '', /maximum consumers/i);
  const ajsm = await jetstreamManager(a, { timeout: 5000 });
  t.regex(await outcome(ajsm.consumers.add(stream, { durable_name: 'evil', filter_subject: `$KV.${BUCKET}.nodes.>`, ack_policy: AckPolicy.None })), denied, 'agents create no consumer at all');
  const r = await connectNats(url('crosslink-reader', PASSWORDS.reader), 'xl-test-cap-reader', RECONNECT_ONE_SHOT);
  t.teardown(() => r.close().catch(() => undefined));
  const rjsm = await jetstreamManager(r, { timeout: 5000 });
  t.regex(await outcome(rjsm.consumers.add(stream, { durable_name: 'evil', filter_subject: `$KV.${BUCKET}.nodes.>`, ack_policy: AckPolicy.None })), /maximum consumers/i, 'a reader\'s durable is refused past the cap');
});
