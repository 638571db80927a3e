// The CLI's KV commands against a real nats-server: `nodes` flags refused records, `showconf
// --nats-url` computes a node's config without an agent, errors exit 2 with a useful message.
import test from 'ava';
import { connect } from '@nats-io/transport-node';
import { runCli, type CliIo } from '../cli/main.ts';
import { NatsServer } from '../lib/nats-server.ts';
import { generateSigningKeyPair, signEnvelope, type SigningKeyPair } from '../protocol/signing.ts';
import { clusterRecord, nodeRecord, openBucket, putCluster, putNode } from './agent-helpers.ts';

let server: NatsServer;
let coordinator: SigningKeyPair;

test.before(async () => {
  server = await NatsServer.start({ name: 'xl-cli-kv' });
  coordinator = await generateSigningKeyPair();
  const nc = await connect({ servers: server.url });
  const kv = await openBucket(nc);
  await putNode(kv, coordinator, await nodeRecord({ name: 'node-a', cluster: 'c1', overlayIp: '100.96.0.1', podCidrs: ['10.244.1.0/24'], endpoints: ['192.0.2.1:51820'] }));
  await putNode(kv, coordinator, await nodeRecord({ name: 'node-b', cluster: 'c2', overlayIp: '100.96.0.2', podCidrs: ['10.245.1.0/24'], endpoints: [] }));
  await putCluster(kv, coordinator, clusterRecord({ name: 'c1' }));
  const impostor = await generateSigningKeyPair();
  await kv.put('nodes.evil', JSON.stringify(await signEnvelope(await nodeRecord({ name: 'evil' }), impostor.secretKey)));
  await nc.close();
});

test.after.always(async () => {
  await server.stop();
});

function io(): CliIo & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return { stdout: (s) => (out += s), stderr: (s) => (err += s), env: {}, now: () => Date.now(), out: () => out, err: () => err };
}

const kvArgs = (): string[] => ['--nats-url', server.url, '--coordinator-key', coordinator.publicKey];

test('nodes lists verified records and flags the forged one (exit 1)', async (t) => {
  const c = io();
  t.is(await runCli(['nodes', ...kvArgs()], c), 1, c.err());
  t.regex(c.out(), /^node-a +c1 +lab +100\.96\.0\.1 +192\.0\.2\.1:51820 +10\.244\.1\.0\/24 +eligible +✓ verified$/m);
  t.regex(c.out(), /^node-b +c2 .*\(NAT\)/m);
  t.regex(c.out(), /^evil +\?.*✗ REFUSED$/m);
  t.regex(c.out(), /✗ nodes\.evil: signature does not verify/);

  const j = io();
  t.is(await runCli(['nodes', '--json', ...kvArgs()], j), 1);
  const doc = JSON.parse(j.out()) as { nodes: { name: string; problem: string | null }[] };
  t.deepEqual(doc.nodes.map((n) => [n.name, n.problem === null]), [['node-a', true], ['node-b', true], ['evil', false]]);
});

test('with the wrong coordinator key every record is refused', async (t) => {
  const other = await generateSigningKeyPair();
  const c = io();
  t.is(await runCli(['nodes', '--nats-url', server.url, '--coordinator-key', other.publicKey], c), 1);
  t.notRegex(c.out(), /✓ verified/);
});

test('during a signing-key rotation several coordinator keys are given comma-separated: records signed by any of them verify', async (t) => {
  const next = await generateSigningKeyPair();
  const c = io();
  t.is(await runCli(['nodes', '--nats-url', server.url, '--coordinator-key', `${next.publicKey}, ${coordinator.publicKey}`], c), 1, c.err());
  t.regex(c.out(), /^node-a .*✓ verified$/m, 'signed by the previous key, still trusted');
  t.regex(c.out(), /^evil +\?.*✗ REFUSED$/m, 'a key outside the set is still refused');
  const bad = io();
  t.is(await runCli(['nodes', '--nats-url', server.url, '--coordinator-key', `${coordinator.publicKey},nope`], bad), 2);
  t.regex(bad.err(), /--coordinator-key: "nope" is not valid; must be a 32-byte key/);
});

test('showconf --nats-url computes a node\'s config without an agent', async (t) => {
  const c = io();
  t.is(await runCli(['showconf', ...kvArgs(), '--node', 'node-b', '--interface', 'xl0'], c), 0, c.err());
  t.regex(c.out(), /^# crosslink showconf: node-b \(cluster c2\), computed from the verified view of the KV bucket crosslink$/m);
  t.regex(c.out(), /^Address = 100\.96\.0\.2\/32$/m);
  t.regex(c.out(), /^# node-a \(cluster c1\), path direct\nPublicKey = .*\nAllowedIPs = 10\.244\.1\.0\/24, 100\.96\.0\.1\/32\nEndpoint = 192\.0\.2\.1:51820\nPersistentKeepalive = 25$/m);
  t.regex(c.out(), /^# {3}10\.244\.1\.0\/24 dev xl0$/m);

  const j = io();
  t.is(await runCli(['showconf', ...kvArgs(), '--node', 'node-b', '--format', 'json'], j), 0);
  t.is((JSON.parse(j.out()) as { peers: unknown[] }).peers.length, 1);
});

const failures: { name: string; args: () => string[]; err: RegExp }[] = [
  { name: 'refused node', args: () => ['showconf', ...kvArgs(), '--node', 'evil'], err: /the record of evil is refused: signature does not verify/ },
  { name: 'unknown node', args: () => ['showconf', ...kvArgs(), '--node', 'node-x'], err: /no verified record for node node-x/ },
  { name: 'missing --node', args: () => ['showconf', ...kvArgs()], err: /--node: \(missing\) is not valid; required with --nats-url/ },
  { name: 'bad coordinator key', args: () => ['nodes', '--nats-url', server.url, '--coordinator-key', 'nope'], err: /--coordinator-key: "nope" is not valid; must be a 32-byte key/ },
  { name: 'missing coordinator key', args: () => ['nodes', '--nats-url', server.url], err: /--coordinator-key: \(missing\) is not valid; required/ },
  { name: 'unknown bucket', args: () => ['nodes', ...kvArgs(), '--bucket', 'nobucket'], err: /cannot read the KV bucket "nobucket".*--bucket nobucket/ },
  { name: 'no NATS', args: () => ['nodes', '--nats-url', 'nats://127.0.0.1:1', '--coordinator-key', coordinator.publicKey], err: /cannot connect to NATS at nats:\/\/127\.0\.0\.1:1/ },
  { name: 'no agent', args: () => ['status', '--socket', '/tmp/xl-no-such-agent.sock'], err: /cannot reach the agent at \/tmp\/xl-no-such-agent\.sock: .*is crosslink-agent running\?/ },
  { name: 'bad format', args: () => ['showconf', '--format', 'yaml'], err: /Allowed choices are wg, json/ },
  { name: 'MTU below the overlay minimum', args: () => ['showconf', ...kvArgs(), '--node', 'node-b', '--mtu', '576'], err: /--mtu: "576" is not valid; must be a whole number 1280-9000/ },
];

for (const f of failures) {
  test(`exit 2 with a clear message: ${f.name}`, async (t) => {
    const c = io();
    t.is(await runCli(f.args(), c), 2);
    t.regex(c.err(), f.err);
  });
}

test('env provides the defaults', async (t) => {
  const c: CliIo & { out: () => string } = (() => {
    let out = '';
    return {
      stdout: (s: string) => (out += s),
      stderr: () => undefined,
      env: { CROSSLINK_NATS_URL: server.url, CROSSLINK_COORDINATOR_KEY: coordinator.publicKey },
      now: () => Date.now(),
      out: () => out,
    };
  })();
  t.is(await runCli(['nodes'], c), 1);
  t.regex(c.out(), /node-a/);
});
