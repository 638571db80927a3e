// `crosslink-coordinator cluster add` (the real bin) right after the server leading the bucket's
// stream is lost, on a real 3-server nats-server cluster (lib/nats-cluster.ts, bucket at R3): after a
// crash (SIGKILL: no stream leader until the survivors elect one, seconds) and after a clean stop
// (leadership handed over, but a consumer create may be placed on the stopped server). Run once,
// not retried by the test: it must succeed within its own deadline, and exactly one write lands.
// Without the operator commands' retries (coordinator/revocation-commands.ts) the crash fails it:
// the bucket's stream info times out ("cannot open the KV bucket"), or the write does.
import test from 'ava';
import { writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { ADMIN_DEADLINE_MS } from '../coordinator/revocation-commands.ts';
import { openBucket } from '../coordinator/store.ts';
import { silentLogger } from '../lib/logger.ts';
import { NatsCluster } from '../lib/nats-cluster.ts';
import { waitFor } from '../lib/wait.ts';
import { parseJoinCredential } from '../protocol/join-credential.ts';
import { ClusterDefinition } from '../protocol/messages.ts';
import { generateSigningKeyPair, verifyEnvelope } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { runCoordinatorBin } from './helpers/coordinator-fixture.ts';
import { scratchNames } from './helpers/nats-fixture.ts';
import { tempDir } from './helpers/temp-dir.ts';

/** The bucket's stream, once it has a leader and two current followers: its leader and last sequence. */
async function settled(jsm: JetStreamManager, stream: string): Promise<{ leader: string; lastSeq: number }> {
  return waitFor(
    async () => {
      const info = await jsm.streams.info(stream);
      const replicas = info.cluster?.replicas ?? [];
      const leader = info.cluster?.leader ?? '';
      return leader !== '' && replicas.length === 2 && replicas.every((r) => r.current) ? { leader, lastSeq: info.state.last_seq } : undefined;
    },
    { timeoutMs: 45_000, intervalMs: 250, what: `the stream ${stream} with a leader and two current replicas` },
  );
}

test('3-server cluster: `cluster add` run once right after the stream leader is lost (crash, then clean stop) succeeds and writes once', async (t) => {
  const cluster = await NatsCluster.start({ name: `xl-natsc-${scratchNames('x').id}` });
  t.teardown(() => cluster.stop());
  const { bucket } = scratchNames('xlen');
  const stream = `KV_${bucket}`;
  const dir = await tempDir(t, 'xl-enroll-');
  const key = await generateSigningKeyPair();
  const keyFile = join(dir, 'coordinator.key');
  await writeFile(keyFile, `${JSON.stringify({ publicKey: key.publicKey, secretKey: key.secretKey })}\n`, { mode: 0o600 });

  // The bucket as the coordinator makes it (R3); the test reads it through whichever servers run.
  const nc = await connect({ servers: cluster.urls, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  t.teardown(() => nc.close());
  await openBucket(nc, { bucket, replicas: 3, logger: silentLogger() });
  const jsm = await jetstreamManager(nc, { timeout: 2000 });
  const kv = await new Kvm(nc).open(bucket, { allow_direct: true });
  const add = (name: string, podCidr: string, timeoutMs: number): ReturnType<typeof runCoordinatorBin> =>
    runCoordinatorBin(['cluster', 'add', name, '--pod-cidr', podCidr, '--credential-out', join(dir, `${name}.join`), '--nats-url', cluster.urls.join(','), '--bucket', bucket, '--signing-key-file', keyFile], {}, timeoutMs);

  // Before any loss (and the bin built, if it has to be).
  const first = await add('east-0', '10.40.0.0/16', 180_000);
  t.is(first.code, 0, first.stderr);

  for (const [i, signal] of (['SIGKILL', 'SIGTERM'] as const).entries()) {
    const name = `late-${i}`;
    const before = await settled(jsm, stream);
    const lost = cluster.indexOf(before.leader);
    t.true(lost >= 0, `stream leader ${before.leader} is a member`);
    const t0 = Date.now();
    await cluster.server(lost).stopProcess(signal);
    // Once, at once: no retry here. Bounded by the command's own deadline plus its start.
    const r = await add(name, `10.${41 + i}.0.0/16`, ADMIN_DEADLINE_MS + 30_000);
    t.log(`${signal} of ${before.leader}: cluster add ${name} exited ${r.code} ${Date.now() - t0} ms after the stop${r.stderr.trim() === '' ? '' : `; stderr: ${r.stderr.trim()}`}`);
    t.is(r.code, 0, `${signal}: ${r.stderr}`);
    t.regex(r.stdout, new RegExp(`enrolled cluster "${name}"`));

    // What landed is this run's definition, with the credential it wrote; and it landed once.
    const credential = await parseJoinCredential(await readFile(join(dir, `${name}.join`), 'utf8'));
    const entry = await waitFor(() => kv.get(kvKeys.enrollment(name)), { timeoutMs: 30_000, intervalMs: 250, what: `${name} read through a surviving server` });
    t.is(entry?.operation, 'PUT');
    const def = await verifyEnvelope(entry?.json<unknown>(), key.publicKey, ClusterDefinition);
    t.is(def.joinKey, credential.publicKey);
    await cluster.server(lost).restart();
    const after = await settled(jsm, stream);
    t.is(after.lastSeq - before.lastSeq, 1, `${signal}: exactly one write (the stream went from ${before.lastSeq} to ${after.lastSeq})`);
  }
});
