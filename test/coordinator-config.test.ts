import test, { type ExecutionContext } from 'ava';
import { chmod, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeConfig, expiryCheckIntervalMs, heartbeatIntervalMs, parseCoordinatorConfig, type RawRunOptions } from '../coordinator/config.ts';
import { loadOrCreateSigningKey } from '../coordinator/signing-key.ts';
import { ValidationError } from '../lib/errors.ts';
import { SecretFileError } from '../lib/secret-file.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';
import { tempDir as makeTempDir } from './helpers/temp-dir.ts';

test('defaults', (t) => {
  const c = parseCoordinatorConfig({});
  t.deepEqual(c.natsServers, ['nats://127.0.0.1:4222']);
  t.is(c.natsCreds, null);
  t.is(c.overlayCidr.text, '100.96.0.0/16');
  t.is(c.nodeTtlMs, 60_000);
  t.is(c.signingKeyFile, '/var/lib/crosslink/coordinator.key');
  t.is(c.bucket, 'crosslink');
  t.is(c.replicas, 1);
  t.is(c.subjectPrefix, 'crosslink.v1');
  t.is(c.minPodCidrPrefixV4, 16);
  t.is(c.minPodCidrPrefixV6, 48);
  t.is(c.maxClockSkewMs, 300_000);
  t.is(c.leaseTtlMs, 3000, 'issue 10: a failover to a running follower within 5 s needs a 3 s lease (docs/benchmarks.md round 21)');
  t.is(c.logLevel, 'info');
  t.true(Object.isFrozen(c));
  t.is(heartbeatIntervalMs(c), 15_000);
  t.is(expiryCheckIntervalMs(c), 6000);
});

test('values are parsed', (t) => {
  const c = parseCoordinatorConfig({
    natsUrl: 'nats://a:4222, tls://b:4222,c:4222',
    natsCreds: '/etc/nats/x.creds',
    overlayCidr: 'fd7a:115c:a1e0::/48',
    nodeTtl: '1500ms',
    replicas: '3',
    leaseTtl: '1m',
    maxClockSkew: '30s',
    minPodCidrPrefix: '12',
    logLevel: 'debug',
  });
  t.deepEqual(c.natsServers, ['nats://a:4222', 'tls://b:4222', 'c:4222']);
  t.is(c.natsCreds, '/etc/nats/x.creds');
  t.is(c.overlayCidr.family, 6);
  t.is(c.nodeTtlMs, 1500);
  t.is(c.replicas, 3);
  t.is(c.leaseTtlMs, 60_000);
  t.is(c.maxClockSkewMs, 30_000);
  t.is(c.minPodCidrPrefixV4, 12);
  t.is(heartbeatIntervalMs({ nodeTtlMs: 1000 }), 250);
  t.is(heartbeatIntervalMs({ nodeTtlMs: 500 }), 200);
});

test('node TTL below 1s is refused', (t) => {
  const err = t.throws(() => parseCoordinatorConfig({ nodeTtl: '500ms' }), { instanceOf: ValidationError });
  t.is(err.field, '--node-ttl');
});

const bad: [Partial<RawRunOptions>, string, string][] = [
  [{ natsUrl: 'http://x:80' }, '--nats-url', 'http://x:80'],
  [{ natsUrl: ' , ' }, '--nats-url', ' , '],
  [{ natsCreds: '' }, '--nats-creds', '""'],
  [{ overlayCidr: '100.96.0.1/16' }, '--overlay-cidr', '100.96.0.1/16'],
  [{ overlayCidr: '100.96.0.0/31' }, '--overlay-cidr', '100.96.0.0/31'],
  [{ nodeTtl: 'soon' }, '--node-ttl', 'soon'],
  [{ signingKeyFile: ' ' }, '--signing-key-file', '" "'],
  [{ bucket: 'a.b' }, '--bucket', 'a.b'],
  [{ replicas: '0' }, '--replicas', '"0"'],
  [{ replicas: '6' }, '--replicas', '"6"'],
  [{ replicas: 'three' }, '--replicas', 'three'],
  [{ subjectPrefix: 'crosslink.*' }, '--subject-prefix', 'crosslink.*'],
  [{ minPodCidrPrefix: '33' }, '--min-pod-cidr-prefix', '33'],
  [{ minPodCidrPrefixV6: '129' }, '--min-pod-cidr-prefix-v6', '129'],
  [{ maxClockSkew: '10ms' }, '--max-clock-skew', '10ms'],
  [{ leaseTtl: '0s' }, '--lease-ttl', '0s'],
  [{ logLevel: 'loud' }, '--log-level', 'loud'],
  [{ requireHeartbeatEpoch: 'maybe' }, '--require-heartbeat-epoch', 'maybe'],
];

for (const [input, field, shown] of bad) {
  test(`refuses ${JSON.stringify(input)}`, (t) => {
    const err = t.throws(() => parseCoordinatorConfig(input), { instanceOf: ValidationError });
    t.is(err.field, field);
    t.true(err.message.includes(shown), err.message);
    t.regex(err.message, /use|must|at least/);
  });
}

test('--require-heartbeat-epoch: on by default; on/off and their spellings; a bare flag is on; the env variable is named', (t) => {
  t.true(parseCoordinatorConfig({}).requireHeartbeatEpoch);
  t.is(describeConfig(parseCoordinatorConfig({})).requireHeartbeatEpoch, true);
  for (const v of ['off', 'false', 'no', '0', ' OFF ']) t.false(parseCoordinatorConfig({ requireHeartbeatEpoch: v }).requireHeartbeatEpoch, v);
  for (const v of ['on', 'true', 'yes', '1']) t.true(parseCoordinatorConfig({ requireHeartbeatEpoch: v }).requireHeartbeatEpoch, v);
  t.true(parseCoordinatorConfig({ requireHeartbeatEpoch: true }).requireHeartbeatEpoch, 'commander gives true for the bare flag');
  const err = t.throws(() => parseCoordinatorConfig({ requireHeartbeatEpoch: 'sometimes' }, (k) => (k === 'requireHeartbeatEpoch' ? 'env' : 'default')), { instanceOf: ValidationError });
  t.is(err.field, 'CROSSLINK_REQUIRE_HEARTBEAT_EPOCH (--require-heartbeat-epoch)');
  t.regex(err.message, /"?sometimes"?.*use on or off/);
});

test('a value from the environment is named by its variable', (t) => {
  const err = t.throws(() => parseCoordinatorConfig({ replicas: '9' }, (k) => (k === 'replicas' ? 'env' : 'default')), { instanceOf: ValidationError });
  t.is(err.field, 'CROSSLINK_REPLICAS (--replicas)');
});

// ---- signing key file ----

const tempDir = (t: ExecutionContext): Promise<string> => makeTempDir(t, 'xl-coordkey-');

test('signing key: created with mode 0600 (parent dir too), then loaded unchanged', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'nested', 'coordinator.key');
  const first = await loadOrCreateSigningKey(file);
  t.true(first.created);
  t.is((await stat(file)).mode & 0o777, 0o600);
  const second = await loadOrCreateSigningKey(file);
  t.false(second.created);
  t.is(second.publicKey, first.publicKey);
  t.is(second.secretKey, first.secretKey);
});

test('signing key: replicas starting at once on one volume end up with one key', async (t) => {
  const file = join(await tempDir(t), 'coordinator.key');
  const keys = await Promise.all([loadOrCreateSigningKey(file), loadOrCreateSigningKey(file), loadOrCreateSigningKey(file)]);
  t.is(keys.filter((k) => k.created).length, 1);
  for (const k of keys) t.is(k.secretKey, keys[0].secretKey);
});

test('signing key: refused when group or world readable', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'k');
  await loadOrCreateSigningKey(file);
  await chmod(file, 0o640);
  const err = await t.throwsAsync(loadOrCreateSigningKey(file), { instanceOf: SecretFileError });
  t.is(err.path, file);
  t.regex(err.message, /0640.*chmod 600.*defaultMode/);
});

const malformed: [string, string, RegExp][] = [
  ['not JSON', 'hello', /not JSON/],
  ['missing secretKey', '{"publicKey":"x"}', /secretKey/],
  ['short secretKey', '{"secretKey":"AAAA"}', /secretKey/],
];

for (const [name, content, re] of malformed) {
  test(`signing key: malformed file refused (${name})`, async (t) => {
    const dir = await tempDir(t);
    const file = join(dir, 'k');
    await writeFile(file, content, { mode: 0o600 });
    const err = await t.throwsAsync(loadOrCreateSigningKey(file), { instanceOf: SecretFileError });
    t.regex(err.message, re);
  });
}

test('signing key: publicKey that does not match secretKey is refused', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'k');
  const a = await generateSigningKeyPair();
  const b = await generateSigningKeyPair();
  await writeFile(file, JSON.stringify({ secretKey: a.secretKey, publicKey: b.publicKey }), { mode: 0o600 });
  const err = await t.throwsAsync(loadOrCreateSigningKey(file), { instanceOf: SecretFileError });
  t.regex(err.message, /does not belong/);
});

test('signing key: a file holding only secretKey is accepted', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'k');
  const a = await generateSigningKeyPair();
  await writeFile(file, JSON.stringify({ secretKey: a.secretKey }), { mode: 0o600 });
  t.is((await loadOrCreateSigningKey(file)).publicKey, a.publicKey);
});

test('a bare number is refused (it meant ms here and s in the agent): the error names the flag, the value and both readings', (t) => {
  const err = t.throws(() => parseCoordinatorConfig({ nodeTtl: '1500' }), { instanceOf: ValidationError });
  t.is(err.field, '--node-ttl');
  t.is(err.value, '1500');
  t.is(err.message, '--node-ttl: "1500" is not valid; a bare number has no unit: write 1500ms or 1500s (= 25m); a duration from 1s to 1h');
  const frac = t.throws(() => parseCoordinatorConfig({ leaseTtl: '1.5' }), { instanceOf: ValidationError });
  t.regex(frac.message, /^--lease-ttl: "1\.5" is not valid; a bare number has no unit: write 1\.5ms or 1\.5s;/);
  t.is(parseCoordinatorConfig({ nodeTtl: '1500ms' }).nodeTtlMs, 1500);
  t.is(parseCoordinatorConfig({ nodeTtl: '25m' }).nodeTtlMs, 1_500_000);
  t.is(parseCoordinatorConfig({ leaseTtl: '1.5s' }).leaseTtlMs, 1500);
});
