// The operator's policy commands against a real nats-server and coordinator: `policy set` writes a
// signed, monotonically versioned record (and a history entry), an invalid file changes nothing
// and exits non-zero with the reason, show/history/test print what is in force, and an agent's
// PolicyWatch takes only records signed by a trusted key (others are ignored and reported).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { PolicyWatch, type PolicyWatchState } from '../agent/policy/policy-watch.ts';
import { fakeAgent } from './helpers/fake-agent.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { PolicyRecord } from '../protocol/policy/document.ts';
import { parsePolicyYaml } from '../protocol/policy/yaml.ts';
import { policyKeys, verifyPolicyRecord } from '../protocol/policy/record.ts';
import { generateSigningKeyPair, signEnvelope } from '../protocol/signing.ts';
import { runCoordinatorBin, startCoordinatorEnv } from './helpers/coordinator-fixture.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';
import { tempDir } from './helpers/temp-dir.ts';

const server = useNatsServer('xl-coordpolicy');

const DENY_WITH_DB = `# only the database port across clouds
default: deny
rules:
  - from: {cluster: app}
    to: {cluster: db, ports: ["tcp/5432"]}
    description: app servers to postgres
  - from: {cidr: 10.90.0.0/16}
    to: {cluster: db}
    action: deny
`;

test('bin: policy set / show / history / test; an invalid file changes nothing; versions are monotonic and signed', async (t) => {
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlpolicy', config: { nodeTtl: '60s' } });
  const dir = await tempDir(t, 'xl-coordpolicy-');
  const keyFile = join(dir, 'coordinator.key');
  await writeFile(keyFile, JSON.stringify({ publicKey: env.key.publicKey, secretKey: env.key.secretKey }), { mode: 0o600 });
  const flags = ['--nats-url', server().url, '--bucket', env.bucket];
  const envVars = { CROSSLINK_SIGNING_KEY_FILE: keyFile };
  for (const [name, cluster, cidr] of [['app-1', 'app', '10.81.1.0/24'], ['db-1', 'db', '10.82.1.0/24']] as const) {
    const a = await fakeAgent(name, { cluster, podCidrs: [cidr] });
    const r = await env.client.register(a);
    t.true(r.ok, r.ok ? '' : r.error.message);
  }

  const none = await runCoordinatorBin(['policy', 'show', ...flags], envVars);
  t.is(none.code, 0, none.stderr);
  t.regex(none.stdout, /no policy is set/);

  const file = join(dir, 'policy.yaml');
  await writeFile(file, DENY_WITH_DB);
  const set1 = await runCoordinatorBin(['policy', 'set', '--file', file, '--by', 'alice', ...flags], envVars);
  t.is(set1.code, 0, set1.stderr);
  t.regex(set1.stdout, /policy version 1 is in force \(was no policy\): default deny, 2 rule\(s\)/);
  const stored = await env.kv.get(policyKeys.current);
  const v1 = await verifyPolicyRecord(stored?.string(), [env.key.publicKey]);
  t.true(v1.ok && v1.record.version === 1 && v1.record.setBy === 'alice', 'signed by the coordinator key');
  t.false((await verifyPolicyRecord(stored?.string(), [(await generateSigningKeyPair()).publicKey])).ok, 'and by no other key');

  // Invalid: exit 2, the reason names field, value and what is allowed; the bucket is untouched.
  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, 'default: deny\nrules:\n  - from: {cluster: app}\n    to: {cluster: db, ports: ["tcp/99999"]}\n');
  const rev = stored?.revision;
  const refused = await runCoordinatorBin(['policy', 'set', '--file', bad, ...flags], envVars);
  t.is(refused.code, 2);
  t.regex(refused.stderr, /rules\[0\]\.to\.ports\[0\]: "tcp\/99999" is not valid; use "tcp\/<port>"/);
  t.is((await env.kv.get(policyKeys.current))?.revision, rev, 'nothing written');

  // The same document again: nothing written. A changed one: version 2.
  const same = await runCoordinatorBin(['policy', 'set', '--file', file, ...flags], envVars);
  t.regex(same.stdout, /unchanged: policy version 1/);
  await writeFile(file, 'default: allow\nrules:\n  - from: {cluster: app}\n    to: {cluster: db}\n    action: deny\n');
  const set2 = await runCoordinatorBin(['policy', 'set', '--file', file, '--by', 'bob', ...flags], envVars);
  t.regex(set2.stdout, /policy version 2 is in force \(was version 1\)/);

  const show = await runCoordinatorBin(['policy', 'show', ...flags], envVars);
  t.regex(show.stdout, /^policy version 2, set by bob at \S+Z/);
  t.regex(show.stdout, /1\s+deny\s+cluster app\s+cluster db\s+any/);
  const yaml = await runCoordinatorBin(['policy', 'show', '--yaml', ...flags], envVars);
  t.is(parsePolicyYaml(yaml.stdout).default, 'allow', 'show --yaml round-trips');

  const history = await runCoordinatorBin(['policy', 'history', ...flags], envVars);
  t.is(history.code, 0, history.stderr);
  t.regex(history.stdout, /^VERSION\s+SET AT\s+SET BY\s+DEFAULT\s+RULES\s+SHA256\n2\s+\S+Z\s+bob\s+allow\s+1\s+[0-9a-f]{12}\n1\s+\S+Z\s+alice\s+deny\s+2\s+[0-9a-f]{12}\n$/);

  // test: the policy in force, then a file; exit 0 allowed, 1 denied; the deciding rule named.
  const denied = await runCoordinatorBin(['policy', 'test', '--from', 'app', '--to', '10.82.1.7', '--port', 'tcp/5432', ...flags], envVars);
  t.is(denied.code, 1, denied.stderr);
  t.regex(denied.stdout, /under policy version 2:\nDENY: denied by policy rule 1 \(deny from cluster app to cluster db, any port\)/);
  await writeFile(file, DENY_WITH_DB);
  const fromFile = await runCoordinatorBin(['policy', 'test', '--file', file, '--from', '10.81.1.4', '--to', 'db', '--port', 'tcp/5432', ...flags], envVars);
  t.is(fromFile.code, 0, fromFile.stderr);
  t.regex(fromFile.stdout, /ALLOW: allowed by policy rule 1 .* — app servers to postgres/);
  const byDefault = await runCoordinatorBin(['policy', 'test', '--file', file, '--from', '10.81.1.4', '--to', '10.82.1.7', '--port', 'tcp/22', ...flags], envVars);
  t.is(byDefault.code, 1);
  t.regex(byDefault.stdout, /DENY: denied by the policy default/);
  const usage = await runCoordinatorBin(['policy', 'test', '--from', 'app', '--to', 'db', '--port', 'tcp/x', ...flags], envVars);
  t.is(usage.code, 2);
  t.regex(usage.stderr, /--port: "tcp\/x" is not valid; use tcp\/<port>, udp\/<port> or icmp/);
});

test('agent side: PolicyWatch takes signed versions as they are set, ignores and reports a forged one, and a replayed older one', async (t) => {
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlpolwatch', config: { nodeTtl: '60s' } });
  const states: PolicyWatchState[] = [];
  const watch = new PolicyWatch({ nc: env.nc, bucket: env.bucket, coordinatorKeys: [env.key.publicKey], logger: silentLogger(), clock: systemClock });
  watch.onChange((s) => states.push(s));
  watch.start();
  t.teardown(() => watch.stop());
  await waitFor(() => watch.state().known, { timeoutMs: 10_000, what: 'the policy key to be read' });
  t.is(watch.state().record, null, 'no policy set');

  const record = (version: number): PolicyRecord => ({ kind: 'policy', v: 1, version, policy: parsePolicyYaml('default: deny\n'), setBy: 't', setAt: 1, sourceSha256: 'e'.repeat(64) });
  await env.kv.put(policyKeys.current, JSON.stringify(await signEnvelope(record(3), env.key.secretKey)));
  await waitFor(() => watch.state().record?.version === 3, { timeoutMs: 10_000, what: 'version 3' });

  const forger = await generateSigningKeyPair();
  await env.kv.put(policyKeys.current, JSON.stringify(await signEnvelope(record(4), forger.secretKey)));
  await waitFor(() => watch.state().rejected !== null, { timeoutMs: 10_000, what: 'the forged record to be refused' });
  t.like(watch.state(), { record: { version: 3 } });
  t.regex(watch.state().rejected ?? '', /signature does not verify/);

  await env.kv.put(policyKeys.current, JSON.stringify(await signEnvelope(record(2), env.key.secretKey)));
  await waitFor(() => /older than version 3/.test(watch.state().rejected ?? ''), { timeoutMs: 10_000, what: 'the replay to be refused' });
  t.is(watch.state().record?.version, 3);

  await env.kv.put(policyKeys.current, JSON.stringify(await signEnvelope(record(5), env.key.secretKey)));
  await waitFor(() => watch.state().record?.version === 5, { timeoutMs: 10_000, what: 'version 5' });
  t.is(watch.state().rejected, null);
  await env.kv.delete(policyKeys.current);
  await waitFor(() => watch.state().record === null, { timeoutMs: 10_000, what: 'the removal' });
  t.true(states.length >= 5);
});
