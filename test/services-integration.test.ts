// Multi-cluster services end to end on the control plane: real nats-server, real Coordinator, real
// Agents (fake data plane) with their DNS servers on loopback, the real CLI and `dig`. An export
// through one agent's socket is admitted and signed by the coordinator, reaches the other cluster's
// agent through the KV and is answered by its DNS; forged addresses are refused; unexport and a
// node leaving take the endpoints out of the answers.
import test from 'ava';
import { execa } from 'execa';
import { ServicesDocument } from '../agent/services/api.ts';
import { runCli } from '../cli/main.ts';
import { freeLoopbackPort } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { NodeRecord } from '../protocol/messages.ts';
import { ServiceExportRecord, serviceKeys } from '../protocol/service.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { verifyEnvelope } from '../protocol/signing.ts';
import { agentRequest } from './helpers/agent-http.ts';
import { startMesh, startStaticAgent } from './helpers/agent-mesh.ts';
import { captureIo } from './helpers/cli-io.ts';
import { tempDir } from './helpers/temp-dir.ts';

const WAIT = { timeoutMs: 20_000, intervalMs: 100 } as const;

async function dig(port: number, ...args: string[]): Promise<string[]> {
  const r = await execa('dig', ['@127.0.0.1', '-p', String(port), '+time=5', '+tries=3', '+short', ...args], { reject: false, timeout: 30_000 });
  if (r.exitCode !== 0) throw new Error(`dig exited ${r.exitCode}: ${r.stdout}${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l !== '');
}

test.serial('export → coordinator → KV → DNS in the other cluster; refusals; unexport and node loss leave the answers', async (t) => {
  const mesh = await startMesh(t, { label: 'xl-svc-it', nodeTtl: '3s' });
  const dns = async (): Promise<string[]> => ['--dns-addr', `127.0.0.1:${await freeLoopbackPort()}`];
  const a = await startStaticAgent(t, mesh, { name: 'a-n1', cluster: 'ca', podCidr: '10.61.1.0/24', stateDir: await tempDir(t, 'xl-svc-a-'), extra: await dns() });
  const b = await startStaticAgent(t, mesh, { name: 'b-n1', cluster: 'cb', podCidr: '10.62.1.0/24', stateDir: await tempDir(t, 'xl-svc-b-'), extra: await dns() });
  const bPort = b.agent.dnsPort;
  const aPort = a.agent.dnsPort;
  if (bPort === null || aPort === null) throw new Error('DNS not started');
  await waitFor(async () => (await agentRequest({ socketPath: a.socket }, '/readyz')).status === 200 && (await agentRequest({ socketPath: b.socket }, '/readyz')).status === 200, { ...WAIT, what: 'both agents ready' });

  // Refused: an address outside cluster ca's pod ranges (cluster cb's pod), nothing stored.
  const bad = captureIo();
  t.is(await runCli(['export', 'web.shop', '--port', 'http:8080/tcp', '--address', '10.62.1.9', '--socket', a.socket], bad), 1);
  t.regex(bad.err(), /not inside a pod range of cluster "ca"/);
  t.is(await mesh.kv.get(serviceKeys.export('shop', 'web', 'ca')), null);
  // Usage errors name the flag.
  const usage = captureIo();
  t.is(await runCli(['export', 'web.shop', '--port', '8080/sctp', '--address', '10.61.1.9', '--socket', a.socket], usage), 2);
  t.regex(usage.err(), /--port: "8080\/sctp" is not valid/);

  // Exported from ca, through a's socket.
  const io = captureIo();
  t.is(await runCli(['export', 'web.shop', '--port', 'http:8080/tcp', '--address', '10.61.1.9', '--address', '10.61.1.10', '--socket', a.socket], io), 0, io.err());
  const entry = await mesh.kv.get(serviceKeys.export('shop', 'web', 'ca'));
  const record = await verifyEnvelope(entry?.value, mesh.coordinatorKey.publicKey, ServiceExportRecord);
  t.is(record.exportedBy, 'a-n1');
  t.deepEqual(record.addresses, ['10.61.1.9', '10.61.1.10']);

  // Resolved in the other cluster (b's DNS), A and SRV.
  await waitFor(async () => (await dig(bPort, 'web.shop.svc.clusterset.local', 'A')).join() === '10.61.1.9,10.61.1.10', { ...WAIT, what: 'b answers with a\'s endpoints' });
  t.deepEqual(await dig(bPort, '_http._tcp.web.shop.svc.clusterset.local', 'SRV'), ['0 100 8080 web.shop.svc.clusterset.local.']);

  // Exported from cb as well: each agent answers its own cluster first.
  t.is(await runCli(['export', 'web.shop', '--port', 'http:8080/tcp', '--address', '10.62.1.20', '--socket', b.socket], captureIo()), 0);
  await waitFor(async () => (await dig(bPort, 'web.shop.svc.clusterset.local', 'A')).join() === '10.62.1.20,10.61.1.9,10.61.1.10', { ...WAIT, what: 'b: local first' });
  await waitFor(async () => (await dig(aPort, 'web.shop.svc.clusterset.local', 'A')).join() === '10.61.1.9,10.61.1.10,10.62.1.20', { ...WAIT, what: 'a: local first' });

  // `crosslink services` lists the merged service.
  const list = captureIo();
  t.is(await runCli(['services', '--json', '--socket', b.socket], list), 0);
  const doc = ServicesDocument.parse(JSON.parse(list.out()));
  t.deepEqual(doc.services.map((s) => [s.name, s.namespace, s.clusters.map((c) => c.cluster)]), [['web', 'shop', ['ca', 'cb']]]);

  // Unexport from ca: gone from b's answers within 2 s (the bound the docs promise).
  t.is(await runCli(['unexport', 'web.shop', '--socket', a.socket], captureIo()), 0);
  const unexportedAt = Date.now();
  await waitFor(async () => (await dig(bPort, 'web.shop.svc.clusterset.local', 'A')).join() === '10.62.1.20', { timeoutMs: 10_000, intervalMs: 50, what: 'unexport visible' });
  t.log(`unexport visible in the other cluster after ${Date.now() - unexportedAt} ms`);

  // Node loss: cb's only node leaves (clean stop deregisters) → its endpoints leave a's answers,
  // although its export record is still in the KV.
  t.is(await runCli(['export', 'web.shop', '--port', 'http:8080/tcp', '--address', '10.61.1.9', '--socket', a.socket], captureIo()), 0);
  await waitFor(async () => (await dig(aPort, 'web.shop.svc.clusterset.local', 'A')).join() === '10.61.1.9,10.62.1.20', { ...WAIT, what: 'both clusters answered' });
  await b.stop();
  await waitFor(async () => (await dig(aPort, 'web.shop.svc.clusterset.local', 'A')).join() === '10.61.1.9', { ...WAIT, what: 'cb\'s endpoint leaves the answers' });
  t.not(await mesh.kv.get(serviceKeys.export('shop', 'web', 'cb')), null, 'the record stays; liveness decides');
});

test.serial('enrolled ranges: a node record claiming extra pod ranges cannot widen what its cluster may export', async (t) => {
  const mesh = await startMesh(t, { label: 'xl-svc-enr', nodeTtl: '10s' });
  const a = await startStaticAgent(t, mesh, { name: 'e-n1', cluster: 'ce', podCidr: '10.63.1.0/24', stateDir: await tempDir(t, 'xl-svc-e-') });
  await waitFor(async () => (await agentRequest({ socketPath: a.socket }, '/readyz')).status === 200, { ...WAIT, what: 'agent ready' });
  const enrolled = (await mesh.enrollment.store.readDefinition('ce'))?.value.podCidrs ?? [];
  t.false(enrolled.some((r) => r.startsWith('10.64.')), `the test's extra range lies outside the enrolled ranges (${enrolled.join(', ')})`);
  // The node's record now claims 10.64.9.0/24 too (signed with the coordinator key, as a bug or a
  // compromised writer could leave it); the coordinator restarts and loads it as a live node.
  const key = kvKeys.node('e-n1');
  const entry = await mesh.kv.get(key);
  const record = await verifyEnvelope(entry?.value, mesh.coordinatorKey.publicKey, NodeRecord);
  await mesh.enrollment.store.putNode({ ...record, podCidrs: ['10.63.1.0/24', '10.64.9.0/24'] }, entry?.revision);
  await mesh.stopCoordinator();
  await mesh.startCoordinator();
  const claims = async (): Promise<string> => (await verifyEnvelope((await mesh.kv.get(key))?.value, mesh.coordinatorKey.publicKey, NodeRecord)).podCidrs.join();
  t.is(await claims(), '10.63.1.0/24,10.64.9.0/24');

  // Inside the enrolled range: admitted (the coordinator is back and the node is live).
  await waitFor(async () => (await runCli(['export', 'db.shop', '--port', '5432/tcp', '--address', '10.63.1.4', '--socket', a.socket], captureIo())) === 0, { ...WAIT, what: 'export inside the enrolled range admitted' });
  // In the range only the node record claims: refused, naming the enrolled range.
  const io = captureIo();
  t.is(await runCli(['export', 'db.shop', '--port', '5432/tcp', '--address', '10.64.9.4', '--socket', a.socket], io), 1, io.out());
  t.true(io.err().includes(`10.64.9.4 is not inside a pod range of cluster "ce" (${enrolled.join(', ')})`), io.err());
  t.is(await claims(), '10.63.1.0/24,10.64.9.0/24', 'the record still claimed the extra range when the export was refused');
  const stored = await verifyEnvelope((await mesh.kv.get(serviceKeys.export('shop', 'db', 'ce')))?.value, mesh.coordinatorKey.publicKey, ServiceExportRecord);
  t.deepEqual(stored.addresses, ['10.63.1.4']);
});
