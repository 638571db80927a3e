// `{cluster: X}` in the access policy means the pod ranges X was ENROLLED with (its signed
// `enrollments.X` definition) plus its nodes' overlay addresses — never the ranges node records
// claim. One function (protocol/policy/context.ts) for the agents' nftables table and for
// `crosslink-coordinator policy test`. Adversary: a node record claiming an extra range does not
// widen what a rule allows; a forged definition (another key) is ignored, reported, and does not
// replace the real one. Real NATS: `cluster add` / `cluster remove` reach the agent's table, also
// after the fault of a nats-server restart.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { connect } from '@nats-io/transport-node';
import { AgentPolicy } from '../agent/policy/agent-policy.ts';
import { PolicyEnforcer } from '../agent/policy/enforcer.ts';
import { addCluster, ClusterAdminError, removeCluster } from '../coordinator/cluster-admin.ts';
import { setPolicy } from '../coordinator/policy-admin.ts';
import { openBucket, StateStore } from '../coordinator/store.ts';
import { systemClock } from '../lib/clock.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { policyContext } from '../protocol/policy/context.ts';
import type { PolicyRecord } from '../protocol/policy/document.ts';
import { parsePolicyYaml } from '../protocol/policy/yaml.ts';
import { evaluatePolicy } from '../protocol/policy/evaluate.ts';
import { generateSigningKeyPair, signEnvelope } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { runCoordinatorBin } from './helpers/coordinator-fixture.ts';
import { scratchNames, useNatsServer } from './helpers/nats-fixture.ts';
import { enrolledCluster, enrollmentsOf, fakeNft, policyNode } from './helpers/policy-fixtures.ts';
import { tempDir } from './helpers/temp-dir.ts';

const server = useNatsServer('xl-policyenroll');

/** c1 is enrolled with 10.201.0.0/16; its node a1 claims 10.99.0.0/16 on top (never enrolled). */
const a1 = policyNode('a1', 'c1', ['10.201.1.0/24', '10.99.0.0/16'], '100.96.0.1');
const b1 = policyNode('b1', 'c2', ['10.202.1.0/24'], '100.96.0.2');
/** A node of a cluster that is not enrolled: its claims and address belong to no cluster. */
const ghost = policyNode('g1', 'ghost', ['10.77.0.0/16'], '100.96.0.7');
const ALLOW_C1_TO_C2 = 'default: deny\nrules:\n  - from: {cluster: c1}\n    to: {cluster: c2, ports: ["tcp/8080"]}\n';

test('adversary (pure and rendered): a node record claiming a range outside its enrollment does not widen {cluster: X}', async (t) => {
  const enrolled = enrollmentsOf(enrolledCluster('c1', ['10.201.0.0/16']), enrolledCluster('c2', ['10.202.0.0/16']));
  const ctx = policyContext(enrolled.values(), [a1, b1, ghost]);
  t.deepEqual([...ctx.clusters], [['c1', ['10.201.0.0/16', '100.96.0.1/32']], ['c2', ['10.202.0.0/16', '100.96.0.2/32']]]);
  t.deepEqual(ctx.nodeOverlayIps, ['100.96.0.1', '100.96.0.2', '100.96.0.7'], 'node-to-node exemption: every verified node');

  const doc = parsePolicyYaml(ALLOW_C1_TO_C2);
  const flow = (from: string) => ({ from: { ip: from }, to: { ip: '10.202.1.9' }, protocol: 'tcp' as const, port: 8080 });
  t.like(evaluatePolicy(doc, ctx, flow('10.99.3.4')), { action: 'deny', by: 'default' }, 'the claimed range is not c1');
  t.like(evaluatePolicy(doc, ctx, flow('10.77.0.1')), { action: 'deny', by: 'default' }, 'a node of a cluster not enrolled is no cluster');
  t.like(evaluatePolicy(doc, ctx, flow('10.201.250.1')), { action: 'allow', rule: 1 }, 'enrolled but claimed by no node: still c1');

  // The agent's enforcer renders the same: the table has the enrolled ranges, never the claim.
  const { runner, applied } = fakeNft();
  const e = new PolicyEnforcer({ runner, logger: silentLogger(), clock: new ManualClock(), interfaceName: 'xlwg0', mode: 'best-effort' });
  await e.init();
  const record: PolicyRecord = { kind: 'policy', v: 1, version: 1, policy: doc, setBy: 't', setAt: 0, sourceSha256: 'ab'.repeat(32) };
  e.update({ known: true, record, rejected: null, enrollments: enrolled, nodes: new Map([a1, b1, ghost].map((n) => [n.name, n])) });
  await e.settled();
  t.is(applied.length, 1);
  t.regex(applied[0] ?? '', /ip saddr \{ 10\.201\.0\.0\/16, 100\.96\.0\.1\/32 \} ip daddr \{ 10\.202\.0\.0\/16, 100\.96\.0\.2\/32 \} tcp dport \{ 8080 \} counter name "rule_1" accept/);
  t.notRegex(applied[0] ?? '', /10\.99\.|10\.77\./);
});

test('real NATS: the agent follows enrollments.> (add, remove); a forged definition is ignored and reported; policy test maps clusters the same way', async (t) => {
  const nc = await connect({ servers: server().url, name: 'xl-test-policyenroll' });
  t.teardown(() => nc.close());
  const { bucket } = scratchNames('xlpolenroll');
  const kv = await openBucket(nc, { bucket, replicas: 1, logger: silentLogger() });
  const key = await generateSigningKeyPair();
  const store = new StateStore(kv, key, silentLogger());
  const admin = { store, clock: systemClock };
  await addCluster(admin, { name: 'c1', podCidrs: ['10.201.0.0/16'], topology: 'mesh', allowPublic: false });
  // c3 (the rule's destination) is not enrolled yet; its node is already in the mesh.
  const c3node = policyNode('c3-1', 'c3', ['10.203.1.0/24'], '100.96.0.9');
  for (const n of [a1, c3node]) await kv.put(kvKeys.node(n.name), JSON.stringify(await signEnvelope(n, key.secretKey)));
  await setPolicy({ kv, signingKey: key, clock: systemClock, logger: silentLogger() }, 'default: deny\nrules:\n  - from: {cluster: c1}\n    to: {cluster: c3, ports: ["tcp/8080"]}\n', 'test', 'test');

  const { runner, applied } = fakeNft();
  const policy = new AgentPolicy({ runner, logger: silentLogger(), clock: systemClock, interfaceName: 'xlwg0', mode: 'best-effort', nftCommand: 'nft', bucket, coordinatorKeys: [key.publicKey], onGateChanged: () => undefined });
  t.teardown(() => policy.stop(false));
  await policy.init();
  policy.connect(nc);
  policy.meshChanged(new Map([a1, c3node].map((n) => [n.name, n])));
  /** The table last applied, once it satisfies `ok` (captured in the same poll). */
  const tableWhen = async (ok: (table: string) => boolean, what: string): Promise<string> => {
    let seen = '';
    await waitFor(() => ok((seen = applied.at(-1) ?? '')), { timeoutMs: 15_000, what });
    return seen;
  };

  const first = await tableWhen((x) => x.includes('crosslink policy v1'), 'policy v1 applied');
  t.false(first.includes('10.203.'), 'c3 not enrolled: its node\'s claim is no part of the table');
  t.false(first.includes('10.99.'), 'never the extra claim');

  await addCluster(admin, { name: 'c3', podCidrs: ['10.203.0.0/16'], topology: 'mesh', allowPublic: false });
  const added = await tableWhen((x) => x.includes('10.203.0.0/16'), 'c3\'s enrolled range in the table');
  t.regex(added, /ip saddr \{ 10\.201\.0\.0\/16, 100\.96\.0\.1\/32 \} ip daddr \{ 10\.203\.0\.0\/16, 100\.96\.0\.9\/32 \} tcp dport \{ 8080 \}/);
  t.false(added.includes('10.99.'));

  // `policy test` (the operator's command, reading the same bucket) decides with the same mapping.
  const dir = await tempDir(t, 'xl-policyenroll-');
  const keyFile = join(dir, 'coordinator.key');
  await writeFile(keyFile, JSON.stringify({ publicKey: key.publicKey, secretKey: key.secretKey }), { mode: 0o600 });
  const bin = (from: string) => runCoordinatorBin(['policy', 'test', '--from', from, '--to', '10.203.77.7', '--port', 'tcp/8080', '--nats-url', server().url, '--bucket', bucket], { CROSSLINK_SIGNING_KEY_FILE: keyFile });
  const allowed = await bin('10.201.200.5');
  t.is(allowed.code, 0, allowed.stdout + allowed.stderr);
  t.regex(allowed.stdout, /ALLOW: allowed by policy rule 1/);
  const claimed = await bin('10.99.3.4');
  t.is(claimed.code, 1, claimed.stdout + claimed.stderr);
  t.regex(claimed.stdout, /DENY: denied by the policy default/);

  // Forged definitions (signed by another key): a new cluster, and a wider c1 over the real one.
  const evil = await generateSigningKeyPair();
  const forge = async (name: string, podCidrs: string[]): Promise<void> => {
    await kv.put(kvKeys.enrollment(name), JSON.stringify(await signEnvelope(enrolledCluster(name, podCidrs, Date.now()), evil.secretKey)));
  };
  await forge('c4', ['10.204.0.0/16']);
  await forge('c1', ['10.0.0.0/8']);
  let problems: string[] = [];
  await waitFor(
    async () => {
      problems = policy.errors(await policy.status());
      return problems.some((p) => p.includes('enrollments.c1 was ignored')) && problems.some((p) => p.includes('enrollments.c4 was ignored'));
    },
    { timeoutMs: 15_000, what: 'both forged definitions reported' },
  );
  t.true(problems.some((p) => /enrollments\.c4 was ignored: signature does not verify/.test(p)), problems.join('\n'));
  const now = applied.at(-1) ?? '';
  t.false(now.includes('10.0.0.0/8') || now.includes('10.204.'), 'nothing forged reached the table');
  t.regex(now, /ip saddr \{ 10\.201\.0\.0\/16, 100\.96\.0\.1\/32 \}/, 'c1 keeps its real enrolled range');

  await removeCluster(admin, 'c3');
  const removed = await tableWhen((x) => !x.includes('10.203.0.0/16'), 'c3\'s range gone after cluster remove');
  t.false(removed.includes('100.96.0.9/32'), 'its node belongs to no cluster any more');
});

// Serial: runs before the concurrent tests, so the restart disturbs no other test of this file.
test.serial('fault: after a nats-server restart the agent still follows enrollments.> (a cluster removed right after it leaves the table)', async (t) => {
  const agentNc = await connect({ servers: server().url, name: 'xl-test-policyenroll-agent', maxReconnectAttempts: -1, reconnectTimeWait: 200 });
  const adminNc = await connect({ servers: server().url, name: 'xl-test-policyenroll-admin', maxReconnectAttempts: -1, reconnectTimeWait: 200 });
  t.teardown(async () => {
    await agentNc.close();
    await adminNc.close();
  });
  const { bucket } = scratchNames('xlpolrestart');
  const kv = await openBucket(adminNc, { bucket, replicas: 1, logger: silentLogger() });
  const key = await generateSigningKeyPair();
  const admin = { store: new StateStore(kv, key, silentLogger()), clock: systemClock };
  await addCluster(admin, { name: 'c1', podCidrs: ['10.201.0.0/16'], topology: 'mesh', allowPublic: false });
  await addCluster(admin, { name: 'c3', podCidrs: ['10.203.0.0/16'], topology: 'mesh', allowPublic: false });
  await setPolicy({ kv, signingKey: key, clock: systemClock, logger: silentLogger() }, 'default: deny\nrules:\n  - from: {cluster: c1}\n    to: {cluster: c3}\n', 'test', 'test');
  const { runner, applied } = fakeNft();
  const policy = new AgentPolicy({ runner, logger: silentLogger(), clock: systemClock, interfaceName: 'xlwg1', mode: 'best-effort', nftCommand: 'nft', bucket, coordinatorKeys: [key.publicKey], onGateChanged: () => undefined });
  t.teardown(() => policy.stop(false));
  await policy.init();
  policy.connect(agentNc);
  policy.meshChanged(new Map([[a1.name, a1]]));
  await waitFor(() => (applied.at(-1) ?? '').includes('10.203.0.0/16'), { timeoutMs: 15_000, what: 'c3 in the table before the restart' });

  await server().restart();
  // The operator removes c3 as soon as the server is back (the admin connection may still be reconnecting).
  await waitFor(
    async () => {
      try {
        await removeCluster(admin, 'c3');
        return true;
      } catch (err) {
        // A try that timed out may still have removed it.
        return err instanceof ClusterAdminError && /is not enrolled/.test(err.message);
      }
    },
    { timeoutMs: 20_000, intervalMs: 200, what: 'cluster remove c3 after the restart' },
  );
  let table = '';
  await waitFor(() => !(table = applied.at(-1) ?? '').includes('10.203.0.0/16'), { timeoutMs: 30_000, what: 'c3 gone from the table after the restart' });
  t.regex(table, /crosslink policy v1/);
  t.regex(table, /# rule 1: allow from cluster c1 to cluster c3, any port \(matches nothing here: cluster c3 is not enrolled\)/);
  t.false((await policy.status()).lastError !== null, 'the table applies');
});

test('fault: an agent that cannot read the enrollments says so and applies nothing', async (t) => {
  const nc = await connect({ servers: server().url, name: 'xl-test-policyenroll-none' });
  t.teardown(() => nc.close());
  const { runner, applied } = fakeNft();
  const policy = new AgentPolicy({ runner, logger: silentLogger(), clock: systemClock, interfaceName: 'xlwg2', mode: 'best-effort', nftCommand: 'nft', bucket: scratchNames('xlpolnone').bucket, coordinatorKeys: [(await generateSigningKeyPair()).publicKey], onGateChanged: () => undefined });
  t.teardown(() => policy.stop(false));
  await policy.init();
  policy.connect(nc);
  policy.meshChanged(new Map([[a1.name, a1]]));
  let problems: string[] = [];
  await waitFor(
    async () => {
      problems = policy.errors(await policy.status());
      return problems.some((p) => p.startsWith('policy: cannot read the cluster enrollments (enrollments.>): '));
    },
    { timeoutMs: 15_000, what: 'the unreadable enrollments reported' },
  );
  t.true(problems.some((p) => /the policy table is not updated until they are read/.test(p)), problems.join('\n'));
  t.deepEqual(applied, [], 'nothing applied');
});

