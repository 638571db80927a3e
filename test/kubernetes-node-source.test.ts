// Kubernetes node source: the pure Node → identity mapping and publication diffs (tables), then the
// real @kubernetes/client-node against test/helpers/fake-apiserver.ts — the ONE stand-in for a
// Kubernetes API server we accept (no API server package exists for this machine). No network
// namespaces: HTTP on 127.0.0.1 only. Every wait has a deadline; every server and source is torn down.
import test from 'ava';
import { pino } from 'pino';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { ValidationError } from '../lib/errors.ts';
import type { NodeIdentity, PublishedState } from '../agent/plan/model.ts';
import { createKubernetesNodeSource, detectKubernetes, type KubernetesNodeSource } from '../agent/kubernetes/index.ts';
import { deriveIdentity, nodeFacts, sameIdentity, type IdentityDefaults } from '../agent/kubernetes/node-identity.ts';
import { annotationPatch, conditionPatch, conditionReason, rfc3339 } from '../agent/kubernetes/node-publication.ts';
import { FakeApiServer, nodeObject, type JsonObject, type NodeFixture } from './helpers/fake-apiserver.ts';

const KEY_A = 'YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=';
const KEY_B = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY=';
const defaults: IdentityDefaults = { topology: 'mesh', listenPort: 51820 };
const BACKOFF = { initialMs: 50, maxMs: 250 };

function derive(f: NodeFixture, d: IdentityDefaults = defaults) {
  return deriveIdentity(nodeFacts(nodeObject(f)), { cluster: 'eu1', defaults: d });
}

const cloudNode: NodeFixture = {
  name: 'node-a',
  podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'],
  addresses: [
    { type: 'InternalIP', address: '10.0.0.5' },
    { type: 'ExternalIP', address: '198.51.100.7' },
    { type: 'Hostname', address: 'node-a' },
  ],
  labels: { 'topology.kubernetes.io/region': 'eu-west-1', 'topology.kubernetes.io/zone': 'eu-west-1a' },
};

// ---- pure: Node → registration fields ----

const identityCases: { title: string; node: NodeFixture; defaults?: IdentityDefaults; want: Record<string, unknown> }[] = [
  {
    title: 'pod CIDRs, ExternalIP endpoint, InternalIP private address, region/zone labels',
    node: cloudNode,
    want: {
      name: 'node-a',
      cluster: 'eu1',
      location: 'eu-west-1',
      zone: 'eu-west-1a',
      endpoints: ['198.51.100.7:51820'],
      privateAddresses: ['10.0.0.5'],
      podCidrs: ['10.244.1.0/24', 'fd00:10:244:1::/64'],
      topology: 'mesh',
      gatewayEligible: true,
    },
  },
  {
    title: 'only the singular spec.podCIDR (older clusters)',
    node: { name: cloudNode.name, podCIDR: '10.244.9.0/24', addresses: cloudNode.addresses!, labels: cloudNode.labels! },
    want: { podCidrs: ['10.244.9.0/24'] },
  },
  {
    title: 'no ExternalIP: behind NAT, no endpoint, not gateway-eligible by default',
    node: { ...cloudNode, addresses: [{ type: 'InternalIP', address: '10.0.0.6' }] },
    want: { endpoints: [], privateAddresses: ['10.0.0.6'], gatewayEligible: false },
  },
  {
    title: 'IPv6 ExternalIP is bracketed',
    node: { ...cloudNode, addresses: [{ type: 'ExternalIP', address: '2001:db8:0::7' }] },
    want: { endpoints: ['[2001:db8::7]:51820'], privateAddresses: [] },
  },
  {
    title: 'no region label: default location from config, no zone',
    node: { ...cloudNode, labels: {} },
    defaults: { ...defaults, location: 'onprem-dc1' },
    want: { location: 'onprem-dc1', zone: undefined },
  },
  {
    title: 'region label wins over the configured default',
    node: cloudNode,
    defaults: { ...defaults, location: 'onprem-dc1', topology: 'gateway', listenPort: 4500 },
    want: { location: 'eu-west-1', topology: 'gateway', endpoints: ['198.51.100.7:4500'] },
  },
  {
    title: 'annotations override everything derived',
    node: {
      ...cloudNode,
      annotations: {
        'crosslink.dev/endpoint': '203.0.113.9:443, [2001:db8::9]:443',
        'crosslink.dev/location': 'frankfurt',
        'crosslink.dev/gateway-eligible': 'false',
        'crosslink.dev/persistent-keepalive': '25',
        'crosslink.dev/pod-cidrs': '10.50.0.0/16',
      },
    },
    want: {
      endpoints: ['203.0.113.9:443', '[2001:db8::9]:443'],
      location: 'frankfurt',
      gatewayEligible: false,
      persistentKeepalive: 25,
      podCidrs: ['10.50.0.0/16'],
    },
  },
  {
    title: 'endpoint "none" hides the ExternalIP (e.g. a firewall drops inbound UDP)',
    node: { ...cloudNode, annotations: { 'crosslink.dev/endpoint': 'none' } },
    want: { endpoints: [], gatewayEligible: false },
  },
  {
    title: 'gateway-eligible "true" on a NATed node',
    node: { ...cloudNode, addresses: [], annotations: { 'crosslink.dev/gateway-eligible': 'true' } },
    want: { endpoints: [], gatewayEligible: true },
  },
];

for (const c of identityCases) {
  test(`identity: ${c.title}`, (t) => {
    const r = derive(c.node, c.defaults);
    t.is(r.missing, null);
    t.deepEqual(r.ignored, []);
    const got = r.identity! as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(c.want)) t.deepEqual(got[k], v, k);
    t.true(Object.isFrozen(r.identity));
  });
}

const invalidCases: { annotation: string; value: string; allowedIncludes: string; field: keyof NodeIdentity; fallback: unknown }[] = [
  { annotation: 'crosslink.dev/endpoint', value: 'example.com:51820', allowedIncludes: 'IP literal', field: 'endpoints', fallback: ['198.51.100.7:51820'] },
  { annotation: 'crosslink.dev/endpoint', value: '203.0.113.9:70000', allowedIncludes: 'port 1-65535', field: 'endpoints', fallback: ['198.51.100.7:51820'] },
  { annotation: 'crosslink.dev/location', value: 'eu west', allowedIncludes: 'letters, digits', field: 'location', fallback: 'eu-west-1' },
  { annotation: 'crosslink.dev/gateway-eligible', value: 'yes', allowedIncludes: '"true" or "false"', field: 'gatewayEligible', fallback: true },
  { annotation: 'crosslink.dev/persistent-keepalive', value: '25s', allowedIncludes: '0 (off) to 3600', field: 'persistentKeepalive', fallback: undefined },
  { annotation: 'crosslink.dev/persistent-keepalive', value: '9000', allowedIncludes: '0 (off) to 3600', field: 'persistentKeepalive', fallback: undefined },
  { annotation: 'crosslink.dev/pod-cidrs', value: '10.50.0.1/16', allowedIncludes: 'host bits zero', field: 'podCidrs', fallback: ['10.244.1.0/24', 'fd00:10:244:1::/64'] },
  { annotation: 'crosslink.dev/topology', value: 'gateway', allowedIncludes: 'cluster-wide', field: 'topology', fallback: 'mesh' },
  { annotation: 'crosslink.dev/endpont', value: '203.0.113.9:51820', allowedIncludes: 'unknown annotation', field: 'endpoints', fallback: ['198.51.100.7:51820'] },
];

for (const c of invalidCases) {
  test(`invalid annotation ${c.annotation}=${JSON.stringify(c.value)} is ignored, named, and the node still registers`, (t) => {
    const r = derive({ ...cloudNode, annotations: { [c.annotation]: c.value } });
    t.truthy(r.identity, 'still registers from the rest');
    t.deepEqual(r.identity![c.field], c.fallback);
    t.is(r.ignored.length, 1);
    const ig = r.ignored[0]!;
    t.is(ig.field, c.annotation);
    t.is(ig.value, c.value);
    t.true(ig.allowed.includes(c.allowedIncludes), ig.allowed);
    t.true(ig.message.startsWith(`${c.annotation}: ${JSON.stringify(c.value)} is not valid;`), ig.message);
    t.true(ig.message.endsWith('; ignored'));
  });
}

test('identity: missing pod CIDRs or location → no identity, and says what is missing', (t) => {
  const noCidrs = derive({ ...cloudNode, podCIDRs: [] });
  t.is(noCidrs.identity, null);
  t.regex(noCidrs.missing ?? '', /pod CIDRs.*crosslink\.dev\/pod-cidrs/);
  const noLocation = derive({ ...cloudNode, labels: {} });
  t.is(noLocation.identity, null);
  t.regex(noLocation.missing ?? '', /location/);
});

test('sameIdentity is a deep comparison independent of key order', (t) => {
  const a = derive(cloudNode).identity!;
  const b = { ...a, endpoints: [...a.endpoints] };
  t.true(sameIdentity(a, b));
  t.false(sameIdentity(a, { ...a, endpoints: ['203.0.113.1:51820'] }));
  t.false(sameIdentity(a, null));
});

// ---- pure: publication diffs ----

const readyState: PublishedState = { publicKey: KEY_A, overlayIp: '100.96.0.5', ready: true, reason: 'Registered' };
const T0 = Date.parse('2025-06-01T12:00:00Z');

test('annotationPatch: only differing keys; null overlay IP deletes the annotation; equal → null', (t) => {
  t.deepEqual(annotationPatch({}, readyState), { 'crosslink.dev/public-key': KEY_A, 'crosslink.dev/overlay-ip': '100.96.0.5' });
  t.deepEqual(annotationPatch({ 'crosslink.dev/public-key': KEY_A, 'crosslink.dev/overlay-ip': '100.96.0.4' }, readyState), { 'crosslink.dev/overlay-ip': '100.96.0.5' });
  t.is(annotationPatch({ 'crosslink.dev/public-key': KEY_A, 'crosslink.dev/overlay-ip': '100.96.0.5' }, readyState), null);
  t.deepEqual(annotationPatch({ 'crosslink.dev/public-key': KEY_A, 'crosslink.dev/overlay-ip': '100.96.0.5' }, { ...readyState, overlayIp: null }), { 'crosslink.dev/overlay-ip': null });
  t.is(annotationPatch({ 'crosslink.dev/public-key': KEY_A }, { ...readyState, overlayIp: null }), null);
});

test('conditionPatch: new, unchanged+fresh, unchanged+stale heartbeat, status flip', (t) => {
  const base = { state: readyState, ignored: [], missing: null, now: T0, heartbeatRefreshMs: 300_000 };
  const fresh = conditionPatch(undefined, base)!;
  t.like(fresh, { type: 'CrosslinkReady', status: 'True', reason: 'Registered', message: 'Registered', lastHeartbeatTime: '2025-06-01T12:00:00Z', lastTransitionTime: '2025-06-01T12:00:00Z' });
  t.is(conditionPatch(fresh, { ...base, now: T0 + 60_000 }), null, 'same and fresh: no write');
  const refreshed = conditionPatch(fresh, { ...base, now: T0 + 301_000 })!;
  t.is(refreshed.lastHeartbeatTime, rfc3339(T0 + 301_000));
  t.is(refreshed.lastTransitionTime, '2025-06-01T12:00:00Z', 'transition time kept while status is unchanged');
  const flipped = conditionPatch(fresh, { ...base, now: T0 + 5000, state: { ...readyState, ready: false, reason: 'coordinator unreachable' } })!;
  t.like(flipped, { status: 'False', reason: 'CoordinatorUnreachable', message: 'coordinator unreachable', lastTransitionTime: rfc3339(T0 + 5000) });
  // typed client objects carry Dates, watch objects strings: both work
  t.is(conditionPatch({ ...fresh, lastHeartbeatTime: new Date(T0) }, { ...base, now: T0 + 1000 }), null);
});

const reasons: [string, boolean, string][] = [
  ['Registered', true, 'Registered'],
  ['waiting for coordinator', false, 'WaitingForCoordinator'],
  ['wg: set peer failed (2 errors)', false, 'WgSetPeerFailed2Errors'],
  ['', false, 'AgentNotReady'],
  ['42', true, 'AgentReady'],
];
for (const [text, ready, want] of reasons) {
  test(`conditionReason(${JSON.stringify(text)})`, (t) => t.is(conditionReason(text, ready), want));
}

test('detectKubernetes needs both KUBERNETES_SERVICE_HOST and the service account token', (t) => {
  t.true(detectKubernetes({ KUBERNETES_SERVICE_HOST: '10.96.0.1' }, () => true));
  t.false(detectKubernetes({ KUBERNETES_SERVICE_HOST: '10.96.0.1' }, () => false));
  t.false(detectKubernetes({}, () => true));
  t.false(detectKubernetes({ KUBERNETES_SERVICE_HOST: '' }, () => true));
});

test('invalid options are rejected up front with the field named', async (t) => {
  const server = await FakeApiServer.start();
  t.teardown(() => server.stop());
  const base = { kubeConfig: server.kubeConfig(), nodeName: 'node-a', cluster: 'eu1', defaults, logger: silentLogger() };
  const e1 = t.throws(() => createKubernetesNodeSource({ ...base, nodeName: '' }), { instanceOf: ValidationError });
  t.regex(e1.message, /NODE_NAME/);
  const e2 = t.throws(() => createKubernetesNodeSource({ ...base, cluster: 'EU_1' }), { instanceOf: ValidationError });
  t.regex(e2.message, /^cluster: "EU_1"/);
  t.throws(() => createKubernetesNodeSource({ ...base, defaults: { ...defaults, listenPort: 0 } }), { instanceOf: ValidationError });
});

// ---- real client against the in-test API server ----

interface Harness {
  server: FakeApiServer;
  source: KubernetesNodeSource;
  changes: NodeIdentity[];
  logs: string[];
}

async function harness(t: import('ava').ExecutionContext, fixture: NodeFixture | null = cloudNode, opts: { start?: boolean } = {}): Promise<Harness> {
  const server = await FakeApiServer.start();
  if (fixture) server.createNode(nodeObject(fixture));
  const logs: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => logs.push(line) });
  const source = createKubernetesNodeSource({
    kubeConfig: server.kubeConfig(),
    nodeName: fixture?.name ?? 'node-a',
    cluster: 'eu1',
    defaults,
    logger,
    backoff: BACKOFF,
    requestTimeoutMs: 5000,
  });
  const changes: NodeIdentity[] = [];
  source.onChange((id) => changes.push(id));
  t.teardown(async () => {
    await source.stop();
    await server.stop();
  });
  if (opts.start !== false) {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 15_000);
    try {
      await source.start(ac.signal);
    } finally {
      clearTimeout(timer);
    }
  }
  return { server, source, changes, logs };
}

function annotate(server: FakeApiServer, name: string, annotations: Record<string, string | null>): void {
  server.updateNode(name, (n) => {
    const md = n['metadata'] as JsonObject;
    const current = { ...((md['annotations'] as JsonObject | undefined) ?? {}) };
    for (const [k, v] of Object.entries(annotations)) {
      if (v === null) Reflect.deleteProperty(current, k);
      else current[k] = v;
    }
    md['annotations'] = current;
  });
}

function relabel(server: FakeApiServer, name: string, key: string, value: string): void {
  server.updateNode(name, (n) => {
    const md = n['metadata'] as JsonObject;
    md['labels'] = { ...((md['labels'] as JsonObject | undefined) ?? {}), [key]: value };
  });
}

function kubeletHeartbeat(server: FakeApiServer, name: string, at: string): void {
  server.updateNode(name, (n) => {
    const status = n['status'] as JsonObject;
    status['conditions'] = (status['conditions'] as JsonObject[]).map((c) => (c['type'] === 'Ready' ? { ...c, lastHeartbeatTime: at } : c));
  });
}

const waitOpts = (what: string) => ({ timeoutMs: 10_000, intervalMs: 25, what });

test('start() resolves from the Node; onChange fires once per real change, not for unused labels or heartbeats', async (t) => {
  const { server, changes, source } = await harness(t);
  relabel(server, 'node-a', 'team', 'payments');
  kubeletHeartbeat(server, 'node-a', '2025-06-01T12:00:10Z');
  annotate(server, 'node-a', { 'crosslink.dev/location': 'frankfurt' });
  await waitFor(() => changes.length >= 1, waitOpts('identity change'));
  t.is(changes.length, 1, 'irrelevant changes before the annotation did not fire');
  t.is(changes[0]!.location, 'frankfurt');
  // Our own publish writes annotations and the condition; that must not look like an identity change.
  await source.publish(readyState);
  annotate(server, 'node-a', { 'crosslink.dev/endpoint': '203.0.113.9:51820' });
  await waitFor(() => changes.length >= 2, waitOpts('second identity change'));
  t.is(changes.length, 2);
  t.deepEqual(changes[1]!.endpoints, ['203.0.113.9:51820']);
});

test('start() waits for a Node that does not exist yet, and for its pod CIDRs', async (t) => {
  const h = await harness(t, null, { start: false });
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  let resolved: NodeIdentity | undefined;
  const started = h.source.start(ac.signal).then((id) => (resolved = id));
  await waitFor(() => h.server.watchCount === 1, waitOpts('watch open'));
  h.server.createNode(nodeObject({ ...cloudNode, podCIDRs: [] }));
  await waitFor(() => h.logs.some((l) => l.includes('cannot register this node yet')), waitOpts('missing pod CIDRs warning'));
  t.is(resolved, undefined);
  h.server.updateNode('node-a', (n) => {
    n['spec'] = { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] };
  });
  const id = await started;
  t.deepEqual(id.podCidrs, ['10.244.1.0/24']);
  t.is(h.changes.length, 0, 'the first identity comes from start(), not onChange');
});

test('start() keeps trying while the API server fails, then resolves', async (t) => {
  const h = await harness(t, cloudNode, { start: false });
  h.server.failNextRequests(3, { status: 503 });
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 15_000);
  t.teardown(() => clearTimeout(timer));
  const id = await h.source.start(ac.signal);
  t.is(id.name, 'node-a');
  t.true(h.server.requests.filter((r) => r.status === 503).length === 3);
  t.true(h.logs.some((l) => l.includes('listing the Node failed; retrying')));
});

test('invalid annotations are logged once (annotation, value, allowed) and surfaced in the condition message', async (t) => {
  const h = await harness(t, { ...cloudNode, annotations: { 'crosslink.dev/location': 'eu west' } });
  const warnings = h.logs.filter((l) => l.includes('"annotation":"crosslink.dev/location"'));
  t.is(warnings.length, 1);
  t.regex(warnings[0]!, /"value":"eu west"/);
  t.regex(warnings[0]!, /"allowed":"must be 1-63 letters/);
  t.is(h.source.ignored().length, 1);
  await h.source.publish(readyState);
  const node = h.server.getNode('node-a')!;
  const cond = ((node['status'] as JsonObject)['conditions'] as JsonObject[]).find((c) => c['type'] === 'CrosslinkReady')!;
  t.regex(cond['message'] as string, /^Registered; crosslink\.dev\/location: "eu west" is not valid; .*; ignored$/);
  // Fixing the annotation re-publishes the condition without the warning.
  annotate(h.server, 'node-a', { 'crosslink.dev/location': 'eu-west' });
  await waitFor(() => {
    const n = h.server.getNode('node-a')!;
    const c = ((n['status'] as JsonObject)['conditions'] as JsonObject[]).find((x) => x['type'] === 'CrosslinkReady');
    return c?.['message'] === 'Registered';
  }, waitOpts('condition message without the warning'));
  t.pass();
});

test('publish() writes the annotations and the CrosslinkReady condition; unchanged state is not re-patched', async (t) => {
  const { server, source } = await harness(t);
  await source.publish(readyState);
  const node = server.getNode('node-a')!;
  const md = node['metadata'] as JsonObject;
  t.like(md['annotations'], { 'crosslink.dev/public-key': KEY_A, 'crosslink.dev/overlay-ip': '100.96.0.5' });
  const conditions = (node['status'] as JsonObject)['conditions'] as JsonObject[];
  t.deepEqual(
    conditions.map((c) => c['type']),
    ['Ready', 'CrosslinkReady'],
    "kubelet's Ready condition is kept (strategic merge by type)",
  );
  const cond = conditions[1]!;
  t.like(cond, { status: 'True', reason: 'Registered', message: 'Registered' });
  t.regex(cond['lastHeartbeatTime'] as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

  const patches = server.requests.filter((r) => r.method === 'PATCH');
  t.deepEqual(
    patches.map((r) => `${r.path} ${r.contentType}`),
    ['/api/v1/nodes/node-a application/merge-patch+json', '/api/v1/nodes/node-a/status application/strategic-merge-patch+json'],
  );
  t.truthy(((patches[1]!.body as JsonObject)['metadata'] as JsonObject)['resourceVersion'], 'status patch is conditional');

  await source.publish(readyState);
  t.is(server.requests.filter((r) => r.method === 'PATCH').length, 2, 'nothing changed: no patch');

  await source.publish({ publicKey: KEY_B, overlayIp: null, ready: false, reason: 'coordinator unreachable' });
  const after = server.getNode('node-a')!;
  const ann = (after['metadata'] as JsonObject)['annotations'] as JsonObject;
  t.is(ann['crosslink.dev/public-key'], KEY_B);
  t.false('crosslink.dev/overlay-ip' in ann);
  const c2 = ((after['status'] as JsonObject)['conditions'] as JsonObject[]).find((c) => c['type'] === 'CrosslinkReady')!;
  t.like(c2, { status: 'False', reason: 'CoordinatorUnreachable', message: 'coordinator unreachable' });
});

test('publish() retries a 409 Conflict by re-reading the Node', async (t) => {
  // Not started: no watch keeps the cached Node fresh, so a kubelet write in between makes it stale.
  const { server, source } = await harness(t, cloudNode, { start: false });
  await source.publish({ ...readyState, ready: false, reason: 'Starting' });
  kubeletHeartbeat(server, 'node-a', '2025-06-01T12:00:20Z');
  await source.publish(readyState);
  const statusPatches = server.requests.filter((r) => r.method === 'PATCH' && r.path.endsWith('/status')).map((r) => r.status);
  t.deepEqual(statusPatches, [200, 409, 200]);
  const cond = ((server.getNode('node-a')!['status'] as JsonObject)['conditions'] as JsonObject[]).find((c) => c['type'] === 'CrosslinkReady')!;
  t.is(cond['status'], 'True');
  const ready = ((server.getNode('node-a')!['status'] as JsonObject)['conditions'] as JsonObject[]).find((c) => c['type'] === 'Ready')!;
  t.is(ready['lastHeartbeatTime'], '2025-06-01T12:00:20Z', "kubelet's concurrent write survived");
});

test('publish() never throws; a failed publish is retried in the background', async (t) => {
  const { server, source } = await harness(t);
  server.failNextRequests(2, { status: 500, match: (r) => r.method === 'PATCH' });
  await t.notThrowsAsync(source.publish(readyState));
  await waitFor(() => {
    const ann = (server.getNode('node-a')!['metadata'] as JsonObject)['annotations'] as JsonObject;
    return ann['crosslink.dev/public-key'] === KEY_A;
  }, waitOpts('retried publish'));
  await waitFor(() => {
    const conds = (server.getNode('node-a')!['status'] as JsonObject)['conditions'] as JsonObject[];
    return conds.some((c) => c['type'] === 'CrosslinkReady');
  }, waitOpts('retried condition'));
  t.pass();
});

test('publish() restores annotations someone removed', async (t) => {
  const { server, source } = await harness(t);
  await source.publish(readyState);
  annotate(server, 'node-a', { 'crosslink.dev/public-key': null });
  await waitFor(() => {
    const ann = (server.getNode('node-a')!['metadata'] as JsonObject)['annotations'] as JsonObject;
    return ann['crosslink.dev/public-key'] === KEY_A;
  }, waitOpts('annotation restored'));
  t.pass();
});

test('withdraw() removes our annotations and condition, leaving kubelet’s', async (t) => {
  const { server, source } = await harness(t);
  await source.publish(readyState);
  await source.withdraw();
  const node = server.getNode('node-a')!;
  const ann = (node['metadata'] as JsonObject)['annotations'] as JsonObject;
  t.false('crosslink.dev/public-key' in ann);
  t.false('crosslink.dev/overlay-ip' in ann);
  t.deepEqual(((node['status'] as JsonObject)['conditions'] as JsonObject[]).map((c) => c['type']), ['Ready']);
});

test('API server restart mid-watch: the source reconnects and sees a change made meanwhile and after', async (t) => {
  const { server, changes } = await harness(t);
  await waitFor(() => server.watchCount === 1, waitOpts('watch open'));
  await server.stop();
  annotate(server, 'node-a', { 'crosslink.dev/location': 'while-down' });
  await server.restart();
  await waitFor(() => changes.length >= 1, waitOpts('change made while the API server was down'));
  t.is(changes[0]!.location, 'while-down');
  await waitFor(() => server.watchCount === 1, waitOpts('watch re-opened'));
  annotate(server, 'node-a', { 'crosslink.dev/location': 'after-restart' });
  await waitFor(() => changes.length >= 2, waitOpts('change after restart'));
  t.is(changes[1]!.location, 'after-restart');
  t.is(changes.length, 2);
});

test('410 Gone: a watch from a compacted resourceVersion re-lists and recovers the missed change', async (t) => {
  const { server, changes } = await harness(t);
  await waitFor(() => server.watchCount === 1, waitOpts('watch open'));
  const listsBefore = server.requests.filter((r) => r.method === 'GET' && r.path === '/api/v1/nodes' && r.query['watch'] === undefined).length;
  await server.stop();
  annotate(server, 'node-a', { 'crosslink.dev/endpoint': 'none' });
  server.compactHistory();
  await server.restart();
  await waitFor(() => changes.length >= 1, waitOpts('missed change recovered by re-list'));
  t.deepEqual(changes[0]!.endpoints, []);
  const lists = server.requests.filter((r) => r.method === 'GET' && r.path === '/api/v1/nodes' && r.query['watch'] === undefined).length;
  t.is(lists, listsBefore + 1, 're-listed once');
});

test('410 as an ERROR event on a re-opened watch also re-lists; closed watches resume from the last resourceVersion', async (t) => {
  const { server, changes } = await harness(t);
  await waitFor(() => server.watchCount === 1, waitOpts('watch open'));
  server.closeAllWatches();
  await waitFor(() => server.watchCount === 1, waitOpts('watch re-opened after a clean close'));
  const rewatch = server.requests.filter((r) => r.query['watch'] === 'true').at(-1)!;
  t.is(rewatch.query['resourceVersion'], server.resourceVersion, 'resumed from the last seen resourceVersion');
  server.expireNextWatch();
  server.closeAllWatches();
  await waitFor(() => server.watchCount === 1, waitOpts('watch re-opened after 410'));
  const lists = server.requests.filter((r) => r.method === 'GET' && r.path === '/api/v1/nodes' && r.query['watch'] === undefined);
  t.is(lists.length, 2, 'initial list + re-list after 410');
  annotate(server, 'node-a', { 'crosslink.dev/gateway-eligible': 'false' });
  await waitFor(() => changes.length >= 1, waitOpts('change after re-list'));
  t.false(changes[0]!.gatewayEligible);
  t.is(changes.length, 1);
});

test('an unchanged condition gets its lastHeartbeatTime refreshed periodically', async (t) => {
  const server = await FakeApiServer.start();
  server.createNode(nodeObject(cloudNode));
  const source = createKubernetesNodeSource({
    kubeConfig: server.kubeConfig(),
    nodeName: 'node-a',
    cluster: 'eu1',
    defaults,
    logger: silentLogger(),
    backoff: BACKOFF,
    heartbeatRefreshMs: 1000,
  });
  t.teardown(async () => {
    await source.stop();
    await server.stop();
  });
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  await source.start(ac.signal);
  await source.publish(readyState);
  const condition = (): JsonObject | undefined => ((server.getNode('node-a')!['status'] as JsonObject)['conditions'] as JsonObject[]).find((c) => c['type'] === 'CrosslinkReady');
  // One read of the condition as published (a refresh may already have run on a slow machine: its
  // transition time is the one to keep, whatever the heartbeat time says by then).
  const published = condition()!;
  await waitFor(() => condition()?.['lastHeartbeatTime'] !== published['lastHeartbeatTime'], waitOpts('refreshed heartbeat'));
  t.is(condition()!['lastTransitionTime'], published['lastTransitionTime'], 'transition time unchanged');
});
