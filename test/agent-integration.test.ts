// Agents against a real nats-server and a real Coordinator, with a fake data plane that records
// every desired state: registration, peers, expiry, fail-static through outages, restart with the
// same keys, and the CLI against a running agent's socket.
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { jetstreamManager } from '@nats-io/jetstream';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCli } from '../cli/main.ts';
import { freeLoopbackPort } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';
import { AgentStatus } from '../protocol/status.ts';
import { agentRequest, agentStatus, type HttpAnswer } from './helpers/agent-http.ts';
import { peerNodes, startMesh, startStaticAgent as startAgent, type Mesh, type MeshOptions } from './helpers/agent-mesh.ts';
import { captureIo } from './helpers/cli-io.ts';
import { tempDir } from './helpers/temp-dir.ts';
import { TestEnrollment } from './helpers/enrollment.ts';

const NODE_TTL = '3s';
const WAIT = { timeoutMs: 20_000, intervalMs: 100 } as const;

const startAgentMesh = (t: ExecutionContext, o: Pick<MeshOptions, 'port' | 'coordinatorKey' | 'enrollment'> = {}): Promise<Mesh> =>
  startMesh(t, { label: 'xl-agent-it', nodeTtl: NODE_TTL, ...o });
const tempStateDir = (t: ExecutionContext, name: string): Promise<string> => tempDir(t, `xl-agent-${name}-`);
const httpGet = (socketPath: string, path: string): Promise<HttpAnswer> => agentRequest({ socketPath }, path);

test.serial('two agents register, peer with each other, and serve status, showconf and diagnose', async (t) => {
  const mesh = await startAgentMesh(t);
  const a = await startAgent(t, mesh, { name: 'node-a', cluster: 'c1', podCidr: '10.244.1.0/24', stateDir: await tempStateDir(t, 'a') });
  const b = await startAgent(t, mesh, { name: 'node-b', cluster: 'c2', podCidr: '10.245.1.0/24', stateDir: await tempStateDir(t, 'b') });

  await waitFor(() => peerNodes(a.dataplane.last()).join() === 'node-b' && peerNodes(b.dataplane.last()).join() === 'node-a', { ...WAIT, what: 'each agent peers with the other' });
  const toB = a.dataplane.last()?.peers[0];
  t.is(toB?.publicKey, b.agent.publicKey);
  t.is(toB?.endpoint, '192.0.2.11:51820');
  t.true(toB?.allowedIps.includes('10.245.1.0/24'));
  t.is(a.dataplane.interfaces.at(-1)?.addresses.length, 1, 'the interface carries the overlay IP');
  // Their watches are consumers the coordinator's watch broker created (xlw_…): five per agent
  // (nodes, clusters, enrollments, policy, services). (The oc_… ones are the coordinator's own watches.)
  await waitFor(async () => {
    const names: string[] = [];
    for await (const c of (await jetstreamManager(mesh.nc)).consumers.list('KV_crosslink')) names.push(c.name);
    return names.filter((n) => n.startsWith('xlw_')).length >= 10;
  }, { ...WAIT, what: 'ten brokered watch consumers' });

  // Status over the socket: valid, ready, and free of private key material.
  const res = await httpGet(a.socket, '/status');
  t.is(res.status, 200);
  const status = AgentStatus.parse(JSON.parse(res.body));
  t.true(status.ready);
  t.true(status.controlPlane.registered);
  t.is(status.node.publicKey, a.agent.publicKey);
  t.deepEqual(status.peers.map((p) => p.name), ['node-b']);
  const secrets = [(await readFile(join(a.stateDir, 'wireguard.key'), 'utf8')).trim(), (await readFile(join(a.stateDir, 'identity.key'), 'utf8')).trim()];
  for (const path of ['/status', '/view', '/diagnostics', '/readyz']) {
    const body = (await httpGet(a.socket, path)).body;
    for (const s of secrets) t.false(body.includes(s), `${path} leaks a private key`);
    t.false(/privateKey|secretKey|identitySecret/i.test(body), `${path} has a private key field`);
  }
  t.is((await httpGet(a.socket, '/readyz')).status, 200);
  t.is((await httpGet(a.socket, '/healthz')).status, 200);

  // The whole-mesh view: both agents' signed health summaries reach the coordinator's stream and
  // verify against their records (states are not up here: the fake data plane carries no probes).
  await waitFor(
    async () => {
      const m = captureIo();
      await runCli(['mesh', '--json', '--nats-url', mesh.server.url, '--coordinator-key', mesh.coordinatorKey.publicKey], m);
      const doc = JSON.parse(m.out() || '{}') as { summaries?: Record<string, { peers: { peer: string }[] }>; refused?: Record<string, string> };
      return Object.keys(doc.summaries ?? {}).sort().join() === 'node-a,node-b' && doc.summaries?.['node-a']?.peers[0]?.peer === 'node-b' && Object.keys(doc.refused ?? {}).length === 0;
    },
    { ...WAIT, what: 'verified health summaries of both agents in `crosslink mesh`' },
  );
  t.pass();

  // status --watch: frames until interrupted, exit code of the last one.
  const stopWatch = new AbortController();
  const w = { ...captureIo(), signal: stopWatch.signal };
  const watching = runCli(['status', '--watch', '0.2s', '--socket', a.socket], w);
  await waitFor(() => (w.out().match(/^--- /gm) ?? []).length >= 2, { ...WAIT, what: 'two status --watch frames' });
  stopWatch.abort();
  t.is(await watching, 1, w.err());
  t.regex(w.out(), /Node:\s+node-a/);

  // CLI in-process: status --json. Exit 1: the fake data plane carries no packets, so the peer
  // probes cannot be answered (the overlay IP is on no interface here) — status must not say healthy.
  const io = captureIo();
  t.is(await runCli(['status', '--json', '--socket', a.socket], io), 1);
  const cliStatus = AgentStatus.parse(JSON.parse(io.out()));
  t.is(cliStatus.node.name, 'node-a');
  t.not(cliStatus.peers[0]?.probe?.state, 'up');
  t.regex(cliStatus.peers[0]?.probe?.reason ?? '', /probe socket not bound|not probed yet/);

  // showconf from the agent's view and straight from the KV agree (same computeDesiredState).
  const fromAgent = captureIo();
  t.is(await runCli(['showconf', '--socket', a.socket], fromAgent), 0);
  t.regex(fromAgent.out(), new RegExp(`\\[Peer\\]\\n# node-b .*\\nPublicKey = ${b.agent.publicKey.replace(/[+/=]/g, '\\$&')}`));
  t.false(/^PrivateKey/m.test(fromAgent.out()));
  for (const s of secrets) t.false(fromAgent.out().includes(s));
  const fromKv = captureIo();
  t.is(await runCli(['showconf', '--nats-url', mesh.server.url, '--coordinator-key', mesh.coordinatorKey.publicKey, '--node', 'node-a'], fromKv), 0, fromKv.err());
  const body = (s: string): string => s.split('\n').slice(1).join('\n');
  t.is(body(fromKv.out()), body(fromAgent.out()));

  const nodes = captureIo();
  t.is(await runCli(['nodes', '--nats-url', mesh.server.url, '--coordinator-key', mesh.coordinatorKey.publicKey], nodes), 0, nodes.err());
  t.regex(nodes.out(), /node-a\s+c1\s+lab\s+100\.96\.\S+\s+192\.0\.2\.10:51820\s+10\.244\.1\.0\/24\s+eligible\s+✓ verified/);
  t.regex(nodes.out(), /node-b\s+c2/);

  const diag = captureIo();
  t.is(await runCli(['diagnose', '--socket', a.socket, '--interval', '0'], diag), 1);
  t.regex(diag.out(), /✓ registered with the coordinator/);
  t.regex(diag.out(), /✓ node-b: record verified/);
  t.regex(diag.out(), /✗ node-b: WireGuard peer configured/, 'the fake data plane has no live peers');

  // `peers --fresh` reads the kernel now, past the reading status requests share for 1 s: each
  // change of the (fake) live WireGuard state shows in the very next fresh read.
  for (const rx of [1, 2, 3]) {
    a.dataplane.live = [{ publicKey: b.agent.publicKey, endpoint: '192.0.2.11:51820', allowedIps: ['10.245.1.0/24'], latestHandshakeAt: null, rxBytes: rx, txBytes: 0, persistentKeepalive: 0, hasPresharedKey: false }];
    const fresh = captureIo();
    await runCli(['peers', '--fresh', '--json', '--socket', a.socket], fresh);
    t.is((JSON.parse(fresh.out() || '[]') as { rxBytes?: number }[])[0]?.rxBytes, rx, `fresh read ${rx}: ${fresh.out()}${fresh.err()}`);
  }
  a.dataplane.live = [];

  // The real binary once (tsx loader, argv, exit code: 1, the only peer cannot answer probes).
  const bin = await execa(join(import.meta.dirname, '..', 'bin', 'crosslink'), ['status', '--json', '--socket', a.socket], { reject: false, timeout: 60_000 });
  t.is(bin.exitCode, 1, bin.stderr);
  t.is(AgentStatus.parse(JSON.parse(bin.stdout)).node.name, 'node-a');
  const unreachable = await execa(join(import.meta.dirname, '..', 'bin', 'crosslink'), ['status', '--socket', join(a.stateDir, 'nope.sock')], { reject: false, timeout: 60_000 });
  t.is(unreachable.exitCode, 2);
  t.regex(unreachable.stderr, /cannot reach the agent .*is crosslink-agent running/);
});

test.serial('a stopped agent expires from the others within the TTL; restarted with its state dir it keeps its key', async (t) => {
  const mesh = await startAgentMesh(t);
  const a = await startAgent(t, mesh, { name: 'node-a', cluster: 'c1', podCidr: '10.244.1.0/24', stateDir: await tempStateDir(t, 'a') });
  const bDir = await tempStateDir(t, 'b');
  const b = await startAgent(t, mesh, { name: 'node-b', cluster: 'c2', podCidr: '10.245.1.0/24', stateDir: bDir, extra: ['--no-cleanup'] });
  await waitFor(() => peerNodes(a.dataplane.last()).join() === 'node-b', { ...WAIT, what: 'a peers with b' });
  const firstKey = b.agent.publicKey;

  // No cleanup: no deregistration, heartbeats just stop; the coordinator expires b after the TTL.
  await b.stop();
  t.false(b.dataplane.tornDown);
  t.true(b.dataplane.closed);
  await waitFor(() => peerNodes(a.dataplane.last()).length === 0, { ...WAIT, what: 'a drops b after the TTL' });

  const b2 = await startAgent(t, mesh, { name: 'node-b', cluster: 'c2', podCidr: '10.245.1.0/24', stateDir: bDir });
  t.is(b2.agent.publicKey, firstKey, 'same WireGuard key after restart');
  await waitFor(() => a.dataplane.last()?.peers.find((p) => p.node === 'node-b')?.publicKey === firstKey, { ...WAIT, what: 'a sees b again' });

  // With cleanup, stopping deregisters: the peer goes at once (well within the TTL).
  await b2.stop();
  t.true(b2.dataplane.tornDown);
  await waitFor(() => peerNodes(a.dataplane.last()).length === 0, { timeoutMs: 2500, intervalMs: 50, what: 'a drops b on deregistration' });
});

// Break-tested: an agent that computed its peers without the others once a heartbeat failed fails
// at the coordinator part; one that dropped its peers on a NATS 'disconnect' fails at the NATS part.
test.serial('fail-static: coordinator and NATS outages never shrink the peer set', async (t) => {
  const mesh = await startAgentMesh(t);
  const a = await startAgent(t, mesh, { name: 'node-a', cluster: 'c1', podCidr: '10.244.1.0/24', stateDir: await tempStateDir(t, 'a') });
  await startAgent(t, mesh, { name: 'node-b', cluster: 'c2', podCidr: '10.245.1.0/24', stateDir: await tempStateDir(t, 'b') });
  await startAgent(t, mesh, { name: 'node-c', cluster: 'c3', podCidr: '10.246.1.0/24', stateDir: await tempStateDir(t, 'c') });
  await waitFor(() => peerNodes(a.dataplane.last()).join() === 'node-b,node-c', { ...WAIT, what: 'a peers with b and c' });

  // Coordinator down: heartbeats fail, records stay; several resyncs and more than a TTL pass.
  await mesh.stopCoordinator();
  const mark = a.dataplane.applied.length;
  // Observed, not slept: the heartbeat failure reported, and 5 resyncs (1 s apart: more than the 3 s
  // TTL) applied since the coordinator went. Status is read in the poll that sees both.
  const st = await waitFor(
    async () => {
      const s = await agentStatus(a.socket);
      return s.controlPlane.lastError !== null && a.dataplane.applied.length >= mark + 5 ? s : undefined;
    },
    { ...WAIT, what: 'heartbeat failure reported and 5 resyncs during the coordinator outage' },
  );
  t.true(st.ready, 'still ready: the data plane is intact');
  await a.agent.reconcileNow('test');
  const during = a.dataplane.applied.slice(mark);
  for (const d of during) t.deepEqual(peerNodes(d), ['node-b', 'node-c']);

  // NATS down as well: the KV watch is gone, the view is kept.
  await mesh.server.stopProcess();
  const mark2 = a.dataplane.applied.length;
  // The agent noticed (disconnected) and resynced twice since: the view survived the lost watch.
  await waitFor(async () => !(await agentStatus(a.socket)).controlPlane.connected && a.dataplane.applied.length >= mark2 + 2, { ...WAIT, what: 'disconnected, then 2 resyncs' });
  await a.agent.reconcileNow('test');
  const duringNats = a.dataplane.applied.slice(mark2);
  t.true(duringNats.length >= 3);
  for (const d of duringNats) t.deepEqual(peerNodes(d), ['node-b', 'node-c']);

  // Everything back: the agents reconnect, heartbeat or re-register, and stay meshed.
  await mesh.server.restart();
  // The coordinator's own connection needs a moment to come back (JetStream too).
  await waitFor(() => mesh.startCoordinator().then(() => true), { ...WAIT, intervalMs: 500, what: 'coordinator restarted' });
  await waitFor(
    async () => {
      const s = await agentStatus(a.socket);
      return s.controlPlane.connected && s.controlPlane.lastError === null && s.ready;
    },
    { ...WAIT, what: 'a healthy again after the outage' },
  );
  await a.agent.reconcileNow('test');
  t.deepEqual(peerNodes(a.dataplane.last()), ['node-b', 'node-c']);
});

test.serial('starts while NATS is down (interface only), registers once it is up; stops promptly while down', async (t) => {
  const port = await freeLoopbackPort();
  const coordinatorKey = await generateSigningKeyPair();
  const early = { coordinatorKey, server: { url: `nats://127.0.0.1:${port}` }, enrollment: new TestEnrollment() };
  const a = await startAgent(t, early, { name: 'node-a', cluster: 'c1', podCidr: '10.244.1.0/24', stateDir: await tempStateDir(t, 'a') });
  await waitFor(() => a.dataplane.interfaces.length > 0, { ...WAIT, what: 'interface ensured' });
  t.deepEqual(a.dataplane.interfaces[0]?.addresses, [], 'no overlay IP before the first registration');
  const before = await agentStatus(a.socket);
  t.false(before.controlPlane.connected);
  t.false(before.ready);
  t.is((await httpGet(a.socket, '/readyz')).status, 503);
  t.is(a.dataplane.applied.length, 0, 'nothing applied without a view');
  // No view yet (/view answers 503): diagnose still runs its checks and says so (exit 1, not 2).
  const diag = captureIo();
  t.is(await runCli(['diagnose', '--socket', a.socket, '--interval', '0'], diag), 1, diag.err());
  t.regex(diag.out(), /✗ verified view of the mesh: the agent has no view yet/);

  // An agent that never reaches NATS still stops (no hanging connect).
  const lonely = await startAgent(t, early, { name: 'node-z', cluster: 'c9', podCidr: '10.249.1.0/24', stateDir: await tempStateDir(t, 'z') });
  await lonely.stop();
  t.true(lonely.dataplane.tornDown);

  const mesh = await startAgentMesh(t, { port, coordinatorKey, enrollment: early.enrollment });
  await startAgent(t, mesh, { name: 'node-b', cluster: 'c2', podCidr: '10.245.1.0/24', stateDir: await tempStateDir(t, 'b') });
  await waitFor(() => peerNodes(a.dataplane.last()).join() === 'node-b', { ...WAIT, what: 'a registered and peers with b' });
  t.is((await httpGet(a.socket, '/readyz')).status, 200);
  // The overlay IP is cached for the next start (kept on the interface before re-registering).
  t.regex(await readFile(join(a.stateDir, 'overlay-ip'), 'utf8'), /^100\.96\.\d+\.\d+\n$/);
});
