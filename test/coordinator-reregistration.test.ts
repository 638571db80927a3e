// Re-registration without a scan of every node: which requests may skip it (pure, table-driven),
// and against a real coordinator that a re-registration which changes keys or pod CIDRs is still
// checked against the other nodes while an unchanged one writes nothing.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { parseCoordinatorConfig } from '../coordinator/config.ts';
import { Coordinator } from '../coordinator/coordinator.ts';
import { restatedRecord } from '../coordinator/registry.ts';
import { fakeAgent, type AgentClient } from './helpers/fake-agent.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { NatsServer } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import type { NodeRecord, RegistrationRequest } from '../protocol/messages.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { enrollingClient } from './helpers/enrollment.ts';

// ---- which requests restate the live record (pure) ------------------------------------------------

const KEY_A = Buffer.alloc(32, 1).toString('base64');
const KEY_B = Buffer.alloc(32, 2).toString('base64');
const ID_A = Buffer.alloc(32, 3).toString('base64');
const ID_B = Buffer.alloc(32, 4).toString('base64');

// What node-a registered with: the live record holds it, and the request below restates it.
const registered: Omit<RegistrationRequest, 'v' | 'agentVersion' | 'sentAt'> = {
  name: 'node-a',
  cluster: 'c1',
  location: 'here',
  publicKey: KEY_A,
  identityKey: ID_A,
  endpoints: ['192.0.2.1:51820'],
  privateAddresses: ['10.0.0.1'],
  podCidrs: ['10.10.0.0/24', '10.11.0.0/24'],
  listenPort: 51820,
  topology: 'mesh',
  gatewayEligible: false,
};

const record: NodeRecord = { kind: 'node', v: 1, ...registered, overlayIp: '100.96.0.1', generation: 3, registeredAt: 1, updatedAt: 2 };

const request: RegistrationRequest = { v: 1, ...registered, agentVersion: 'test', sentAt: 5 };

const rows: { what: string; req: Partial<RegistrationRequest>; own?: NodeRecord | undefined; restates: boolean }[] = [
  { what: 'unchanged', req: {}, restates: true },
  // Fields that cannot conflict with other nodes may change and still skip the scan.
  { what: 'new endpoints, location, topology', req: { endpoints: ['198.51.100.9:51820'], location: 'there', topology: 'gateway' }, restates: true },
  { what: 'no live record', req: {}, own: undefined, restates: false },
  { what: 'other name', req: { name: 'node-b' }, restates: false },
  { what: 'other WireGuard key', req: { publicKey: KEY_B }, restates: false },
  { what: 'other identity key', req: { identityKey: ID_B }, restates: false },
  { what: 'a pod CIDR added', req: { podCidrs: ['10.10.0.0/24', '10.11.0.0/24', '10.12.0.0/24'] }, restates: false },
  { what: 'a pod CIDR changed', req: { podCidrs: ['10.10.0.0/24', '10.12.0.0/24'] }, restates: false },
  { what: 'pod CIDRs reordered', req: { podCidrs: ['10.11.0.0/24', '10.10.0.0/24'] }, restates: false },
  { what: 'pod CIDR spelled differently', req: { podCidrs: ['10.10.0.0/24', '10.11.0.00/24'] }, restates: false },
];

for (const r of rows) {
  test(`restatedRecord: ${r.what} -> ${r.restates ? 'own record only' : 'scan every node'}`, (t) => {
    const own = 'own' in r ? r.own : record;
    t.is(restatedRecord({ ...request, ...r.req }, own), r.restates ? record : undefined);
  });
}

// ---- against a real coordinator ------------------------------------------------------------------

let server: NatsServer;
test.before(async () => {
  server = await NatsServer.start({ name: `xl-rereg-${randomBytes(3).toString('hex')}` });
});
test.after.always(async () => {
  await server?.stop();
});

async function setup(t: ExecutionContext): Promise<{ client: AgentClient; kv: KV }> {
  const id = randomBytes(4).toString('hex');
  const bucket = `xlrereg_${id}`;
  const prefix = `xl.rereg${id}.v1`;
  const conns: NatsConnection[] = [];
  const coordinators: Coordinator[] = [];
  t.teardown(async () => {
    for (const c of coordinators) await c.stop();
    for (const c of conns) await c.close();
  });
  const nc = await connect({ servers: server.url, name: `xl-rereg-${id}` });
  const cnc = await connect({ servers: server.url, name: `xl-rereg-coord-${id}` });
  conns.push(nc, cnc);
  const config = parseCoordinatorConfig({ bucket, subjectPrefix: prefix, nodeTtl: '30s', leaseTtl: '2s' });
  const key = await generateSigningKeyPair();
  const c = await Coordinator.start({ nc: cnc, clock: systemClock, logger: silentLogger(), config, signingKey: key });
  coordinators.push(c);
  await waitFor(() => c.isLeader(), { timeoutMs: 10_000, what: 'coordinator leadership' });
  return { client: await enrollingClient(nc, prefix, bucket, key), kv: await new Kvm(nc).open(bucket) };
}

test('re-registration: unchanged writes nothing; changed keys and pod CIDRs are still checked against other nodes', async (t) => {
  const { client, kv } = await setup(t);
  const a = await fakeAgent('node-a', { podCidrs: ['10.20.0.0/24'] });
  const b = await fakeAgent('node-b', { podCidrs: ['10.21.0.0/24'] });
  const first = await client.register(a);
  t.true(first.ok);
  t.true((await client.register(b)).ok);
  const revision = (await kv.get(kvKeys.node('node-a')))?.revision;

  const again = await client.register(a);
  t.true(again.ok);
  t.deepEqual(again.ok && again.record, first.ok && first.record, 'the same signed record');
  t.is((await kv.get(kvKeys.node('node-a')))?.revision, revision, 'no write');

  const podClash = await client.register(a, { podCidrs: ['10.21.0.0/25'] });
  t.false(podClash.ok);
  t.is(!podClash.ok && podClash.error.code, 'conflict');
  t.is(!podClash.ok && podClash.error.field, 'podCidrs[0]');

  const keyClash = await client.register(a, { publicKey: b.wireguard.publicKey });
  t.false(keyClash.ok);
  t.is(!keyClash.ok && keyClash.error.field, 'publicKey');

  // Nothing of the refused requests reached the bucket; a genuine change is written.
  t.is((await kv.get(kvKeys.node('node-a')))?.revision, revision);
  const moved = await client.register(a, { podCidrs: ['10.22.0.0/24'] });
  t.true(moved.ok);
  t.not((await kv.get(kvKeys.node('node-a')))?.revision, revision);
});
