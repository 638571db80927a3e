// deploy/ invariants and the `crosslink manifests` renderer. Every YAML document is also checked
// field-by-field against the real @kubernetes/client-node models (unknown field or wrong type = fail),
// and every rendered file goes through `kubectl apply --dry-run=client` pointed at
// test/helpers/fake-apiserver.ts — the ONE stand-in for a Kubernetes API server we accept (it
// serves discovery so kubectl can map the kinds; nothing else exists for this machine).
import { MCS_GROUP, MCS_VERSION, SERVICE_EXPORTS, SERVICE_IMPORTS } from '../agent/kubernetes/mcs/resources.ts';
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { Command } from 'commander';
import { parse, parseAllDocuments } from 'yaml';
import { ValidationError } from '../lib/errors.ts';
import { DEPLOY_DIR, JOIN_CREDENTIAL_KEY, JOIN_CREDENTIAL_SECRET, joinManifests, packageVersion, parseManifestValues, registerManifestsCommand, renderManifests, runManifests } from '../cli/manifests.ts';
import { FakeApiServer } from './helpers/fake-apiserver.ts';
import { parseAgentConfig } from '../agent/config.ts';
import { formatJoinCredential, generateJoinCredential } from '../protocol/join-credential.ts';
import { RUN_FLAGS, parseCoordinatorConfig, type RawRunOptions } from '../coordinator/config.ts';
import { DEFAULT_NATS_TLS_SECRET, NATS_TLS_MOUNT } from '../cli/manifests-nats-tls.ts';
import { makeCa, makeCert } from './helpers/tls-certs.ts';
import { NATS_MAX_PAYLOAD } from '../protocol/nats-payload.ts';

const run = promisify(execFile);
const VERSION = packageVersion();

type Obj = Record<string, unknown>;
interface Doc {
  readonly file: string;
  readonly obj: Obj;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? yamlFiles(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : []))
    .sort();
}

function parseDocs(file: string, text = readFileSync(file, 'utf8')): Doc[] {
  return parseAllDocuments(text).flatMap((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]?.message ?? 'YAML error'}`);
    const obj: unknown = d.toJS();
    return obj === null ? [] : [{ file: relative(DEPLOY_DIR, file), obj: obj as Obj }];
  });
}

// deploy/monitoring/ holds prometheus-operator custom resources (no core API model to check them
// against): test/metrics-rules.test.ts checks those. *.cert-manager.yaml: cert-manager resources,
// checked in test/manifests-nats-tls.test.ts.
const FILES = yamlFiles(DEPLOY_DIR).filter((f) => !relative(DEPLOY_DIR, f).startsWith('monitoring/') && !f.endsWith('.cert-manager.yaml'));
const DOCS = FILES.flatMap((f) => parseDocs(f));

const o = (v: unknown): Obj => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const a = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const at = (v: unknown, ...path: (string | number)[]): unknown => path.reduce<unknown>((cur, k) => (typeof k === 'number' ? a(cur)[k] : o(cur)[k]), v);

function only(kind: string, name?: string): Obj {
  const found = DOCS.filter((d) => d.obj['kind'] === kind && (name === undefined || at(d.obj, 'metadata', 'name') === name));
  if (found.length !== 1) throw new Error(`expected exactly one ${kind}${name ? ` ${name}` : ''} in deploy/, found ${found.length}`);
  return found[0]!.obj;
}

function podSpec(workload: Obj): Obj {
  return o(at(workload, 'spec', 'template', 'spec'));
}

function container(workload: Obj, index = 0): Obj {
  return o(at(podSpec(workload), 'containers', index));
}

function envOf(c: Obj): Map<string, Obj> {
  return new Map(a(c['env']).map((e) => [String(o(e)['name']), o(e)]));
}

// ---- schema check against the client's generated models ----

interface Attr {
  readonly baseName: string;
  readonly type: string;
}
const models = k8s as unknown as Record<string, unknown>;

function attributesOf(type: string): readonly Attr[] | undefined {
  const model = models[type];
  if (typeof model !== 'function' || !('getAttributeTypeMap' in model) || typeof model.getAttributeTypeMap !== 'function') return undefined;
  return (model.getAttributeTypeMap as () => Attr[])();
}

function checkAgainstModel(value: unknown, type: string, path: string, errors: string[]): void {
  const bad = (what: string): void => void errors.push(`${path}: expected ${what}, got ${JSON.stringify(value)}`);
  if (type === 'any' || type === 'object') return;
  if (type === 'string' || type === 'Date') return typeof value === 'string' ? undefined : bad('a string');
  if (type === 'number') return typeof value === 'number' ? undefined : bad('a number');
  if (type === 'boolean') return typeof value === 'boolean' ? undefined : bad('a boolean');
  if (type === 'IntOrString') return typeof value === 'string' || typeof value === 'number' ? undefined : bad('an int or a string');
  const arr = /^Array<(.+)>$/.exec(type);
  if (arr?.[1]) {
    if (!Array.isArray(value)) return bad('a list');
    value.forEach((v, i) => checkAgainstModel(v, arr[1]!, `${path}[${i}]`, errors));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map?.[1]) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return bad('a map');
    for (const [k, v] of Object.entries(value)) checkAgainstModel(v, map[1], `${path}.${k}`, errors);
    return;
  }
  const attrs = attributesOf(type);
  if (!attrs) return void errors.push(`${path}: no model for type ${type}`);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return bad(`an object (${type})`);
  for (const [k, v] of Object.entries(value)) {
    const attr = attrs.find((x) => x.baseName === k);
    if (!attr) errors.push(`${path}.${k}: unknown field in ${type}`);
    else checkAgainstModel(v, attr.type, `${path}.${k}`, errors);
  }
}

function schemaErrors(obj: Obj): string[] {
  const errors: string[] = [];
  const kind = String(obj['kind']);
  checkAgainstModel(obj, `V1${kind}`, kind, errors);
  return errors;
}

// ---- every document ----

test('deploy/ has the agent and control-plane manifests, and every YAML document parses', (t) => {
  const names = FILES.map((f) => relative(DEPLOY_DIR, f));
  t.deepEqual(names, ['agent/daemonset.yaml', 'agent/mcs-crds.yaml', 'agent/namespace.yaml', 'agent/rbac.yaml', 'control-plane/coordinator.yaml', 'control-plane/namespace.yaml', 'control-plane/nats.yaml', 'control-plane/policy-configmap.yaml']);
  t.true(DOCS.length >= 15);
  for (const d of DOCS) {
    t.truthy(d.obj['apiVersion'], `${d.file}: apiVersion`);
    t.truthy(d.obj['kind'], `${d.file}: kind`);
    t.truthy(at(d.obj, 'metadata', 'name'), `${d.file}: metadata.name`);
  }
});

test('every document matches the Kubernetes API types (no unknown fields, right value types)', (t) => {
  for (const d of DOCS) t.deepEqual(schemaErrors(d.obj), [], `${d.file} ${String(d.obj['kind'])}/${String(at(d.obj, 'metadata', 'name'))}`);
  // The checker itself catches typos and wrong types:
  t.deepEqual(schemaErrors({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'x', lables: {} }, automountServiceAccountToken: 'no' }), [
    'ServiceAccount.metadata.lables: unknown field in V1ObjectMeta',
    'ServiceAccount.automountServiceAccountToken: expected a boolean, got "no"',
  ]);
});

test('namespaced objects live in crosslink-system', (t) => {
  const clusterScoped = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition']);
  for (const d of DOCS) {
    const ns = at(d.obj, 'metadata', 'namespace');
    if (clusterScoped.has(String(d.obj['kind']))) t.is(ns, undefined, d.file);
    else t.is(ns, 'crosslink-system', `${d.file} ${String(d.obj['kind'])}`);
  }
});

test('images: crosslink images are tagged with the package.json version; others are pinned', (t) => {
  const images = DOCS.flatMap((d) => ['containers', 'initContainers'].flatMap((k) => a(at(podSpec(d.obj), k)).map((c) => String(o(c)['image']))));
  t.true(images.length >= 3);
  for (const image of images) {
    if (image.startsWith('ghcr.io/crosslink/crosslink:')) t.is(image, `ghcr.io/crosslink/crosslink:${VERSION}`);
    else t.regex(image, /^nats:2\.\d+\.\d+-alpine$/, 'third-party images pinned to an exact version');
  }
  for (const d of DOCS) {
    const v = at(d.obj, 'metadata', 'labels', 'app.kubernetes.io/version');
    if (v !== undefined) t.is(v, VERSION, `${d.file} version label`);
  }
});

// ---- agent DaemonSet ----

test('DaemonSet: host network, NET_ADMIN only, /dev/net/tun, host state dir, runs everywhere, critical', (t) => {
  const ds = only('DaemonSet', 'crosslink-agent');
  const spec = podSpec(ds);
  const c = container(ds);
  t.is(spec['hostNetwork'], true);
  t.is(spec['dnsPolicy'], 'ClusterFirstWithHostNet');
  const sc = o(c['securityContext']);
  t.deepEqual(at(sc, 'capabilities', 'add'), ['NET_ADMIN'], 'exactly NET_ADMIN: netlink and nftables need nothing else');
  t.deepEqual(at(sc, 'capabilities', 'drop'), ['ALL']);
  t.is(sc['privileged'], false);
  t.is(sc['allowPrivilegeEscalation'], false);

  const volumes = new Map(a(spec['volumes']).map((v) => [String(o(v)['name']), o(v)]));
  const mounts = new Map(a(c['volumeMounts']).map((m) => [String(o(m)['mountPath']), o(m)]));
  const volumeAt = (mountPath: string): Obj => o(volumes.get(String(mounts.get(mountPath)?.['name'])));
  t.deepEqual(volumeAt('/dev/net/tun')['hostPath'], { path: '/dev/net/tun', type: 'CharDevice' });
  t.deepEqual(volumeAt('/var/lib/crosslink')['hostPath'], { path: '/var/lib/crosslink', type: 'DirectoryOrCreate' });
  t.is(envOf(c).get('CROSSLINK_STATE_DIR')?.['value'], '/var/lib/crosslink');

  const tolerations = a(spec['tolerations']).map(o);
  t.true(
    tolerations.some((tol) => tol['operator'] === 'Exists' && tol['key'] === undefined && tol['effect'] === undefined),
    'a bare "operator: Exists" toleration tolerates every taint',
  );
  t.is(spec['priorityClassName'], 'system-node-critical');
  const quota = only('ResourceQuota', 'crosslink-critical-pods');
  t.deepEqual(at(quota, 'spec', 'scopeSelector', 'matchExpressions', 0, 'values'), ['system-node-critical']);
});

test('DaemonSet: probes on the node-IP health port (also scraped for /metrics), resources, rolling update one node at a time', (t) => {
  const ds = only('DaemonSet', 'crosslink-agent');
  const c = container(ds);
  const health = String(envOf(c).get('CROSSLINK_HEALTH_ADDR')?.['value']);
  t.is(health, '$(POD_IP):9471');
  t.is(at(envOf(c).get('POD_IP'), 'valueFrom', 'fieldRef', 'fieldPath'), 'status.podIP');
  for (const [probe, path] of [
    ['livenessProbe', '/healthz'],
    ['readinessProbe', '/readyz'],
  ] as const) {
    const get = o(at(c, probe, 'httpGet'));
    t.is(get['path'], path, probe);
    t.is(get['host'], undefined, `${probe}: the kubelet probes the pod IP (hostNetwork: the node IP the agent listens on)`);
    t.is(get['port'], 9471, `${probe} targets the agent's --health-addr`);
  }
  const res = o(c['resources']);
  for (const k of ['requests', 'limits']) for (const r of ['cpu', 'memory']) t.truthy(at(res, k, r), `resources.${k}.${r}`);

  const strategy = o(at(ds, 'spec', 'updateStrategy'));
  t.is(strategy['type'], 'RollingUpdate');
  t.true([1, '10%'].includes(at(strategy, 'rollingUpdate', 'maxUnavailable') as number | string));
  t.is(at(strategy, 'rollingUpdate', 'maxSurge'), 0, 'two agents cannot share a node');
  t.is(envOf(c).get('CROSSLINK_CLEANUP')?.['value'], 'false', 'rolling updates keep the data plane (docs/kubernetes.md)');
});

test('DaemonSet: node name from the downward API, NATS creds Secret, coordinator public key ConfigMap', (t) => {
  const ds = only('DaemonSet', 'crosslink-agent');
  const spec = podSpec(ds);
  const c = container(ds);
  const env = envOf(c);
  t.deepEqual(at(env.get('NODE_NAME'), 'valueFrom', 'fieldRef', 'fieldPath'), 'spec.nodeName');
  t.is(env.get('CROSSLINK_KUBERNETES')?.['value'], 'true');
  t.deepEqual(c['args'], ['crosslink-agent']);
  t.is(c['command'], undefined, 'keeps the image entrypoint (tini)');
  t.deepEqual(at(env.get('CROSSLINK_COORDINATOR_KEY'), 'valueFrom', 'configMapKeyRef'), { name: 'crosslink-coordinator', key: 'public-key' });

  const credsVolume = a(spec['volumes']).map(o).find((v) => at(v, 'secret', 'secretName') === 'crosslink-nats-creds');
  t.truthy(credsVolume, 'Secret crosslink-nats-creds is mounted');
  const mount = a(c['volumeMounts']).map(o).find((m) => m['name'] === credsVolume?.['name']);
  t.is(mount?.['readOnly'], true);
  t.is(env.get('CROSSLINK_NATS_CREDS')?.['value'], `${String(mount?.['mountPath'])}/nats.creds`);
  for (const k of ['CROSSLINK_CLUSTER', 'CROSSLINK_LOCATION', 'CROSSLINK_TOPOLOGY', 'CROSSLINK_NATS_URL']) t.truthy(env.get(k)?.['value'], k);

  // The join credential: its own Secret, read-only, 0400 (the agent refuses a group/world-readable one).
  const joinVolume = a(spec['volumes']).map(o).find((v) => at(v, 'secret', 'secretName') === JOIN_CREDENTIAL_SECRET);
  t.truthy(joinVolume, `Secret ${JOIN_CREDENTIAL_SECRET} is mounted`);
  t.is(at(joinVolume, 'secret', 'defaultMode'), 0o400);
  const joinMount = a(c['volumeMounts']).map(o).find((m) => m['name'] === joinVolume?.['name']);
  t.is(joinMount?.['readOnly'], true);
  t.is(env.get('CROSSLINK_JOIN_CREDENTIAL_FILE')?.['value'], `${String(joinMount?.['mountPath'])}/${JOIN_CREDENTIAL_KEY}`);
});

async function credentialFile(dir: string, cluster: string): Promise<{ path: string; text: string }> {
  const text = formatJoinCredential(await generateJoinCredential(cluster));
  const path = join(dir, `join-${cluster}.json`);
  writeFileSync(path, text, { mode: 0o600 });
  return { path, text };
}

test('manifests --join-credential-file: the Secret the DaemonSet mounts, holding the file as is; --out writes it 0600', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xl-joincred-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { path, text } = await credentialFile(dir, 'aws-eu1');
  const files = renderManifests(parseManifestValues({ ...VALUES, joinCredentialFile: path }));
  const f = files.find((x) => x.name === 'join-credential.yaml');
  t.truthy(f);
  const secret = parseDocs('join-credential.yaml', f!.content)[0]!.obj;
  t.like(secret, { kind: 'Secret', metadata: { name: JOIN_CREDENTIAL_SECRET, namespace: 'crosslink-system' } });
  t.is(at(secret, 'stringData', JOIN_CREDENTIAL_KEY), text);
  const out = join(dir, 'out');
  runManifests({ ...VALUES, joinCredentialFile: path, out }, () => undefined);
  t.is(statSync(join(out, 'join-credential.yaml')).mode & 0o777, 0o600);
  // Without the flag, no Secret is rendered (you create it yourself).
  t.false(renderManifests(parseManifestValues(VALUES)).some((x) => x.name === 'join-credential.yaml'));
});

test('manifests --join-credential-file refused: another cluster\'s credential, not a credential, missing file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xl-joincred-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const other = await credentialFile(dir, 'gcp-us1');
  t.throws(() => parseManifestValues({ ...VALUES, joinCredentialFile: other.path }), { instanceOf: ValidationError, message: /^--join-credential-file: .* is the join credential of cluster "gcp-us1"; --cluster is "aws-eu1"/ });
  const junk = join(dir, 'junk.json');
  writeFileSync(junk, '{"kind":"something-else"}');
  t.throws(() => parseManifestValues({ ...VALUES, joinCredentialFile: junk }), { instanceOf: ValidationError, message: /must be a join credential file/ });
  t.throws(() => parseManifestValues({ ...VALUES, joinCredentialFile: join(dir, 'missing.json') }), { instanceOf: ValidationError, message: /cannot read/ });
});

// ---- NATS TLS client certificates ----

function renderedDaemonSet(files: readonly { name: string; content: string }[]): Obj {
  return parseDocs('daemonset.yaml', files.find((f) => f.name === 'daemonset.yaml')!.content)[0]!.obj;
}

test('manifests --nats-tls-secret: the DaemonSet mounts that Secret read-only and the agent config points at its files', (t) => {
  const plain = renderManifests(parseManifestValues(VALUES));
  const files = renderManifests(parseManifestValues({ ...VALUES, natsTlsSecret: 'nats-client-eu1' }));
  t.deepEqual(files.map((f) => f.name), plain.map((f) => f.name), 'no Secret rendered: it exists already');
  const ds = renderedDaemonSet(files);
  t.deepEqual(schemaErrors(ds), []);
  const c = container(ds);
  const volume = a(podSpec(ds)['volumes']).map(o).find((v) => at(v, 'secret', 'secretName') === 'nats-client-eu1');
  t.truthy(volume, 'the Secret is a volume');
  t.is(at(volume, 'secret', 'defaultMode'), 0o400);
  t.deepEqual(a(at(volume, 'secret', 'items')).map((i) => o(i)['key']), ['tls.crt', 'tls.key', 'ca.crt']);
  const mount = a(c['volumeMounts']).map(o).find((m) => m['name'] === volume?.['name']);
  t.like(mount, { mountPath: NATS_TLS_MOUNT, readOnly: true });
  const env = containerEnv(c, { NODE_NAME: 'n1', POD_IP: '10.0.0.5', CROSSLINK_COORDINATOR_KEY: 'YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=' });
  const config = parseAgentConfig((c['args'] as string[]).slice(1), { env: { ...env, KUBERNETES_SERVICE_HOST: '10.96.0.1' }, hostname: 'ignored' });
  t.deepEqual(config.nats.tls, { caFile: `${NATS_TLS_MOUNT}/ca.crt`, certFile: `${NATS_TLS_MOUNT}/tls.crt`, keyFile: `${NATS_TLS_MOUNT}/tls.key` });
  // Without the flag: no client certificate, and nothing else changed by the option.
  const plainDs = renderedDaemonSet(plain);
  t.is(envOf(container(plainDs)).get('CROSSLINK_NATS_TLS_CERT'), undefined);
  const stripped = structuredClone(ds);
  const sc = container(stripped);
  sc['env'] = a(sc['env']).filter((e) => !String(o(e)['name']).startsWith('CROSSLINK_NATS_TLS_'));
  sc['volumeMounts'] = a(sc['volumeMounts']).filter((m) => o(m)['name'] !== volume?.['name']);
  podSpec(stripped)['volumes'] = a(podSpec(stripped)['volumes']).filter((v) => o(v)['name'] !== volume?.['name']);
  t.deepEqual(stripped, plainDs);
});

test('manifests --nats-tls-cert-file/-key-file/-ca-file: renders the Secret the DaemonSet mounts (0600); mismatched or unusable files refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xl-natstls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await makeCa(dir);
  await makeCert(dir, 'client', 'client');
  await makeCert(dir, 'other', 'client');
  await makeCert(dir, 'server', 'server');
  const p = (f: string): string => join(dir, f);
  const tlsFiles = { natsTlsCertFile: p('client.pem'), natsTlsKeyFile: p('client.key'), natsTlsCaFile: p('ca.pem') };
  const files = renderManifests(parseManifestValues({ ...VALUES, ...tlsFiles }));
  const f = files.find((x) => x.name === 'nats-client-tls.yaml');
  t.truthy(f);
  t.true(f?.secret);
  const secret = parseDocs('nats-client-tls.yaml', f!.content)[0]!.obj;
  t.deepEqual(schemaErrors(secret), []);
  t.like(secret, { kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: DEFAULT_NATS_TLS_SECRET, namespace: 'crosslink-system' } });
  t.deepEqual(at(secret, 'stringData'), { 'tls.crt': readFileSync(p('client.pem'), 'utf8'), 'tls.key': readFileSync(p('client.key'), 'utf8'), 'ca.crt': readFileSync(p('ca.pem'), 'utf8') });
  t.is(at(a(podSpec(renderedDaemonSet(files))['volumes']).map(o).find((v) => v['name'] === 'nats-client-tls'), 'secret', 'secretName'), DEFAULT_NATS_TLS_SECRET);
  // Named by --nats-tls-secret; without a CA file no ca.crt and no CROSSLINK_NATS_TLS_CA.
  const named = renderManifests(parseManifestValues({ ...VALUES, natsTlsSecret: 'eu1-nats', natsTlsCertFile: p('client.pem'), natsTlsKeyFile: p('client.key') }));
  t.is(at(parseDocs('s', named.find((x) => x.name === 'nats-client-tls.yaml')!.content)[0]!.obj, 'metadata', 'name'), 'eu1-nats');
  t.is(envOf(container(renderedDaemonSet(named))).get('CROSSLINK_NATS_TLS_CA'), undefined);
  const out = join(dir, 'out');
  runManifests({ ...VALUES, ...tlsFiles, out }, () => undefined);
  t.is(statSync(join(out, 'nats-client-tls.yaml')).mode & 0o777, 0o600);

  const refused: [string, Record<string, string>, RegExp][] = [
    ['key of another certificate', { ...tlsFiles, natsTlsKeyFile: p('other.key') }, /^--nats-tls-key-file: .*other\.key" is not valid; is not the private key of/],
    ['certificate without key', { natsTlsCertFile: p('client.pem') }, /^--nats-tls-key-file: \(missing\) is not valid; required with --nats-tls-cert-file/],
    ['CA without a certificate', { natsTlsCaFile: p('ca.pem') }, /^--nats-tls-ca-file: .* is not valid; only with --nats-tls-cert-file/],
    ['a server certificate', { natsTlsCertFile: p('server.pem'), natsTlsKeyFile: p('server.key') }, /^--nats-tls-cert-file: .* not valid for TLS client authentication/],
    ['a key as certificate', { natsTlsCertFile: p('client.key'), natsTlsKeyFile: p('client.key') }, /^--nats-tls-cert-file: .* must be a PEM certificate/],
    ['missing file', { ...tlsFiles, natsTlsCaFile: p('missing.pem') }, /^--nats-tls-ca-file: .* cannot read/],
    ['Secret name', { natsTlsSecret: 'Not_A_Name' }, /^--nats-tls-secret: "Not_A_Name" is not valid; must be a Secret name/],
  ];
  for (const [what, input, message] of refused) t.throws(() => parseManifestValues({ ...VALUES, ...input }), { instanceOf: ValidationError, message }, what);
});

test('nats-tls.cert-manager.yaml: one CA issues the server, coordinator and agent certificates into the Secrets the manifests mount', (t) => {
  const docs = parseDocs(join(DEPLOY_DIR, 'control-plane', 'nats-tls.cert-manager.yaml')).map((d) => d.obj);
  const certs = docs.filter((d) => d['kind'] === 'Certificate');
  const issuers = new Map(docs.filter((d) => d['kind'] === 'Issuer').map((d) => [String(at(d, 'metadata', 'name')), d]));
  for (const d of docs) {
    t.is(d['apiVersion'], 'cert-manager.io/v1');
    t.is(at(d, 'metadata', 'namespace'), 'crosslink-system');
  }
  const bySecret = new Map(certs.map((c) => [String(at(c, 'spec', 'secretName')), c]));
  // Every certificate's issuer exists; the leaf certificates come from the CA issuer, whose key is the CA certificate's.
  for (const c of certs) t.true(issuers.has(String(at(c, 'spec', 'issuerRef', 'name'))), `${String(at(c, 'metadata', 'name'))}: issuer exists`);
  const caIssuer = [...issuers.values()].find((i) => at(i, 'spec', 'ca') !== undefined);
  t.is(at(bySecret.get(String(at(caIssuer, 'spec', 'ca', 'secretName'))), 'spec', 'isCA'), true);
  // The Secrets the shipped manifests mount.
  const natsSecret = a(podSpec(only('StatefulSet', 'crosslink-nats'))['volumes']).map(o).find((v) => v['name'] === 'tls');
  const coordSecret = a(podSpec(only('Deployment', 'crosslink-coordinator'))['volumes']).map(o).find((v) => v['name'] === 'nats-client-tls');
  const server = bySecret.get(String(at(natsSecret, 'secret', 'secretName')));
  const coordinator = bySecret.get(String(at(coordSecret, 'secret', 'secretName')));
  t.deepEqual(at(server, 'spec', 'usages'), ['server auth']);
  t.true(a(at(server, 'spec', 'dnsNames')).includes('crosslink-nats.crosslink-system.svc'), 'the name the coordinator dials');
  t.deepEqual(at(coordinator, 'spec', 'usages'), ['client auth']);
  const agents = certs.filter((c) => String(at(c, 'spec', 'secretName')).startsWith('crosslink-agent-'));
  t.true(agents.length >= 1);
  for (const c of [server, coordinator, ...agents]) t.is(at(c, 'spec', 'issuerRef', 'name'), at(caIssuer, 'metadata', 'name'));
  for (const c of agents) t.deepEqual(at(c, 'spec', 'usages'), ['client auth']);
  // The coordinator dials the name the server certificate carries.
  const url = String(envOf(container(only('Deployment', 'crosslink-coordinator'))).get('CROSSLINK_NATS_URL')?.['value']);
  t.true(a(at(server, 'spec', 'dnsNames')).includes(new URL(url).hostname), url);
});

test('RBAC: the agent may get/list/watch/patch nodes, patch nodes/status, create/update Events, read what services export and keep ServiceImports — nothing else', (t) => {
  const role = only('ClusterRole', 'crosslink-agent');
  t.deepEqual(role['rules'], [
    { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch', 'patch'] },
    { apiGroups: [''], resources: ['nodes/status'], verbs: ['patch'] },
    { apiGroups: [''], resources: ['events'], verbs: ['create', 'update'] },
    { apiGroups: [''], resources: ['services'], verbs: ['get', 'list', 'watch'] },
    { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
    { apiGroups: ['multicluster.x-k8s.io'], resources: ['serviceexports'], verbs: ['get', 'list', 'watch'] },
    { apiGroups: ['multicluster.x-k8s.io'], resources: ['serviceexports/status'], verbs: ['update'] },
    { apiGroups: ['multicluster.x-k8s.io'], resources: ['serviceimports'], verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'] },
    { apiGroups: ['multicluster.x-k8s.io'], resources: ['serviceimports/status'], verbs: ['update'] },
  ]);
  const binding = only('ClusterRoleBinding', 'crosslink-agent');
  t.deepEqual(binding['roleRef'], { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'crosslink-agent' });
  t.deepEqual(binding['subjects'], [{ kind: 'ServiceAccount', name: 'crosslink-agent', namespace: 'crosslink-system' }]);
  t.is(podSpec(only('DaemonSet', 'crosslink-agent'))['serviceAccountName'], 'crosslink-agent');
  only('ServiceAccount', 'crosslink-agent');
  t.deepEqual(
    DOCS.filter((d) => ['Role', 'ClusterRole', 'RoleBinding', 'ClusterRoleBinding'].includes(String(d.obj['kind']))).map((d) => `${String(d.obj['kind'])}/${String(at(d.obj, 'metadata', 'name'))}`),
    ['ClusterRole/crosslink-agent', 'ClusterRoleBinding/crosslink-agent'],
    'no other RBAC anywhere in deploy/',
  );
});

test('CRDs: ServiceExport and ServiceImport as the agent reads and writes them (group, version, plural, status subresource)', (t) => {
  for (const [plural, kind] of [
    [SERVICE_EXPORTS, 'ServiceExport'],
    [SERVICE_IMPORTS, 'ServiceImport'],
  ] as const) {
    const crd = only('CustomResourceDefinition', `${plural}.${MCS_GROUP}`);
    t.like(crd['spec'], { group: MCS_GROUP, scope: 'Namespaced', names: { kind, plural } });
    const versions = a(at(crd, 'spec', 'versions')).map(o);
    t.deepEqual(versions.map((v) => [v['name'], v['served'], v['storage']]), [[MCS_VERSION, true, true]]);
    t.deepEqual(at(versions[0]!, 'subresources'), { status: {} }, `${kind}: conditions/clusters are written through /status`);
  }
  const si = only('CustomResourceDefinition', `${SERVICE_IMPORTS}.${MCS_GROUP}`);
  const spec = o(at(si, 'spec', 'versions', 0, 'schema', 'openAPIV3Schema', 'properties', 'spec'));
  t.deepEqual(at(spec, 'properties', 'type', 'enum'), ['ClusterSetIP', 'Headless']);
});

// ---- control plane ----

test('coordinator: ≥ 2 replicas with its own RBAC-free ServiceAccount, signing key Secret, bucket at R3', (t) => {
  const dep = only('Deployment', 'crosslink-coordinator');
  t.true((at(dep, 'spec', 'replicas') as number) >= 2);
  const spec = podSpec(dep);
  t.is(spec['serviceAccountName'], 'crosslink-coordinator');
  t.is(spec['automountServiceAccountToken'], false);
  t.is(only('ServiceAccount', 'crosslink-coordinator')['automountServiceAccountToken'], false);
  t.false(
    DOCS.some((d) => a(d.obj['subjects']).some((s) => o(s)['name'] === 'crosslink-coordinator')),
    'no binding grants the coordinator anything',
  );
  const c = container(dep);
  t.deepEqual(c['args'], ['crosslink-coordinator', 'run']);
  t.is(c['command'], undefined, 'keeps the image entrypoint (tini)');
  const env = envOf(c);
  t.is(env.get('CROSSLINK_REPLICAS')?.['value'], '3');
  // A stable lease holder id (defaultHolderId reads POD_NAME): a restarted container reclaims its lease at once.
  t.is(at(env.get('POD_NAME'), 'valueFrom', 'fieldRef', 'fieldPath'), 'metadata.name');
  // The shipped lease is the coordinator's default (3 s: a failover within 5 s; coordinator-config pins it).
  t.false(env.has('CROSSLINK_LEASE_TTL'), 'the manifests do not override the default lease');
  const keyVolume = a(spec['volumes']).map(o).find((v) => at(v, 'secret', 'secretName') === 'crosslink-coordinator-key');
  t.is(at(keyVolume, 'secret', 'defaultMode'), 0o400, 'the coordinator refuses group/world-readable keys');
  const keyMount = a(c['volumeMounts']).map(o).find((m) => m['name'] === keyVolume?.['name']);
  t.is(env.get('CROSSLINK_SIGNING_KEY_FILE')?.['value'], `${String(keyMount?.['mountPath'])}/coordinator.key`);
  t.regex(String(env.get('CROSSLINK_NATS_URL')?.['value']), /^tls:\/\/crosslink-nats\.crosslink-system\.svc:4222$/);
  t.deepEqual(at(dep, 'spec', 'strategy', 'rollingUpdate'), { maxSurge: 1, maxUnavailable: 0 });
});

const natsConfigText = (): string => String(at(only('ConfigMap', 'crosslink-nats-config'), 'data', 'nats.conf'));

test('NATS: 3-server StatefulSet with JetStream on a PVC, cluster routes to every pod via the headless Service', (t) => {
  const sts = only('StatefulSet', 'crosslink-nats');
  t.is(at(sts, 'spec', 'replicas'), 3);
  const headless = only('Service', String(at(sts, 'spec', 'serviceName')));
  t.is(at(headless, 'spec', 'clusterIP'), 'None');
  t.is(at(headless, 'spec', 'publishNotReadyAddresses'), true);
  const claim = o(at(sts, 'spec', 'volumeClaimTemplates', 0));
  t.truthy(at(claim, 'spec', 'resources', 'requests', 'storage'));
  const dataMount = a(container(sts)['volumeMounts']).map(o).find((m) => m['name'] === at(claim, 'metadata', 'name'));
  const conf = natsConfigText();
  const storeDir = /store_dir:\s*(\S+)/.exec(conf)?.[1] ?? '';
  t.true(storeDir.startsWith(`${String(dataMount?.['mountPath'])}/`), 'JetStream stores on the PVC');
  t.regex(conf, /jetstream\s*\{/);
  const routes = [...conf.matchAll(/nats:\/\/([a-z0-9.-]+):6222/g)].map((m) => m[1]);
  t.deepEqual(routes, [0, 1, 2].map((i) => `crosslink-nats-${i}.crosslink-nats-headless.crosslink-system.svc.cluster.local`));
  t.regex(conf, /server_name:\s*\$SERVER_NAME/);
  t.regex(conf, new RegExp(`^\\s*max_payload: ${NATS_MAX_PAYLOAD}$`, 'm'), 'max_payload as the largest message needs (protocol/nats-payload.ts), not the 1 MiB default');
  t.deepEqual(at(envOf(container(sts)).get('SERVER_NAME'), 'valueFrom', 'fieldRef', 'fieldPath'), 'metadata.name');
});

test('NATS: the shipped nats.conf is accepted by nats-server -t', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xl-natsconf-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const sub of ['config', 'auth', 'tls']) mkdirSync(join(dir, sub));
  // Same layout as the pod (/etc/nats/{config,auth,tls}); a throwaway self-signed cert and token auth.
  writeFileSync(join(dir, 'config', 'nats.conf'), natsConfigText().replaceAll('/etc/nats/tls', join(dir, 'tls')));
  writeFileSync(join(dir, 'auth', 'auth.conf'), 'authorization { token: "test-only" }\n');
  try {
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'tls', 'tls.key'), '-out', join(dir, 'tls', 'tls.crt'), '-days', '1', '-subj', '/CN=xl-test'], { timeout: 20_000 });
  } catch (err) {
    t.log(`skipped: openssl unavailable (${(err as Error).message})`);
    t.pass();
    return;
  }
  try {
    const { stderr, stdout } = await run('nats-server', ['-t', '-c', join(dir, 'config', 'nats.conf')], { timeout: 20_000, env: { ...process.env, SERVER_NAME: 'crosslink-nats-0' } });
    t.regex(stdout + stderr, /is valid/);
    // The client-certificate option, uncommented as docs/kubernetes.md says (ca.crt as cert-manager writes it).
    const verifying = natsConfigText().replaceAll('/etc/nats/tls', join(dir, 'tls')).replace(/# (ca_file: .*)\n(\s*)# (verify: true)/, '$1\n$2$3');
    t.regex(verifying, /^\s*verify: true$/m);
    writeFileSync(join(dir, 'config', 'nats.conf'), verifying);
    writeFileSync(join(dir, 'tls', 'ca.crt'), readFileSync(join(dir, 'tls', 'tls.crt')));
    const v = await run('nats-server', ['-t', '-c', join(dir, 'config', 'nats.conf')], { timeout: 20_000, env: { ...process.env, SERVER_NAME: 'crosslink-nats-0' } });
    t.regex(v.stdout + v.stderr, /is valid/);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      t.log('skipped: nats-server is not installed');
      t.pass();
      return;
    }
    t.fail(`nats-server rejected the config: ${e.stderr ?? e.message}`);
  }
});

// ---- rendering ----

const VALUES = { cluster: 'aws-eu1', location: 'aws-eu-west-1', natsUrl: 'tls://nats-a.example.com:4222, tls://nats-b.example.com:4222', topology: 'gateway' };

test('manifests render: cluster, location default, topology and NATS URLs substituted; everything else as in the templates', (t) => {
  const files = renderManifests(parseManifestValues(VALUES));
  t.deepEqual(
    files.map((f) => f.name),
    ['namespace.yaml', 'mcs-crds.yaml', 'rbac.yaml', 'daemonset.yaml'],
  );
  const rendered = files.flatMap((f) => parseDocs(join(DEPLOY_DIR, 'agent', f.name), f.content));
  const templates = DOCS.filter((d) => d.file.startsWith('agent/'));
  t.is(rendered.length, templates.length);
  const ds = rendered.find((d) => d.obj['kind'] === 'DaemonSet')!.obj;
  const env = envOf(container(ds));
  t.is(env.get('CROSSLINK_CLUSTER')?.['value'], 'aws-eu1');
  t.is(env.get('CROSSLINK_LOCATION')?.['value'], 'aws-eu-west-1');
  t.is(env.get('CROSSLINK_TOPOLOGY')?.['value'], 'gateway');
  t.is(env.get('CROSSLINK_NATS_URL')?.['value'], 'tls://nats-a.example.com:4222,tls://nats-b.example.com:4222');
  t.is(container(ds)['image'], `ghcr.io/crosslink/crosslink:${VERSION}`);
  // Put the template values back: the rest must be untouched.
  const template = templates.find((d) => d.obj['kind'] === 'DaemonSet')!.obj;
  const restored = structuredClone(ds);
  for (const e of a(container(restored)['env'])) {
    const tv = envOf(container(template)).get(String(o(e)['name']));
    if (tv && 'value' in tv) o(e)['value'] = tv['value'];
  }
  t.deepEqual(restored, template);
  for (const d of rendered) t.deepEqual(schemaErrors(d.obj), []);
  t.true(files.every((f) => f.content.startsWith('# Rendered by `crosslink manifests`')));
  t.true(files[3]!.content.includes('# rendered (--cluster)'), 'template comments survive rendering');
});

test('manifests render: --image and --coordinator-key', (t) => {
  const key = 'YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=';
  const files = renderManifests(parseManifestValues({ ...VALUES, image: 'registry.example.com:5000/team/crosslink:0.1.0-rc1', coordinatorKey: key }));
  const ds = parseDocs('daemonset.yaml', files.find((f) => f.name === 'daemonset.yaml')!.content)[0]!.obj;
  t.is(container(ds)['image'], 'registry.example.com:5000/team/crosslink:0.1.0-rc1');
  const cm = parse(files.find((f) => f.name === 'coordinator-key.yaml')!.content) as Obj;
  t.like(cm, { kind: 'ConfigMap', metadata: { name: 'crosslink-coordinator', namespace: 'crosslink-system' }, data: { 'public-key': key } });
  t.is(joinManifests(files).split(/^---$/m).length, 9, 'one stream: 8 template documents + the ConfigMap');
});

test('manifests render: --monitoring adds the agents\' PodMonitor and the alerts, nothing else changes', (t) => {
  const plain = renderManifests(parseManifestValues(VALUES));
  const files = renderManifests(parseManifestValues({ ...VALUES, monitoring: true }));
  t.deepEqual(files.slice(0, plain.length), plain);
  const extra = files.find((f) => f.name === 'monitoring.yaml');
  const docs = parseAllDocuments(extra?.content ?? '').map((d) => d.toJS() as Obj);
  t.deepEqual(docs.map((d) => `${String(d['kind'])}/${String(at(d, 'metadata', 'name'))}`), ['PodMonitor/crosslink-agent', 'PrometheusRule/crosslink']);
  t.is(at(docs[0], 'spec', 'podMetricsEndpoints', 0, 'port'), 'metrics');
  t.false(renderManifests(parseManifestValues(VALUES)).some((f) => f.name === 'monitoring.yaml'), 'off by default (needs the CRDs)');
});

const invalidValues: [string, Record<string, string>, RegExp][] = [
  ['missing --cluster', { location: 'l', natsUrl: 'nats://n:4222' }, /^--cluster: \(missing\) is not valid; required/],
  ['cluster not a DNS label', { ...VALUES, cluster: 'EU_1' }, /^--cluster: "EU_1" is not valid; must be a DNS label/],
  ['location with a space', { ...VALUES, location: 'eu west' }, /^--location: "eu west" is not valid/],
  ['NATS URL with a path', { ...VALUES, natsUrl: 'tls://nats.example.com:4222/x' }, /^--nats-url: .* is not valid; must be a NATS URL/],
  ['empty NATS URL list', { ...VALUES, natsUrl: ' , ' }, /^--nats-url: .* is not valid; needs at least one NATS URL/],
  ['topology', { ...VALUES, topology: 'star' }, /^--topology: "star" is not valid/],
  ['image with spaces', { ...VALUES, image: 'crosslink latest' }, /^--image: "crosslink latest" is not valid; must be an image reference/],
  ['coordinator key', { ...VALUES, coordinatorKey: 'abc' }, /^--coordinator-key: "abc" is not valid; must be a 32-byte key/],
];
for (const [title, input, message] of invalidValues) {
  test(`manifests values rejected: ${title}`, (t) => {
    const err = t.throws(() => parseManifestValues(input), { instanceOf: ValidationError });
    t.regex(err.message, message);
  });
}

test('`crosslink manifests … --out DIR` through commander writes one file per manifest', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xl-manifests-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const program = new Command('crosslink').exitOverride();
  registerManifestsCommand(program);
  await program.parseAsync(['manifests', '--cluster', 'gcp-us1', '--location', 'gcp-us-central1', '--nats-url', 'tls://nats.example.com:4222', '--out', dir], { from: 'user' });
  t.deepEqual(readdirSync(dir).sort(), ['daemonset.yaml', 'mcs-crds.yaml', 'namespace.yaml', 'rbac.yaml']);
  t.true(statSync(join(dir, 'daemonset.yaml')).size > 0);
  t.regex(readFileSync(join(dir, 'daemonset.yaml'), 'utf8'), /value: gcp-us1 # rendered \(--cluster\)/);
  let printed = '';
  runManifests({ cluster: 'gcp-us1', location: 'gcp-us-central1', natsUrl: 'tls://nats.example.com:4222' }, (s) => (printed += s));
  t.is(parseAllDocuments(printed).length, 8, 'without --out: one multi-document stream on stdout');
});

// ---- the programs accept what the manifests give them ----

/** Plain env values of a container, with valueFrom references filled in as Kubernetes would. */
function containerEnv(c: Obj, refs: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, e] of envOf(c)) {
    // As the kubelet does: $(VAR) expands to a variable defined earlier in the list.
    if (typeof e['value'] === 'string') out[name] = e['value'].replace(/\$\(([A-Z0-9_]+)\)/g, (m, v: string) => out[v] ?? m);
    else out[name] = refs[name] ?? `<unresolved ${name}>`;
  }
  return out;
}

test('the rendered DaemonSet env is a valid agent configuration (Kubernetes mode)', (t) => {
  const files = renderManifests(parseManifestValues(VALUES));
  const ds = parseDocs('daemonset.yaml', files.find((f) => f.name === 'daemonset.yaml')!.content)[0]!.obj;
  const c = container(ds);
  const env = containerEnv(c, { NODE_NAME: 'ip-10-0-0-5.eu-west-1.compute.internal', POD_IP: '10.0.0.5', CROSSLINK_COORDINATOR_KEY: 'YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=' });
  const config = parseAgentConfig((c['args'] as string[]).slice(1), { env: { ...env, KUBERNETES_SERVICE_HOST: '10.96.0.1' }, hostname: 'ignored' });
  t.like(config, {
    mode: 'kubernetes',
    nodeName: 'ip-10-0-0-5.eu-west-1.compute.internal',
    cluster: 'aws-eu1',
    location: 'aws-eu-west-1',
    topology: 'gateway',
    natsServers: ['tls://nats-a.example.com:4222', 'tls://nats-b.example.com:4222'],
    natsCredsFile: '/etc/crosslink/nats/nats.creds',
    joinCredentialFile: `/etc/crosslink/join/${JOIN_CREDENTIAL_KEY}`,
    stateDir: '/var/lib/crosslink',
    listenPort: 51820,
    healthAddr: { host: '10.0.0.5', port: 9471 },
    cleanup: false,
  });
  const wgPort = a(c['ports']).map(o).find((p) => p['name'] === 'wireguard');
  t.is(wgPort?.['containerPort'], config.listenPort);
});

test('the coordinator Deployment env is a valid coordinator configuration', (t) => {
  const c = container(only('Deployment', 'crosslink-coordinator'));
  const env = containerEnv(c, {});
  const raw: Partial<RawRunOptions> = {};
  for (const f of RUN_FLAGS) {
    const v = env[f.env];
    if (v !== undefined) raw[f.key] = v;
  }
  const config = parseCoordinatorConfig(raw);
  t.like(config, { replicas: 3, natsCreds: '/etc/crosslink/nats/nats.creds', signingKeyFile: '/etc/crosslink/signing/coordinator.key' });
  // Its NATS TLS client certificate and the servers' CA, from the mounted crosslink-coordinator-nats-tls Secret.
  const spec = podSpec(only('Deployment', 'crosslink-coordinator'));
  const volume = a(spec['volumes']).map(o).find((v) => at(v, 'secret', 'secretName') === 'crosslink-coordinator-nats-tls');
  const mount = a(c['volumeMounts']).map(o).find((m) => m['name'] === volume?.['name']);
  t.is(mount?.['readOnly'], true);
  const dir = String(mount?.['mountPath']);
  t.deepEqual(config.nats.tls, { caFile: `${dir}/ca.crt`, certFile: `${dir}/tls.crt`, keyFile: `${dir}/tls.key` });
  t.deepEqual(a(at(volume, 'secret', 'items')).map((i) => o(i)['path']).sort(), ['ca.crt', 'tls.crt', 'tls.key']);
  t.is(config.overlayCidr.text, '100.96.0.0/16');
});

// ---- kubectl ----

test('kubectl apply --dry-run=client accepts every rendered file and the control-plane files', async (t) => {
  try {
    await run('kubectl', ['version', '--client'], { timeout: 20_000 });
  } catch (err) {
    t.log(`skipped: kubectl unavailable (${(err as Error).message.split('\n')[0] ?? ''})`);
    t.pass();
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'xl-kubectl-'));
  const server = await FakeApiServer.start();
  t.teardown(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, server.kubeConfig().exportConfig());
  runManifests({ ...VALUES, coordinatorKey: 'YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=', natsTlsSecret: 'nats-client-eu1', out: join(dir, 'rendered') }, () => undefined);
  const files = [...yamlFiles(join(dir, 'rendered')), ...FILES.filter((f) => f.includes('/control-plane/'))];
  for (const file of files) {
    // --validate=false: schema validation needs the server's OpenAPI document; the model check above covers it.
    const { stdout } = await run('kubectl', ['apply', '--dry-run=client', '--validate=false', '-o', 'name', '--kubeconfig', kubeconfig, '--cache-dir', join(dir, 'cache'), '-f', file], {
      timeout: 60_000,
    });
    const expected = parseDocs(file).length;
    t.is(stdout.trim().split('\n').length, expected, `${relative(dir, file)}: every document mapped by kubectl`);
  }
  t.true(existsSync(join(dir, 'cache')));
});
