// The operator's side of the per-cluster limits, in-process through the coordinator's command
// program: `cluster add|set --max-nodes|--max-exports` refuse anything but a whole number in range
// before touching NATS or writing the credential, naming the flag, the value and what is allowed;
// `cluster add` writes the defaults; `cluster set` changes one limit and keeps the other; `cluster
// show` and `list` print each limit with the live count (against a real nats-server).
import test, { type ExecutionContext } from 'ava';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { Command } from 'commander';
import { addClusterCommands } from '../coordinator/cluster-commands.ts';
import { DEFAULT_MAX_EXPORTS, DEFAULT_MAX_NODES } from '../coordinator/cluster-limits.ts';
import { loadOrCreateSigningKey } from '../coordinator/signing-key.ts';
import { StateStore, openBucket } from '../coordinator/store.ts';
import { ValidationError } from '../lib/errors.ts';
import { silentLogger } from '../lib/logger.ts';
import { ClusterDefinition, type NodeRecord } from '../protocol/messages.ts';
import { useNatsServer, scratchNames } from './helpers/nats-fixture.ts';
import { tempDir } from './helpers/temp-dir.ts';

const server = useNatsServer('xl-limits-cli');

/** Runs `crosslink-coordinator cluster …` in-process; what it printed on stdout (process.stdout is patched meanwhile: tests that print run serially). */
async function run(args: readonly string[]): Promise<string> {
  let out = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  try {
    // The `cluster` commands as coordinator/main.ts builds them (importing main would run it).
    const program = new Command('crosslink-coordinator').exitOverride();
    addClusterCommands(program);
    await program.parseAsync(['node', 'crosslink-coordinator', ...args]);
  } finally {
    process.stdout.write = write;
  }
  return out;
}

const exists = (path: string): Promise<boolean> => access(path).then(() => true, () => false);

for (const flag of ['--max-nodes', '--max-exports']) {
  for (const value of ['0', '-1', 'abc', '1.5', '1e3', '1000001']) {
    test(`cluster add ${flag} ${value} is refused naming the flag, the value and what is allowed; no credential is written`, async (t) => {
      const dir = await tempDir(t, 'xl-limits-cli-');
      const out = join(dir, 'c1.join');
      const err = await t.throwsAsync(run(['cluster', 'add', 'c1', '--pod-cidr', '10.1.0.0/16', '--credential-out', out, flag, value, '--nats-url', 'nats://127.0.0.1:9']), { instanceOf: ValidationError });
      t.is(err?.message, `${flag}: ${JSON.stringify(value)} is not valid; use a whole number from 1 to 1000000: the most ${flag === '--max-nodes' ? 'live nodes' : 'service exports'} the cluster may have`);
      t.false(await exists(out), 'refused before the credential file is written');
    });
  }
  test(`cluster set ${flag} 0 is refused the same way`, async (t) => {
    const err = await t.throwsAsync(run(['cluster', 'set', 'c1', flag, '0', '--nats-url', 'nats://127.0.0.1:9']), { instanceOf: ValidationError });
    t.regex(err?.message ?? '', new RegExp(`^${flag}: "0" is not valid; use a whole number from 1 to 1000000`));
  });
}

async function bucketWithKey(t: ExecutionContext): Promise<{ args: string[]; store: StateStore; dir: string }> {
  const dir = await tempDir(t, 'xl-limits-cli-');
  const keyFile = join(dir, 'coordinator.key');
  const key = await loadOrCreateSigningKey(keyFile);
  const { bucket } = scratchNames('xllimcli');
  const nc = await connect({ servers: server().url });
  t.teardown(() => nc.close());
  const store = new StateStore(await openBucket(nc, { bucket, replicas: 1, logger: silentLogger() }), key, silentLogger());
  return { args: ['--nats-url', server().url, '--bucket', bucket, '--signing-key-file', keyFile], store, dir };
}

function nodeOf(name: string, cluster: string, octet: number): NodeRecord {
  const key = Buffer.alloc(32, octet).toString('base64');
  return {
    kind: 'node', v: 1, name, cluster, location: 'l', publicKey: key, identityKey: key, endpoints: [], privateAddresses: [], podCidrs: [`10.1.${octet}.0/24`],
    listenPort: 51820, topology: 'mesh', gatewayEligible: false, overlayIp: `100.96.0.${octet}`, generation: 1, registeredAt: 1, updatedAt: 1,
  };
}

test.serial('cluster add writes the default limits; cluster set changes one and keeps the other; show and list print each limit with the live count', async (t) => {
  const { args, store, dir } = await bucketWithKey(t);
  const added = await run(['cluster', 'add', 'c1', '--pod-cidr', '10.1.0.0/16', '--credential-out', join(dir, 'c1.join'), ...args]);
  t.regex(added, new RegExp(`at most ${DEFAULT_MAX_NODES} live nodes and ${DEFAULT_MAX_EXPORTS} service exports`));
  t.like((await store.readDefinition('c1'))?.value, { maxNodes: DEFAULT_MAX_NODES, maxExports: DEFAULT_MAX_EXPORTS });
  await run(['cluster', 'add', 'c2', '--pod-cidr', '10.2.0.0/16', '--credential-out', join(dir, 'c2.join'), '--max-nodes', '7', '--max-exports', '9', ...args]);
  t.like((await store.readDefinition('c2'))?.value, { maxNodes: 7, maxExports: 9 });

  for (const [i, name] of ['a', 'b'].entries()) await store.putNode(nodeOf(name, 'c1', i + 1), undefined);
  const set = await run(['cluster', 'set', 'c1', '--max-nodes', '2', ...args]);
  t.is(set, 'set the limits of cluster "c1": live nodes 2 of at most 2; service exports 0 of at most 1000\n');
  const def = await store.readDefinition('c1');
  t.like(def?.value, { maxNodes: 2, maxExports: DEFAULT_MAX_EXPORTS, credentialGeneration: 1 }, 'the other limit and the credential stay');

  const shown = await run(['cluster', 'show', 'c1', ...args]);
  t.regex(shown, /^node limit: +2 of at most 2 live$/m);
  t.regex(shown, /^export limit: +0 of at most 1000 service exports$/m);
  const listed = await run(['cluster', 'list', ...args]);
  t.regex(listed, /NODES\/MAX +EXPORTS\/MAX/);
  t.regex(listed, /^c1 .* 2\/2 +0\/1000 /m);
  t.regex(listed, /^c2 .* 0\/7 +0\/9 /m);
  await t.throwsAsync(run(['cluster', 'set', 'c1', ...args]), { message: /nothing to set: give --max-nodes N and\/or --max-exports N/ });
});

test.serial('a definition without limits (written before they existed) still verifies and shows "no limit"; out-of-range limits do not parse', async (t) => {
  const { args, store } = await bucketWithKey(t);
  const old: ClusterDefinition = {
    kind: 'cluster-definition', v: 1, name: 'old', podCidrs: ['10.3.0.0/16'], topology: 'mesh', allowPublic: false,
    joinKey: Buffer.alloc(32, 9).toString('base64'), credentialGeneration: 1, createdAt: 1, updatedAt: 1,
  };
  await store.putDefinition(old, undefined);
  t.deepEqual((await store.readDefinition('old'))?.value, old);
  t.regex(await run(['cluster', 'show', 'old', ...args]), /^node limit: +0 \(no limit\) live$/m);
  for (const bad of [0, -1, 1.5, 1_000_001]) t.false(ClusterDefinition.safeParse({ ...old, maxNodes: bad }).success, `maxNodes ${bad}`);
  t.true(ClusterDefinition.safeParse({ ...old, maxNodes: 1, maxExports: 1_000_000 }).success);
});
