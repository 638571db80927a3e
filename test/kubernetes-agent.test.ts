// End-to-end: the agent in Kubernetes mode (issue 4). The Kubernetes API here is the in-test API
// server (test/helpers/fake-apiserver.ts) — the one stand-in we accept, as no API server package
// exists for this machine. Everything else is real: a real nats-server with JetStream, the real
// Coordinator, the real Agent with the real Kubernetes node source built from agent flags exactly
// as `crosslink-agent --kubernetes` builds it, the real @kubernetes/client-node, and the real
// kubectl for the edits an operator makes. Only the data plane is the FakeDataplane (desired states
// are recorded, nothing touches the OS), so no network namespaces are needed. HTTP and NATS on
// 127.0.0.1 only; every wait has a deadline; servers, agents and temp dirs are torn down per test.
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { defaultKubeConfig } from '../agent/kubernetes/kubeconfig.ts';
import { kubernetesNodeSourceFromConfig } from '../agent/kubernetes/from-agent-config.ts';
import type { KubernetesNodeSource } from '../agent/kubernetes/node-source.ts';
import type { NodeIdentity, NodeSource } from '../agent/plan/model.ts';
import type { Logger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';
import { FakeDataplane } from './agent-helpers.ts';
import { peerNodes, readNodeRecord, startFakeAgent, startMesh, type Mesh, type RunningAgent } from './helpers/agent-mesh.ts';
import { FakeApiServer, nodeObject, type JsonObject, type NodeFixture } from './helpers/fake-apiserver.ts';
import { tempDir as makeTempDir } from './helpers/temp-dir.ts';

// Every test builds its own NATS + coordinator + API server(s); serial keeps the process count low.
const WAIT = { timeoutMs: 15_000, intervalMs: 50 } as const;
const LISTEN_PORT = 51900;
const REPO = join(import.meta.dirname, '..');

// ---- fixtures ----

/** A cloud node as kubelet and the node controllers fill it in. */
function cloudNode(name: string, o: { region: string; zone: string; podCidr: string; external: string; internal: string }): NodeFixture {
  return {
    name,
    podCIDRs: [o.podCidr],
    addresses: [
      { type: 'InternalIP', address: o.internal },
      { type: 'ExternalIP', address: o.external },
      { type: 'Hostname', address: name },
    ],
    labels: { 'topology.kubernetes.io/region': o.region, 'topology.kubernetes.io/zone': o.zone },
  };
}

const tempDir = (t: ExecutionContext, what: string): Promise<string> => makeTempDir(t, `xl-k8s-${what}-`);

/** Log lines of the test's agents; printed when a wait times out, silent otherwise. */
class LogSink {
  readonly lines: string[] = [];
  logger(name: string): Logger {
    return pino({ name, level: 'info' }, { write: (line: string) => this.lines.push(line.trimEnd()) });
  }
}

async function until<T>(t: ExecutionContext, logs: LogSink, what: string, probe: () => Promise<T | undefined | false> | T | undefined | false): Promise<T> {
  try {
    return await waitFor(probe, { ...WAIT, what });
  } catch (err) {
    for (const line of logs.lines.slice(-40)) t.log(line);
    throw err;
  }
}

// ---- control plane: real nats-server + real coordinator ----

const startK8sMesh = (t: ExecutionContext): Promise<Mesh> => startMesh(t, { label: 'xl-k8s-agent', nodeTtl: '10s' });

// ---- the Kubernetes side: in-test API server, a kubeconfig file for it, real kubectl ----

interface Cluster {
  readonly server: FakeApiServer;
  /** A kubeconfig file for the API server (what a developer points KUBECONFIG at). */
  readonly kubeconfigPath: string;
  kubectl(...args: string[]): Promise<void>;
  node(name: string): JsonObject;
}

async function startCluster(t: ExecutionContext, nodes: readonly NodeFixture[]): Promise<Cluster> {
  const server = await FakeApiServer.start();
  t.teardown(() => server.stop());
  for (const n of nodes) server.createNode(nodeObject(n));
  const dir = await tempDir(t, 'kube');
  const kubeconfigPath = join(dir, 'kubeconfig');
  await writeFile(
    kubeconfigPath,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters: [{name: fake, cluster: {server: "' + server.url + '", insecure-skip-tls-verify: true}}]',
      'users: [{name: fake, user: {token: ignored-by-the-fake-server}}]',
      'contexts: [{name: fake, context: {cluster: fake, user: fake}}]',
      'current-context: fake',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  return {
    server,
    kubeconfigPath,
    async kubectl(...args: string[]) {
      // HOME and the cache dir in the temp dir: kubectl writes its discovery cache there.
      const r = await execa('kubectl', ['--kubeconfig', kubeconfigPath, '--cache-dir', join(dir, 'cache'), ...args], {
        reject: false,
        timeout: 20_000,
        env: { HOME: dir },
      });
      if (r.exitCode !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${String(r.exitCode)}: ${r.stderr}`);
    },
    node(name: string) {
      const n = server.getNode(name);
      if (!n) throw new Error(`no node ${name} in the API server`);
      return n;
    },
  };
}

function annotationsOf(node: JsonObject): Record<string, unknown> {
  return ((node['metadata'] as JsonObject)['annotations'] as JsonObject | undefined) ?? {};
}

function conditionsOf(node: JsonObject): JsonObject[] {
  return ((node['status'] as JsonObject)['conditions'] as JsonObject[] | undefined) ?? [];
}

function crosslinkCondition(node: JsonObject): JsonObject | undefined {
  return conditionsOf(node).find((c) => c['type'] === 'CrosslinkReady');
}

// ---- agents ----

function kubernetesArgs(mesh: Mesh, o: { name: string; cluster: string; stateDir: string; extra?: readonly string[] }): string[] {
  return [
    '--kubernetes',
    '--nats-url', mesh.server.url,
    '--node-name', o.name,
    '--cluster', o.cluster,
    '--coordinator-key', mesh.coordinatorKey.publicKey,
    '--state-dir', o.stateDir,
    '--listen-port', String(LISTEN_PORT),
    '--mtu', '1420',
    '--resync-interval', '1s',
    // Kubernetes mode listens on 127.0.0.1:9471 by default: shared by everyone on this machine.
    '--health-addr', 'off',
    ...(o.extra ?? []),
  ];
}

/** Starts the real Agent with the real Kubernetes node source, wired as agent/main.ts wires it. */
async function startAgent(
  t: ExecutionContext,
  mesh: Mesh,
  cluster: Cluster,
  logs: LogSink,
  o: {
    name: string;
    cluster: string;
    extra?: readonly string[];
    wrapSource?: (s: KubernetesNodeSource) => NodeSource;
    createDataplane?: () => Promise<FakeDataplane>;
    signal?: AbortSignal;
  },
): Promise<RunningAgent> {
  return startFakeAgent(t, {
    name: o.name,
    args: kubernetesArgs(mesh, { ...o, stateDir: await tempDir(t, `state-${o.name}`) }),
    coordinatorKey: mesh.coordinatorKey.publicKey,
    // The Nodes' pod CIDRs are 10.244-10.247.x.0/24.
    join: { mesh, podCidrs: ['10.244.0.0/14'] },
    logger: logs.logger(o.name),
    nodeSource: ({ config, logger }) => {
      const source = kubernetesNodeSourceFromConfig(config, {
        logger: logger.child({ component: 'node-source' }),
        // The development path: KUBECONFIG names a kubeconfig file for the API server.
        kubeConfig: defaultKubeConfig({ KUBECONFIG: cluster.kubeconfigPath }),
        backoff: { initialMs: 100, maxMs: 500 },
        requestTimeoutMs: 5000,
      });
      return o.wrapSource ? o.wrapSource(source) : source;
    },
    requestTimeoutMs: 2000,
    ...(o.createDataplane ? { createDataplane: o.createDataplane } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
  });
}

// ---- the tests ----

test.serial('Node → signed record; state written back on the Node; annotation edits re-register, invalid ones are ignored and reported', async (t) => {
  const logs = new LogSink();
  const mesh = await startK8sMesh(t);
  const node = cloudNode('xl-k8s-a', { region: 'eu-west-1', zone: 'eu-west-1b', podCidr: '10.244.7.0/24', external: '198.51.100.7', internal: '10.0.0.7' });
  const cluster = await startCluster(t, [node]);
  const a = await startAgent(t, mesh, cluster, logs, { name: 'xl-k8s-a', cluster: 'eu1' });

  // 1. Node → registration fields, as the coordinator signed them into the KV.
  const record = await until(t, logs, 'the signed record in the KV', () => readNodeRecord(mesh, 'xl-k8s-a'));
  t.like(record, {
    name: 'xl-k8s-a',
    cluster: 'eu1',
    location: 'eu-west-1',
    zone: 'eu-west-1b',
    publicKey: a.agent.publicKey,
    podCidrs: ['10.244.7.0/24'],
    endpoints: [`198.51.100.7:${LISTEN_PORT}`],
    privateAddresses: ['10.0.0.7'],
    listenPort: LISTEN_PORT,
    gatewayEligible: true,
  });
  t.regex(record.overlayIp, /^100\.96\./);
  await until(t, logs, "the data plane to get the Node's endpoint for its relay binding", () =>
    a.dataplane.targets.at(-1)?.advertisedEndpoints.join() === `198.51.100.7:${LISTEN_PORT}`,
  );

  // 2. State written back: annotations and CrosslinkReady=True once registered and reconciled.
  const ready = await until(t, logs, 'CrosslinkReady=True on the Node', () => {
    const c = crosslinkCondition(cluster.node('xl-k8s-a'));
    return c?.['status'] === 'True' ? c : undefined;
  });
  t.is(ready['reason'], 'RegisteredAndReconciled');
  t.true(a.agent.readiness().ready);
  t.like(annotationsOf(cluster.node('xl-k8s-a')), { 'crosslink.dev/public-key': a.agent.publicKey, 'crosslink.dev/overlay-ip': record.overlayIp });
  t.deepEqual(
    conditionsOf(cluster.node('xl-k8s-a')).map((c) => c['type']),
    ['Ready', 'CrosslinkReady'],
    "kubelet's Ready condition is kept",
  );

  // 3a. An endpoint annotation (kubectl annotate) → re-registration with that endpoint.
  await cluster.kubectl('annotate', 'node', 'xl-k8s-a', 'crosslink.dev/endpoint=203.0.113.50:51820');
  const moved = await until(t, logs, 'the record to carry the annotated endpoint', async () => {
    const r = await readNodeRecord(mesh, 'xl-k8s-a');
    return r?.endpoints.join() === '203.0.113.50:51820' ? r : undefined;
  });
  t.true(moved.generation > record.generation, 'a new generation');
  t.is(moved.overlayIp, record.overlayIp, 'same overlay IP');
  t.is(moved.publicKey, record.publicKey);
  // The relay binds the address the NODE publishes (there are no --endpoint flags in Kubernetes mode):
  // the data plane gets our published endpoints with every apply, so it follows the edit too.
  await until(t, logs, 'the data plane to get the annotated endpoint for its relay binding', () =>
    a.dataplane.targets.at(-1)?.advertisedEndpoints.join() === '203.0.113.50:51820',
  );
  t.deepEqual(a.config.endpoints, [], 'the flags had no endpoint');

  // 3b. An invalid value: ignored (no re-registration), the agent keeps running, the condition says why.
  await cluster.kubectl('annotate', 'node', 'xl-k8s-a', 'crosslink.dev/gateway-eligible=maybe');
  const warned = await until(t, logs, 'the condition message to name the ignored annotation', () => {
    const c = crosslinkCondition(cluster.node('xl-k8s-a'));
    return typeof c?.['message'] === 'string' && c['message'].includes('crosslink.dev/gateway-eligible') ? c : undefined;
  });
  t.is(warned['status'], 'True', 'still ready');
  t.regex(warned['message'] as string, /crosslink\.dev\/gateway-eligible: "maybe" is not valid; must be "true" or "false"; ignored/);
  t.true(logs.lines.some((l) => l.includes('"annotation":"crosslink.dev/gateway-eligible"') && l.includes('"value":"maybe"')), 'logged with the annotation and value');
  // A full reconcile after the edit: had the value been taken, the registration would have changed by now.
  await a.agent.reconcileNow('test');
  const after = await readNodeRecord(mesh, 'xl-k8s-a');
  t.is(after?.gatewayEligible, true, 'the field keeps its derived value');
  t.is(after?.generation, moved.generation, 'no re-registration for an ignored value');
  t.true(a.agent.readiness().ready);

  // Fixing it removes the warning from the condition again.
  await cluster.kubectl('annotate', 'node', 'xl-k8s-a', 'crosslink.dev/gateway-eligible-');
  await until(t, logs, 'the condition message without the warning', () => {
    const m = crosslinkCondition(cluster.node('xl-k8s-a'))?.['message'];
    return typeof m === 'string' && !m.includes('gateway-eligible');
  });
  t.pass();
});

test.serial('API server restart mid-watch: the agent resumes watching and the record follows a later edit', async (t) => {
  const logs = new LogSink();
  const mesh = await startK8sMesh(t);
  const node = cloudNode('xl-k8s-r', { region: 'eu-central-1', zone: 'eu-central-1a', podCidr: '10.244.8.0/24', external: '198.51.100.8', internal: '10.0.0.8' });
  const cluster = await startCluster(t, [node]);
  await startAgent(t, mesh, cluster, logs, { name: 'xl-k8s-r', cluster: 'eu2' });
  const first = await until(t, logs, 'registered', () => readNodeRecord(mesh, 'xl-k8s-r'));
  await until(t, logs, 'the watch to be open', () => cluster.server.watchCount === 1);
  const watchesBefore = cluster.server.requests.filter((r) => r.query['watch'] === 'true').length;

  await cluster.server.restart();
  await until(t, logs, 'the watch to be re-opened after the restart', () =>
    cluster.server.watchCount === 1 && cluster.server.requests.filter((r) => r.query['watch'] === 'true').length > watchesBefore,
  );

  await cluster.kubectl('annotate', 'node', 'xl-k8s-r', 'crosslink.dev/location=frankfurt');
  const moved = await until(t, logs, 'the record to follow the edit made after the restart', async () => {
    const r = await readNodeRecord(mesh, 'xl-k8s-r');
    return r?.location === 'frankfurt' ? r : undefined;
  });
  t.true(moved.generation > first.generation);
  t.is(moved.overlayIp, first.overlayIp);
  await until(t, logs, 'CrosslinkReady=True after the restart', () => crosslinkCondition(cluster.node('xl-k8s-r'))?.['status'] === 'True');
  t.pass();
});

test.serial('two clusters, each with its own API server: the Kubernetes-mode nodes peer; stop with cleanup withdraws, without cleanup says stopped', async (t) => {
  const logs = new LogSink();
  const mesh = await startK8sMesh(t);
  const eu = await startCluster(t, [cloudNode('xl-k8s-eu', { region: 'eu-west-1', zone: 'eu-west-1a', podCidr: '10.244.1.0/24', external: '198.51.100.21', internal: '10.0.0.21' })]);
  const us = await startCluster(t, [cloudNode('xl-k8s-us', { region: 'us-east-1', zone: 'us-east-1a', podCidr: '10.245.1.0/24', external: '203.0.113.22', internal: '10.1.0.22' })]);
  const a = await startAgent(t, mesh, eu, logs, { name: 'xl-k8s-eu', cluster: 'eu1' });
  const b = await startAgent(t, mesh, us, logs, { name: 'xl-k8s-us', cluster: 'us1', extra: ['--no-cleanup'] });

  await until(t, logs, 'each agent to have the other as its peer', () => peerNodes(a.dataplane.last()).join() === 'xl-k8s-us' && peerNodes(b.dataplane.last()).join() === 'xl-k8s-eu');
  const toUs = a.dataplane.last()?.peers[0];
  t.is(toUs?.publicKey, b.agent.publicKey);
  t.is(toUs?.endpoint, `203.0.113.22:${LISTEN_PORT}`, "the peer's ExternalIP and listen port");
  t.true(toUs?.allowedIps.includes('10.245.1.0/24'), "the peer's pod CIDR from its Node");
  const toEu = b.dataplane.last()?.peers[0];
  t.is(toEu?.publicKey, a.agent.publicKey);
  t.is(toEu?.endpoint, `198.51.100.21:${LISTEN_PORT}`);
  t.true(toEu?.allowedIps.includes('10.244.1.0/24'));
  await until(t, logs, 'both Nodes to show CrosslinkReady=True', () =>
    crosslinkCondition(eu.node('xl-k8s-eu'))?.['status'] === 'True' && crosslinkCondition(us.node('xl-k8s-us'))?.['status'] === 'True',
  );
  const euIp = annotationsOf(eu.node('xl-k8s-eu'))['crosslink.dev/overlay-ip'];
  const usIp = annotationsOf(us.node('xl-k8s-us'))['crosslink.dev/overlay-ip'];
  t.truthy(euIp);
  t.truthy(usIp);
  t.not(euIp, usIp);

  // Cleanup (uninstall): deregistered (the peer goes at once) and our annotations and condition are gone.
  await a.stop();
  t.true(a.dataplane.tornDown);
  const euNode = eu.node('xl-k8s-eu');
  t.false('crosslink.dev/public-key' in annotationsOf(euNode));
  t.false('crosslink.dev/overlay-ip' in annotationsOf(euNode));
  t.deepEqual(conditionsOf(euNode).map((c) => c['type']), ['Ready'], "only kubelet's condition is left");
  await until(t, logs, 'the other cluster to drop the deregistered node', () => peerNodes(b.dataplane.last()).length === 0);

  // No cleanup (rolling upgrade): annotations stay, the condition says the agent stopped.
  await b.stop();
  t.false(b.dataplane.tornDown);
  const usNode = us.node('xl-k8s-us');
  t.is(annotationsOf(usNode)['crosslink.dev/public-key'], b.agent.publicKey);
  t.like(crosslinkCondition(usNode), { status: 'False', reason: 'AgentStopped' });
});

test.serial('an identity change while the data plane is being created is not lost; a start still waiting for its Node is aborted by the signal', async (t) => {
  const logs = new LogSink();
  const mesh = await startK8sMesh(t);
  const cluster = await startCluster(t, [cloudNode('xl-k8s-w', { region: 'ap-south-1', zone: 'ap-south-1a', podCidr: '10.246.1.0/24', external: '198.51.100.30', internal: '10.2.0.30' })]);

  // The source reports every change to this spy from the start; the agent's own listener is separate.
  const seen: NodeIdentity[] = [];
  const wrap = (s: KubernetesNodeSource): NodeSource => {
    s.onChange((id) => seen.push(id));
    return s;
  };
  const dataplane = new FakeDataplane();
  // Slow data plane creation (wireguard-go takes seconds): the Node is edited meanwhile.
  const createDataplane = async (): Promise<FakeDataplane> => {
    await cluster.kubectl('annotate', 'node', 'xl-k8s-w', 'crosslink.dev/endpoint=203.0.113.77:4500');
    await until(t, logs, 'the source to see the edit', () => seen.some((id) => id.endpoints.join() === '203.0.113.77:4500'));
    return dataplane;
  };
  await startAgent(t, mesh, cluster, logs, { name: 'xl-k8s-w', cluster: 'ap1', wrapSource: wrap, createDataplane });
  const record = await until(t, logs, 'the record with the endpoint edited during start', async () => {
    const r = await readNodeRecord(mesh, 'xl-k8s-w');
    return r?.endpoints.join() === '203.0.113.77:4500' ? r : undefined;
  });
  t.is(record.location, 'ap-south-1');

  // A Node that does not exist: start() waits; the signal (SIGTERM in main.ts) ends the wait.
  const ac = new AbortController();
  let created = false;
  const starting = startAgent(t, mesh, cluster, logs, {
    name: 'xl-k8s-missing',
    cluster: 'ap1',
    signal: ac.signal,
    createDataplane: () => {
      created = true;
      return Promise.resolve(new FakeDataplane());
    },
  });
  await until(t, logs, 'the agent to look for its Node', () =>
    cluster.server.requests.some((r) => r.method === 'GET' && r.query['fieldSelector'] === 'metadata.name=xl-k8s-missing'),
  );
  ac.abort();
  await t.throwsAsync(starting, { message: /stopped before node xl-k8s-missing could be read/ });
  t.false(created, 'no data plane for an aborted start');
  await until(t, logs, 'its watch to be closed', () => cluster.server.watchCount === 1);
});

test.serial('crosslink-agent --kubernetes fails fast with a clear message on a missing --cluster or an unusable kubeconfig', async (t) => {
  const dir = await tempDir(t, 'bin');
  const noCluster = join(dir, 'no-cluster-kubeconfig');
  await writeFile(noCluster, 'apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n', { mode: 0o600 });
  const key = (await generateSigningKeyPair()).publicKey;
  // NATS is never contacted: each of these stops before the agent starts anything.
  const base = ['--kubernetes', '--nats-url', 'nats://127.0.0.1:1', '--node-name', 'xl-k8s-bin', '--coordinator-key', key, '--state-dir', join(dir, 'state'), '--mtu', '1420', '--health-addr', 'off'];
  // A clean environment: no KUBERNETES_SERVICE_HOST, HOME without ~/.kube/config.
  const run = (args: readonly string[], env: Record<string, string> = {}) =>
    execa(join(REPO, 'bin', 'crosslink-agent'), args, {
      reject: false,
      timeout: 60_000,
      extendEnv: false,
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir, ...env },
    });

  const cases: { title: string; args: readonly string[]; env?: Record<string, string>; exitCode: number; message: RegExp }[] = [
    { title: 'missing --cluster', args: base, exitCode: 2, message: /^crosslink-agent: --cluster: \(missing\) is not valid; required: a DNS label naming this cluster/ },
    {
      title: 'KUBECONFIG names a missing file',
      args: [...base, '--cluster', 'eu1'],
      env: { KUBECONFIG: join(dir, 'nope') },
      exitCode: 1,
      message: /cannot load the Kubernetes client configuration from KUBECONFIG=\S+nope: ENOENT/,
    },
    {
      title: 'KUBECONFIG without a cluster',
      args: [...base, '--cluster', 'eu1'],
      env: { KUBECONFIG: noCluster },
      exitCode: 1,
      message: /has no usable cluster: current-context is not set/,
    },
    {
      title: 'no kubeconfig at all outside a pod',
      args: [...base, '--cluster', 'eu1'],
      exitCode: 1,
      message: /no Kubernetes API server configured: not in a pod \(KUBERNETES_SERVICE_HOST is unset\), KUBECONFIG is unset and \S+\/\.kube\/config does not exist/,
    },
  ];
  // Two at a time: each is a Node process with the TypeScript loader.
  for (let i = 0; i < cases.length; i += 2) {
    const batch = cases.slice(i, i + 2);
    const results = await Promise.all(batch.map((c) => run(c.args, c.env)));
    batch.forEach((c, j) => {
      const r = results[j]!;
      t.is(r.exitCode, c.exitCode, `${c.title}: ${r.stderr}`);
      t.regex(r.stderr, c.message, c.title);
      t.notRegex(r.stderr, /\n\s+at /, `${c.title}: no stack trace`);
    });
  }
});
