// Registration against a real nats-server: records in the KV bucket, signatures, rejections, IPAM
// stability across coordinator restarts, identity binding and deregistration.
import test, { type ExecutionContext } from 'ava';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { parseCoordinatorConfig, type RawRunOptions } from '../coordinator/config.ts';
import { Coordinator } from '../coordinator/coordinator.ts';
import { IpamEntry } from '../coordinator/ipam.ts';
import { fakeAgent, rpc, signed, type AgentClient } from './helpers/fake-agent.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { ClusterRecord, NodeRecord, RegisterReply, type ErrorBody } from '../protocol/messages.ts';
import { generateSigningKeyPair, verifyEnvelope, type SigningKeyPair } from '../protocol/signing.ts';
import { kvKeys, subjects } from '../protocol/subjects.ts';
import { scratchNames, useNatsServer } from './helpers/nats-fixture.ts';
import { enrollingClient } from './helpers/enrollment.ts';

const server = useNatsServer('xl-coordreg');

interface Env {
  readonly nc: NatsConnection;
  readonly kv: KV;
  readonly key: SigningKeyPair;
  readonly prefix: string;
  readonly bucket: string;
  readonly client: AgentClient;
  /** The coordinator started by setup (leader). */
  readonly first: Coordinator;
  /** Starts another coordinator instance on the same bucket (own NATS connection) and waits until it leads. */
  start(overrides?: Partial<RawRunOptions>): Promise<Coordinator>;
}

/** A fresh bucket and subject prefix per test, so tests in this file can run side by side. */
async function setup(t: ExecutionContext, base: Partial<RawRunOptions> = {}): Promise<Env> {
  const { id, bucket, prefix } = scratchNames('xlreg');
  const key = await generateSigningKeyPair();
  const nc = await connect({ servers: server().url, name: `xl-test-${id}` });
  const coordinators: Coordinator[] = [];
  const conns: NatsConnection[] = [nc];
  t.teardown(async () => {
    for (const c of coordinators) await c.stop();
    for (const n of conns) await n.close();
  });
  const start = async (overrides: Partial<RawRunOptions> = {}): Promise<Coordinator> => {
    const cnc = await connect({ servers: server().url, name: `xl-coord-${id}` });
    conns.push(cnc);
    const config = parseCoordinatorConfig({ bucket, subjectPrefix: prefix, nodeTtl: '30s', leaseTtl: '2s', ...base, ...overrides });
    const c = await Coordinator.start({ nc: cnc, clock: systemClock, logger: silentLogger(), config, signingKey: key });
    coordinators.push(c);
    await waitFor(() => c.isLeader(), { timeoutMs: 10_000, what: 'coordinator leadership' });
    return c;
  };
  const first = await start();
  return { nc, key, prefix, bucket, client: await enrollingClient(nc, prefix, bucket, key), first, start, kv: await new Kvm(nc).open(bucket) };
}

async function readNode(env: Env, name: string): Promise<{ record: NodeRecord; revision: number } | undefined> {
  const e = await env.kv.get(kvKeys.node(name));
  if (!e || e.operation !== 'PUT') return undefined;
  return { record: await verifyEnvelope(e.value, env.key.publicKey, NodeRecord), revision: e.revision };
}

async function keysOf(kv: KV): Promise<string[]> {
  const out: string[] = [];
  for await (const k of await kv.keys()) out.push(k);
  // A set: the client's key listing (an ordered push consumer) can hand a key over twice when it
  // restarts under load; the test compares which keys exist (writes are checked by revision).
  return [...new Set(out)].sort();
}

test('register: signed record in the bucket, reply carries the same envelope', async (t) => {
  const env = await setup(t);
  const a = await fakeAgent('node-a', { cluster: 'aws', podCidrs: ['10.10.0.0/24'] });
  const reply = await env.client.register(a);
  if (!reply.ok) {
    t.fail(reply.error.message);
    return;
  }
  t.is(reply.heartbeatIntervalMs, 7500);
  t.is(reply.nodeTtlMs, 30_000);
  const fromReply = await verifyEnvelope(reply.record, env.key.publicKey, NodeRecord);
  const stored = await readNode(env, 'node-a');
  t.deepEqual(stored?.record, fromReply);
  t.like(fromReply, {
    kind: 'node',
    v: 1,
    name: 'node-a',
    cluster: 'aws',
    overlayIp: '100.96.0.1',
    generation: 1,
    publicKey: a.wireguard.publicKey,
    identityKey: a.identity.publicKey,
    podCidrs: ['10.10.0.0/24'],
  });
  t.is(fromReply.registeredAt, fromReply.updatedAt);
  // A record is not valid under any other key.
  const other = await generateSigningKeyPair();
  await t.throwsAsync(verifyEnvelope(reply.record, other.publicKey, NodeRecord));
  // The ipam entry and the cluster record are there too.
  const ipam = IpamEntry.parse((await env.kv.get(kvKeys.ipam('node-a')))?.json());
  t.like(ipam, { ip: '100.96.0.1', identityKey: a.identity.publicKey });
  const ce = await env.kv.get(kvKeys.cluster('aws'));
  const cluster = await verifyEnvelope(ce?.value, env.key.publicKey, ClusterRecord);
  t.like(cluster, { name: 'aws', topology: 'mesh', gateway: null });
});

test('rejected registrations store nothing', async (t) => {
  const env = await setup(t);
  const a = await fakeAgent('node-a', { podCidrs: ['10.10.0.0/24'] });
  t.true((await env.client.register(a)).ok);
  const b = await fakeAgent('node-b');
  // Bodies first: the test fixture enrolls (widens) the cluster while signing them.
  const body = (o: Parameters<typeof b.request>[0], signWith?: string): Promise<string> => env.client.registrationBody(b, o, signWith);
  const cases: { what: string; body: string; code: ErrorBody['code']; field: string }[] = [
    { what: 'overlapping pod CIDR', body: await body({ podCidrs: ['10.10.0.128/25'] }), code: 'conflict', field: 'podCidrs[0]' },
    { what: 'loopback endpoint', body: await body({ podCidrs: ['10.11.0.0/24'], endpoints: ['127.0.0.1:51820'] }), code: 'invalid', field: 'endpoints[0]' },
    { what: 'signed by another key', body: await body({ podCidrs: ['10.11.0.0/24'] }, a.identity.secretKey), code: 'unauthorized', field: 'sig' },
    { what: 'not JSON', body: 'garbage', code: 'invalid', field: '(root)' },
    { what: 'stale sentAt', body: await body({ podCidrs: ['10.11.0.0/24'], sentAt: Date.now() - 3_600_000 }), code: 'stale', field: 'sentAt' },
    { what: 'name of a live node, other identity', body: await body({ podCidrs: ['10.11.0.0/24'], name: 'node-a' }), code: 'unauthorized', field: 'identityKey' },
    { what: 'no join signature', body: await signed(b.request({ podCidrs: ['10.11.0.0/24'] }), b.identity.secretKey), code: 'unauthorized', field: 'joinSig' },
  ];
  // The leader lease is renewed in the same bucket meanwhile (and may be between writes): not counted.
  const stored = async (): Promise<string[]> => (await keysOf(env.kv)).filter((k) => k !== kvKeys.lease);
  const before = await stored();
  const revBefore = (await env.kv.status()).streamInfo.state.last_seq;
  for (const c of cases) {
    const reply = await rpc(env.nc, subjects(env.prefix).register, c.body, RegisterReply);
    t.false(reply.ok, c.what);
    if (!reply.ok) {
      t.is(reply.error.code, c.code, c.what);
      t.is(reply.error.field, c.field, c.what);
    }
  }
  t.deepEqual(await stored(), before);
  // No write at all.
  for (const k of await stored()) {
    t.true(((await env.kv.get(k))?.revision ?? 0) <= revBefore, `${k} was not written`);
  }
});

test('concurrent registrations of different nodes get distinct addresses', async (t) => {
  const env = await setup(t);
  const agents = await Promise.all(Array.from({ length: 8 }, (_, i) => fakeAgent(`n${i}`, { podCidrs: [`10.${20 + i}.0.0/24`] })));
  const replies = await Promise.all(agents.map((a) => env.client.register(a)));
  const ips: string[] = [];
  for (const r of replies) {
    if (!r.ok) {
      t.fail(r.error.message);
      return;
    }
    ips.push((await verifyEnvelope(r.record, env.key.publicKey, NodeRecord)).overlayIp);
  }
  t.is(new Set(ips).size, 8);
  t.deepEqual([...ips].sort(), Array.from({ length: 8 }, (_, i) => `100.96.0.${i + 1}`).sort());
});

test('re-registration: unchanged writes nothing; a change bumps the generation and keeps registeredAt', async (t) => {
  const env = await setup(t);
  const a = await fakeAgent('node-a');
  t.true((await env.client.register(a)).ok);
  const first = (await readNode(env, 'node-a'))!;

  const again = await env.client.register(a);
  t.true(again.ok);
  const second = (await readNode(env, 'node-a'))!;
  t.is(second.revision, first.revision, 'no write for an unchanged re-registration');
  if (again.ok) t.deepEqual(await verifyEnvelope(again.record, env.key.publicKey, NodeRecord), first.record);

  await new Promise((r) => setTimeout(r, 5)); // updatedAt must be able to move
  const changed = await env.client.register(a, { endpoints: ['203.0.113.9:51820'], podCidrs: ['10.12.0.0/24'] });
  t.true(changed.ok);
  const third = (await readNode(env, 'node-a'))!;
  t.is(third.record.generation, first.record.generation + 1);
  t.is(third.record.registeredAt, first.record.registeredAt);
  t.true(third.record.updatedAt > first.record.updatedAt);
  t.deepEqual(third.record.endpoints, ['203.0.113.9:51820']);
  t.is(third.record.overlayIp, first.record.overlayIp);

  // A new WireGuard key is a change too.
  const rotated = await env.client.register(a, { publicKey: (await fakeAgent('x')).wireguard.publicKey, endpoints: ['203.0.113.9:51820'], podCidrs: ['10.12.0.0/24'] });
  t.true(rotated.ok);
  t.is((await readNode(env, 'node-a'))!.record.generation, first.record.generation + 2);
});

test('a replayed older registration is refused', async (t) => {
  const env = await setup(t);
  const a = await fakeAgent('node-a');
  const old = await env.client.registrationBody(a, { sentAt: Date.now() - 10_000 });
  t.true((await env.client.register(a)).ok);
  const reply = await rpc(env.nc, subjects(env.prefix).register, old, RegisterReply);
  t.like(reply, { ok: false, error: { code: 'stale', field: 'sentAt' } });
});

test('same name, same address after a coordinator restart; new nodes fill the next address', async (t) => {
  const env = await setup(t);
  const a = await fakeAgent('node-a', { podCidrs: ['10.10.0.0/24'] });
  const b = await fakeAgent('node-b', { podCidrs: ['10.11.0.0/24'] });
  t.true((await env.client.register(a)).ok);
  t.true((await env.client.register(b)).ok);
  const beforeA = (await readNode(env, 'node-a'))!;
  const beforeB = (await readNode(env, 'node-b'))!;

  // Stop the coordinator; a new instance rebuilds everything from the bucket.
  await env.first.stop();
  const second = await env.start();
  t.true(second.isLeader());

  const replyB = await env.client.register(b);
  t.true(replyB.ok);
  t.is((await readNode(env, 'node-b'))!.revision, beforeB.revision, 'unchanged after restart: no write');
  const replyA = await env.client.register(a, { endpoints: ['198.51.100.7:51820'] });
  t.true(replyA.ok);
  const afterA = (await readNode(env, 'node-a'))!;
  t.is(afterA.record.overlayIp, beforeA.record.overlayIp);
  t.is(afterA.record.generation, beforeA.record.generation + 1);
  const c = await fakeAgent('node-c', { podCidrs: ['10.13.0.0/24'] });
  const replyC = await env.client.register(c);
  if (replyC.ok) t.is((await verifyEnvelope(replyC.record, env.key.publicKey, NodeRecord)).overlayIp, '100.96.0.3');
  else t.fail(replyC.error.message);
});
