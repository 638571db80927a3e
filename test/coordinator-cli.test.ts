// The real bin/crosslink-coordinator: --help, public-key, and a run against nats-server that
// registers a node and stops cleanly on SIGTERM.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, stat, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { RUN_FLAGS } from '../coordinator/config.ts';
import { agentClient, fakeAgent } from './helpers/fake-agent.ts';
import { NatsServer } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { NodeRecord } from '../protocol/messages.ts';
import { verifyEnvelope } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { COORDINATOR_BIN, runCoordinatorBin } from './helpers/coordinator-fixture.ts';
import { scratchNames } from './helpers/nats-fixture.ts';
import { tempDir as makeTempDir } from './helpers/temp-dir.ts';
import { parseJoinCredential } from '../protocol/join-credential.ts';

const tempDir = (t: ExecutionContext): Promise<string> => makeTempDir(t, 'xl-coordcli-');

test('--help documents every run flag and its env variable', async (t) => {
  const r = await runCoordinatorBin(['--help']);
  t.is(r.code, 0, r.stderr);
  for (const f of RUN_FLAGS) {
    t.true(r.stdout.includes(f.flags.split(' ')[0]!), f.flags);
    t.true(r.stdout.includes(f.env), f.env);
  }
  t.true(r.stdout.includes('public-key'));
  const run = await runCoordinatorBin(['run', '--help']);
  t.is(run.code, 0);
  t.true(run.stdout.includes('--overlay-cidr'));
});

test('public-key creates the key file (0600) once and prints the same key each time', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'state', 'coordinator.key');
  const first = await runCoordinatorBin(['public-key', '--signing-key-file', file]);
  t.is(first.code, 0, first.stderr);
  t.regex(first.stdout, /^[A-Za-z0-9+/]{43}=\n$/);
  t.regex(first.stderr, /created a new signing key/);
  t.is((await stat(file)).mode & 0o777, 0o600);
  const json = JSON.parse(await readFile(file, 'utf8')) as { publicKey: string };
  t.is(json.publicKey, first.stdout.trim());

  const second = await runCoordinatorBin(['public-key'], { CROSSLINK_SIGNING_KEY_FILE: file });
  t.is(second.code, 0);
  t.is(second.stdout, first.stdout);
  t.is(second.stderr, '');

  await chmod(file, 0o644);
  const refused = await runCoordinatorBin(['public-key', '--signing-key-file', file]);
  t.is(refused.code, 2);
  t.regex(refused.stderr, /0644.*chmod 600/);
});

test('a bad flag exits 2 naming the flag, the value and what is allowed', async (t) => {
  const r = await runCoordinatorBin(['--overlay-cidr', '100.96.0.1/16']);
  t.is(r.code, 2);
  t.regex(r.stderr, /--overlay-cidr: "100\.96\.0\.1\/16" is not valid; use a CIDR/);
  const e = await runCoordinatorBin([], { CROSSLINK_NODE_TTL: 'forever' });
  t.is(e.code, 2);
  t.regex(e.stderr, /CROSSLINK_NODE_TTL \(--node-ttl\): "forever"/);
});

test('run: serves registrations from NATS and exits 0 on SIGTERM, releasing the lease', async (t) => {
  const server = await NatsServer.start({ name: `xl-coordcli-${randomBytes(3).toString('hex')}` });
  t.teardown(() => server.stop());
  const dir = await tempDir(t);
  const { id, bucket, prefix } = scratchNames('xlcli');
  const keyFile = join(dir, 'coordinator.key');
  const child = spawn(COORDINATOR_BIN, ['--nats-url', server.url, '--bucket', bucket, '--subject-prefix', prefix, '--node-ttl', '10s', '--lease-ttl', '2s'], {
    env: { ...process.env, CROSSLINK_SIGNING_KEY_FILE: keyFile, CROSSLINK_LOG_LEVEL: 'info', POD_NAME: `xl-cli-${id}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });

  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  const client = agentClient(nc, prefix, 1000);
  const a = await fakeAgent('node-a');
  // The operator enrolls the cluster through the bin (once the coordinator made its key and bucket).
  const credentialFile = join(dir, 'c1.join');
  await waitFor(async () => {
    const r = await runCoordinatorBin(['cluster', 'add', 'c1', '--pod-cidr', '10.10.0.0/16', '--credential-out', credentialFile, '--nats-url', server.url, '--bucket', bucket], {
      CROSSLINK_SIGNING_KEY_FILE: keyFile,
    });
    return r.code === 0 ? r : undefined;
  }, { timeoutMs: 60_000, intervalMs: 500, what: 'cluster add through the bin' });
  t.is((await stat(credentialFile)).mode & 0o777, 0o600, 'the join credential is a secret file');
  a.joinCredential = await parseJoinCredential(await readFile(credentialFile, 'utf8'));
  const reply = await waitFor(async () => {
    const r = await client.register(a);
    return r.ok ? r : undefined;
  }, { timeoutMs: 20_000, intervalMs: 300, what: `registration through the bin; log: ${stderr.slice(-500)}` });
  const publicKey = (JSON.parse(await readFile(keyFile, 'utf8')) as { publicKey: string }).publicKey;
  t.is((await verifyEnvelope(reply.record, publicKey, NodeRecord)).name, 'node-a');
  t.regex(stderr, /became leader/);
  t.false(stderr.includes((JSON.parse(await readFile(keyFile, 'utf8')) as { secretKey: string }).secretKey), 'secret key never logged');

  child.kill('SIGTERM');
  const end = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000))]);
  t.deepEqual(end, { code: 0, signal: null }, stderr.slice(-1000));
  // The lease was released (deleted), and the node record is still there.
  const kv = await new Kvm(nc).open(bucket);
  const lease = await kv.get(kvKeys.lease);
  t.true(lease === null || lease.operation !== 'PUT');
  const rec = await kv.get(kvKeys.node('node-a'));
  t.is(rec?.operation, 'PUT');
});
