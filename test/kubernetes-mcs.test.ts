// Multi-cluster services in Kubernetes mode (issue 12), end to end on the control plane: a real
// nats-server, the real Coordinator, real Agents (fake data plane) with the real
// @kubernetes/client-node talking to one in-test API server per cluster
// (test/helpers/fake-apiserver.ts, the one accepted stand-in). The services controller is built by
// mcsSyncFromConfig exactly as agent/main.ts builds it in --kubernetes mode.
//   ServiceExport + EndpointSlice (cluster east) → signed record in the KV → ServiceImport in
//   cluster west; readiness changes propagate (also through injected API failures); an export of
//   another cluster's pod IP is refused (Valid=False); a port conflict sets Conflict=True on the
//   younger export; deleting the ServiceExport / the Service unexports and removes the imports;
//   only the cluster's leader agent (lowest-named live node) writes.
import test, { type ExecutionContext } from 'ava';
import { pino } from 'pino';
import { mcsSyncFromConfig } from '../agent/kubernetes/mcs/from-agent-config.ts';
import { systemClock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { ServiceExportRecord, serviceKeys } from '../protocol/service.ts';
import { verifyEnvelope } from '../protocol/signing.ts';
import { startMesh, startStaticAgent, type Mesh, type RunningAgent } from './helpers/agent-mesh.ts';
import { FakeApiServer, type JsonObject } from './helpers/fake-apiserver.ts';
import { tempDir } from './helpers/temp-dir.ts';

const WAIT = { timeoutMs: 20_000, intervalMs: 50 } as const;

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
    for (const line of logs.lines.slice(-30)) t.log(line);
    throw err;
  }
}

// ---- Kubernetes objects as kubectl and the EndpointSlice controller would write them ----

const service = (ns: string, name: string, ports: { name: string; port: number; targetPort: number }[]): JsonObject => ({
  metadata: { namespace: ns, name },
  spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', ports: ports.map((p) => ({ ...p, protocol: 'TCP' })) },
});

const slice = (ns: string, svc: string, endpoints: [string, boolean][], port: { name: string; port: number }): JsonObject => ({
  metadata: { namespace: ns, name: `${svc}-abcde`, labels: { 'kubernetes.io/service-name': svc } },
  addressType: 'IPv4',
  endpoints: endpoints.map(([ip, ready]) => ({ addresses: [ip], conditions: { ready, serving: ready, terminating: false } })),
  ports: [{ ...port, protocol: 'TCP' }],
});

const serviceExport = (ns: string, name: string): JsonObject => ({ metadata: { namespace: ns, name } });

function condition(server: FakeApiServer, ns: string, name: string, type: string): JsonObject | undefined {
  const se = server.getObject('serviceexports', ns, name);
  const conditions = ((se?.['status'] as JsonObject | undefined)?.['conditions'] as JsonObject[] | undefined) ?? [];
  return conditions.find((c) => c['type'] === type);
}

async function exported(mesh: Mesh, ns: string, name: string, cluster: string): Promise<ServiceExportRecord | undefined> {
  const e = await mesh.kv.get(serviceKeys.export(ns, name, cluster));
  if (!e || e.operation !== 'PUT' || e.length === 0) return undefined;
  return verifyEnvelope(e.value, mesh.coordinatorKey.publicKey, ServiceExportRecord);
}

const importClusters = (server: FakeApiServer, ns: string, name: string): string | undefined => {
  const si = server.getObject('serviceimports', ns, name);
  if (!si) return undefined;
  const clusters = ((si['status'] as JsonObject | undefined)?.['clusters'] as JsonObject[] | undefined) ?? [];
  return clusters.map((c) => c['cluster'] as string).join(',');
};

async function startClusterAgent(t: ExecutionContext, mesh: Mesh, logs: LogSink, server: FakeApiServer, o: { name: string; cluster: string; podCidr: string }): Promise<RunningAgent> {
  const logger = logs.logger(o.name);
  return startStaticAgent(t, mesh, {
    ...o,
    stateDir: await tempDir(t, `xl-mcs-${o.name}-`),
    logger,
    servicesSync: mcsSyncFromConfig({ cluster: o.cluster }, { logger: logger.child({ component: 'mcs' }), clock: systemClock, kubeConfig: server.kubeConfig(), resyncMs: 200, requestTimeoutMs: 5000 }),
  });
}

test.serial('ServiceExport + EndpointSlice → KV → ServiceImport in the other cluster; readiness, refusals, conflicts, deletion, leader only', async (t) => {
  const logs = new LogSink();
  const mesh = await startMesh(t, { label: 'xl-mcs', nodeTtl: '5s' });
  const east = await FakeApiServer.start();
  t.teardown(() => east.stop());
  const west = await FakeApiServer.start();
  t.teardown(() => west.stop());
  // east-n2's controller talks to a separate API server: any request there means a non-leader wrote.
  const eastFollowerView = await FakeApiServer.start();
  t.teardown(() => eastFollowerView.stop());
  const eastLeader = await startClusterAgent(t, mesh, logs, east, { name: 'east-n1', cluster: 'east', podCidr: '10.71.1.0/24' });
  await startClusterAgent(t, mesh, logs, eastFollowerView, { name: 'east-n2', cluster: 'east', podCidr: '10.71.2.0/24' });
  await startClusterAgent(t, mesh, logs, west, { name: 'west-n1', cluster: 'west', podCidr: '10.72.1.0/24' });

  // 1. Export from east: the ready endpoints, the endpoint (target) ports named like the Service's.
  east.putObject('services', service('shop', 'web', [{ name: 'http', port: 80, targetPort: 8080 }]));
  east.putObject('endpointslices', slice('shop', 'web', [['10.71.1.5', true], ['10.71.2.6', true], ['10.71.1.7', false]], { name: 'http', port: 8080 }));
  east.putObject('serviceexports', serviceExport('shop', 'web'));
  const rec = await until(t, logs, 'the export in the KV', () => exported(mesh, 'shop', 'web', 'east'));
  t.deepEqual(rec.addresses, ['10.71.1.5', '10.71.2.6']);
  t.deepEqual(rec.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
  t.is(rec.exportedBy, 'east-n1');

  // 2. The ServiceImport in west (and in east: every cluster of the set imports).
  await until(t, logs, 'ServiceImport in west', () => importClusters(west, 'shop', 'web') === 'east');
  const si = west.getObject('serviceimports', 'shop', 'web');
  t.like(si, { apiVersion: 'multicluster.x-k8s.io/v1alpha1', kind: 'ServiceImport', metadata: { labels: { 'app.kubernetes.io/managed-by': 'crosslink' } } });
  t.deepEqual(si?.['spec'], { type: 'Headless', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] });
  await until(t, logs, 'ServiceImport in east', () => importClusters(east, 'shop', 'web') === 'east');
  await until(t, logs, 'Valid=True on the ServiceExport', () => condition(east, 'shop', 'web', 'Valid')?.['status'] === 'True');
  t.like(condition(east, 'shop', 'web', 'Valid'), { reason: 'ServiceExported' });
  t.like(condition(east, 'shop', 'web', 'Conflict'), { status: 'False' });

  // 3. Readiness changes propagate, also when the API server fails requests meanwhile.
  east.failNextRequests(3, { match: (r) => r.path.includes('endpointslices') });
  east.putObject('endpointslices', slice('shop', 'web', [['10.71.1.5', false], ['10.71.2.6', true], ['10.71.1.7', true]], { name: 'http', port: 8080 }));
  await until(t, logs, 'the readiness change in the KV', async () => (await exported(mesh, 'shop', 'web', 'east'))?.addresses.join() === '10.71.1.7,10.71.2.6');
  t.true(east.requests.filter((r) => r.path.includes('endpointslices')).some((r) => r.status === 500), 'the injected failures were served');

  // 4. Adversary: an EndpointSlice of east naming west's pod IP is refused by the coordinator.
  east.putObject('services', service('shop', 'spoof', [{ name: 'http', port: 80, targetPort: 80 }]));
  east.putObject('endpointslices', slice('shop', 'spoof', [['10.72.1.9', true]], { name: 'http', port: 80 }));
  east.putObject('serviceexports', serviceExport('shop', 'spoof'));
  const refused = await until(t, logs, 'Valid=False on the spoofing export', () => {
    const c = condition(east, 'shop', 'spoof', 'Valid');
    return c?.['status'] === 'False' ? c : undefined;
  });
  t.is(refused['reason'], 'ExportRefused');
  t.regex(refused['message'] as string, /10\.72\.1\.9 is not inside a pod range of cluster "east"/);
  t.is(await exported(mesh, 'shop', 'spoof', 'east'), undefined);
  // A ServiceExport without its Service: invalid, nothing exported.
  east.putObject('serviceexports', serviceExport('shop', 'nosuch'));
  await until(t, logs, 'Valid=False ServiceNotFound', () => condition(east, 'shop', 'nosuch', 'Valid')?.['reason'] === 'ServiceNotFound');
  t.is(await exported(mesh, 'shop', 'nosuch', 'east'), undefined);

  // 5. west exports the same name with another port for "http": the younger export gets Conflict.
  west.putObject('services', service('shop', 'web', [{ name: 'http', port: 80, targetPort: 9090 }]));
  west.putObject('endpointslices', slice('shop', 'web', [['10.72.1.5', true]], { name: 'http', port: 9090 }));
  west.putObject('serviceexports', serviceExport('shop', 'web'));
  const conflict = await until(t, logs, 'Conflict=True on west', () => {
    const c = condition(west, 'shop', 'web', 'Conflict');
    return c?.['status'] === 'True' ? c : undefined;
  });
  t.regex(conflict['message'] as string, /older export defines it as 8080\/TCP/);
  await until(t, logs, 'both clusters in the imports', () => importClusters(west, 'shop', 'web') === 'east,west' && importClusters(east, 'shop', 'web') === 'east,west');
  t.like(condition(east, 'shop', 'web', 'Conflict'), { status: 'False' });

  // 6. Deleting west's Service unexports it; deleting east's ServiceExport removes the imports.
  west.deleteObject('services', 'shop', 'web');
  await until(t, logs, "west's export withdrawn", async () => (await exported(mesh, 'shop', 'web', 'west')) === undefined);
  await until(t, logs, 'imports back to east only', () => importClusters(west, 'shop', 'web') === 'east');
  east.deleteObject('serviceexports', 'shop', 'web');
  await until(t, logs, "east's export withdrawn", async () => (await exported(mesh, 'shop', 'web', 'east')) === undefined);
  await until(t, logs, 'ServiceImports deleted', () => west.getObject('serviceimports', 'shop', 'web') === undefined && east.getObject('serviceimports', 'shop', 'web') === undefined);

  // 7. Only the leader wrote; when it leaves, the next-lowest node of the cluster takes over.
  t.is(eastFollowerView.requests.length, 0, 'the non-leader agent made no Kubernetes request');
  await eastLeader.stop();
  eastFollowerView.putObject('services', service('shop', 'db', [{ name: '', port: 5432, targetPort: 5432 }]));
  eastFollowerView.putObject('endpointslices', slice('shop', 'db', [['10.71.2.8', true]], { name: '', port: 5432 }));
  eastFollowerView.putObject('serviceexports', serviceExport('shop', 'db'));
  const db = await until(t, logs, 'east-n2 exports after east-n1 left', () => exported(mesh, 'shop', 'db', 'east'));
  t.is(db.exportedBy, 'east-n2');
  // Its view has no ServiceExport for shop/web: the stale record would be withdrawn too (none left).
  t.is(await exported(mesh, 'shop', 'web', 'east'), undefined);
});
