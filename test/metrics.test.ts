// Prometheus metrics (agent/metrics/, coordinator/metrics.ts): what the snapshots turn into, that
// every counter moves when its event happens, and the real `promtool check metrics` on live scrapes
// of a real agent (health port) and of the real bin/crosslink-coordinator (--health-addr).
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { AgentMetrics, type AgentScrapeSnapshot } from '../agent/metrics/agent-metrics.ts';
import { DeferredAgentMetrics } from '../agent/metrics/deferred-agent-metrics.ts';
import { settlesWithin } from '../lib/child-process.ts';
import { EventLoopDelaySampler } from '../lib/event-loop-delay.ts';
import { CoordinatorMetrics } from '../coordinator/metrics.ts';
import { REQUEST_MAX_BYTES } from '../protocol/request-size.ts';
import { subjects } from '../protocol/subjects.ts';
import { fakeAgent } from './helpers/fake-agent.ts';
import { freeLoopbackPort } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import type { AgentStatus, PeerStatus } from '../protocol/status.ts';
import { startMesh, startStaticAgent } from './helpers/agent-mesh.ts';
import { COORDINATOR_BIN, runCoordinatorBin, startCoordinatorEnv } from './helpers/coordinator-fixture.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';
import { checkMetrics } from './helpers/promtool.ts';
import { tempDir } from './helpers/temp-dir.ts';

const server = useNatsServer('xl-metrics');

const NOW = 1_700_000_100_000;

function peer(name: string, o: Partial<PeerStatus> = {}): PeerStatus {
  return {
    name,
    cluster: 'c2',
    location: 'lab',
    publicKey: 'k',
    path: 'direct',
    via: null,
    configuredEndpoint: '192.0.2.20:51820',
    endpoint: '192.0.2.20:51820',
    allowedIps: ['100.96.0.20/32'],
    latestHandshakeAt: NOW - 30_000,
    rxBytes: 1000,
    txBytes: 2000,
    persistentKeepalive: 0,
    carries: [name],
    probe: { state: 'up', reason: 'answered', target: '100.96.0.20', rttMs: 1.5, lossPct: 10, window: 20, sent: 20, received: 18, lastReplyAt: NOW, since: NOW - 60_000 },
    ...o,
  };
}

function status(peers: PeerStatus[], drops: { rule: number | 'default'; packets: number; bytes: number }[] = []): AgentStatus {
  return {
    version: '0.1.0',
    node: { name: 'n1', cluster: 'c1', location: 'lab', publicKey: 'k', overlayIp: '100.96.0.10', endpoints: [], privateAddresses: [], podCidrs: [], topology: 'mesh', isGateway: false, isRelay: false },
    controlPlane: { connected: true, registered: true, lastHeartbeatAt: NOW, lastError: null, knownNodes: 3, health: { answering: true, reason: 'ok', heartbeatIntervalMs: 15_000, nodeTtlMs: 60_000 } },
    dataplane: { backend: 'userspace', interface: 'xl0', listenPort: 51820, mtu: 1420, liveMtu: 1420 },
    lastReconcile: null,
    ready: true,
    peers,
    remotes: [],
    refusedRoutes: [],
    relays: [],
    errors: [],
    policy: { mode: 'best-effort', nft: 'available', nftError: null, desiredVersion: 3, enforcedVersion: 3, enforcing: true, blocksTraffic: false, lastAppliedAt: NOW, lastError: null, rejected: null, drops },
  };
}

const snapshot = (s: AgentStatus): AgentScrapeSnapshot => ({ status: s, probes: { requestsSent: 40, repliesReceived: 36, requestsAnswered: 41 }, watch: { live: true, stalls: 1, lagRevisions: 0, resumes: 6, catchUpSessions: 7, catchingUp: true, totalEntries: 80 }, rangeWatches: { services: { stalls: 2, resumes: 3, lagRevisions: 4, catchUpSessions: 5, catchingUp: true, totalEntries: 60 }, enrollments: undefined }, now: NOW });

/** The value of one series in a scrape body (labels in the exposition's order), or undefined. */
function sample(body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('agent: a status snapshot becomes per-peer and per-rule series; a peer that leaves disappears; promtool accepts the scrape', async (t) => {
  const m = new AgentMetrics({ processMetrics: false });
  m.observe(snapshot(status([peer('b'), peer('c', { latestHandshakeAt: null, probe: { state: 'down', reason: 'lost', target: '100.96.0.21', rttMs: null, lossPct: 100, window: 3, sent: 3, received: 0, lastReplyAt: null, since: NOW } })], [{ rule: 2, packets: 7, bytes: 420 }, { rule: 'default', packets: 5, bytes: 300 }])));
  const body = (await m.render()).body;
  t.is(sample(body, 'crosslink_agent_peer_up{peer="b",cluster="c2"}'), 1);
  t.is(sample(body, 'crosslink_agent_peer_up{peer="c",cluster="c2"}'), 0);
  t.is(sample(body, 'crosslink_agent_peer_handshake_age_seconds{peer="b",cluster="c2"}'), 30);
  t.is(sample(body, 'crosslink_agent_peer_handshake_age_seconds{peer="c",cluster="c2"}'), undefined, 'no handshake: no series');
  t.is(sample(body, 'crosslink_agent_peer_receive_bytes_total{peer="b",cluster="c2"}'), 1000);
  t.is(sample(body, 'crosslink_agent_peer_transmit_bytes_total{peer="b",cluster="c2"}'), 2000);
  t.is(sample(body, 'crosslink_agent_peer_probe_rtt_seconds{peer="b",cluster="c2"}'), 0.0015);
  t.is(sample(body, 'crosslink_agent_peer_probe_loss_ratio{peer="c",cluster="c2"}'), 1);
  t.is(sample(body, 'crosslink_agent_probe_packets_total{direction="sent"}'), 40);
  t.is(sample(body, 'crosslink_agent_policy_dropped_packets_total{rule="2"}'), 7);
  t.is(sample(body, 'crosslink_agent_policy_dropped_bytes_total{rule="default"}'), 300);
  t.is(sample(body, 'crosslink_agent_policy_enforcing'), 1);
  t.is(sample(body, 'crosslink_agent_nats_connected'), 1);
  t.is(sample(body, 'crosslink_agent_watch_stalls_total'), 1);
  t.is(sample(body, 'crosslink_agent_watch_resumes_total'), 6);
  t.is(sample(body, 'crosslink_agent_watch_catch_up_sessions_total'), 7);
  t.is(sample(body, 'crosslink_agent_watch_catching_up'), 1);
  t.is(sample(body, 'crosslink_agent_watch_entries_total'), 80);
  t.is(sample(body, 'crosslink_agent_range_watch_stalls_total{watch="services"}'), 2);
  t.is(sample(body, 'crosslink_agent_range_watch_stalls_total{watch="enrollments"}'), undefined, 'a watch not running: no series');
  t.is(sample(body, 'crosslink_agent_range_watch_resumes_total{watch="services"}'), 3);
  t.is(sample(body, 'crosslink_agent_range_watch_lag_revisions{watch="services"}'), 4);
  t.is(sample(body, 'crosslink_agent_range_watch_catch_up_sessions_total{watch="services"}'), 5);
  t.is(sample(body, 'crosslink_agent_range_watch_catching_up{watch="services"}'), 1);
  t.is(sample(body, 'crosslink_agent_range_watch_entries_total{watch="services"}'), 60);
  t.false(/crosslink_agent_range_watch_\w+\{watch="enrollments"\}/.test(body), 'a watch not running: none of its series');
  t.is(sample(body, 'crosslink_agent_info{version="0.1.0",node="n1",cluster="c1",topology="mesh"}'), 1);
  t.false(/100\.96\.|192\.0\.2\./.test(body), 'no addresses in labels');
  const lint = await checkMetrics(body);
  t.is(lint.code, 0, lint.output);
  t.is(lint.output.trim(), '', 'no lint findings');

  // c left the mesh, b's WireGuard counters grew, the policy changed (rule 2 gone), NATS dropped.
  const next = status([peer('b', { rxBytes: 5000 })]);
  m.observe(snapshot({ ...next, controlPlane: { ...next.controlPlane, connected: false } }));
  const after = (await m.render()).body;
  t.is(sample(after, 'crosslink_agent_peer_receive_bytes_total{peer="b",cluster="c2"}'), 5000);
  t.false(after.includes('peer="c"'), 'a peer that left has no series');
  t.false(after.includes('rule="2"'), 'a rule that is gone has no series');
  t.is(sample(after, 'crosslink_agent_nats_connected'), 0);
});

test('agent: reconciles feed the histogram and the failure counter; the hooks count wireguard-go restarts and route repairs', async (t) => {
  const m = new AgentMetrics({ processMetrics: false });
  const before = (await m.render()).body;
  t.is(sample(before, 'crosslink_agent_apply_failures_total'), 0, 'present at 0 from the start (rate() works at once)');
  m.reconciled({ ok: true, durationMs: 20, changes: 3, revision: 9 });
  m.reconciled({ ok: false, durationMs: 700, changes: 1, revision: 9 });
  m.wireguardRestarted();
  m.routesRepaired(2);
  m.routesRepaired(0);
  const body = (await m.render()).body;
  t.is(sample(body, 'crosslink_agent_reconciles_total{result="ok"}'), 1);
  t.is(sample(body, 'crosslink_agent_reconciles_total{result="failed"}'), 1);
  t.is(sample(body, 'crosslink_agent_apply_failures_total'), 1);
  t.is(sample(body, 'crosslink_agent_dataplane_changes_total'), 4);
  t.is(sample(body, 'crosslink_agent_last_reconcile_ok'), 0);
  t.is(sample(body, 'crosslink_agent_reconcile_duration_seconds_bucket{le="0.025",result="ok"}'), 1);
  t.is(sample(body, 'crosslink_agent_reconcile_duration_seconds_bucket{le="0.5",result="failed"}'), 0);
  t.is(sample(body, 'crosslink_agent_reconcile_duration_seconds_bucket{le="1",result="failed"}'), 1);
  t.is(sample(body, 'crosslink_agent_mesh_revision'), 9);
  t.is(sample(body, 'crosslink_agent_wireguard_restarts_total'), 1);
  t.is(sample(body, 'crosslink_agent_route_repairs_total'), 2);
});

test('two agents in one process keep separate registries', async (t) => {
  const a = new AgentMetrics({ processMetrics: false });
  const b = new AgentMetrics({ processMetrics: false });
  a.wireguardRestarted();
  t.is(sample((await a.render()).body, 'crosslink_agent_wireguard_restarts_total'), 1);
  t.is(sample((await b.render()).body, 'crosslink_agent_wireguard_restarts_total'), 0);
});

test('coordinator: registrations by result, heartbeats and expiries are counted by a real coordinator', async (t) => {
  const metrics = new CoordinatorMetrics({ processMetrics: false });
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlmetrics', config: { nodeTtl: '1s' }, metrics });
  const a = await fakeAgent('node-a', { cluster: 'm1' });
  t.true((await env.client.register(a)).ok);
  t.false((await env.client.register(a, { podCidrs: ['not-a-cidr'] })).ok);
  t.like(await env.client.heartbeat(a), { ok: true });
  const stranger = await fakeAgent('node-x', { cluster: 'm1' });
  t.false((await env.client.heartbeat(stranger)).ok);
  // A deregistration over its byte limit: refused unread, counted by kind.
  const oversized = await env.nc.request(subjects(env.prefix).deregister, 'x'.repeat(REQUEST_MAX_BYTES.deregistration + 1), { timeout: 3000 });
  t.like(JSON.parse(oversized.string()), { ok: false, error: { code: 'invalid' } });
  // node-a goes silent: the leader expires it after the 1 s TTL.
  const scrape = async (): Promise<string> => {
    metrics.observe(await env.coordinator.metricsSnapshot());
    return (await metrics.render()).body;
  };
  const body = await waitFor(async () => {
    const b = await scrape();
    return sample(b, 'crosslink_coordinator_node_removals_total{reason="expired"}') === 1 ? b : undefined;
  }, { timeoutMs: 15_000, what: 'node-a to expire' });
  t.is(sample(body, 'crosslink_coordinator_registrations_total{result="ok"}'), 1);
  t.is(sample(body, 'crosslink_coordinator_registrations_total{result="invalid"}'), 1);
  t.is(sample(body, 'crosslink_coordinator_heartbeats_total{result="ok"}'), 1);
  t.is(sample(body, 'crosslink_coordinator_heartbeats_total{result="unknown-node"}'), 1);
  t.is(sample(body, 'crosslink_coordinator_requests_too_large_total{kind="deregistration"}'), 1);
  t.is(sample(body, 'crosslink_coordinator_requests_too_large_total{kind="watch request"}'), 0, 'every kind from the first scrape');
  t.is(sample(body, 'crosslink_coordinator_leader'), 1);
  t.is(sample(body, 'crosslink_coordinator_nodes'), 0);
  t.true((sample(body, 'crosslink_coordinator_kv_revision') ?? 0) > 0, 'the bucket revision is read');
});

test('bin/crosslink-coordinator --health-addr: /healthz, /readyz and a /metrics scrape promtool accepts; a bad address exits 2 naming the flag', async (t) => {
  const bad = await runCoordinatorBin(['run', '--health-addr', 'example.com:80', '--nats-url', server().url]);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--health-addr: "example\.com:80" is not valid; must be host:port with an IP literal/);

  const { child, port, exited, stderr } = await coordinatorWithHealth(t, 'xl-metrics-coord');
  const get = (path: string): Promise<Response> => fetch(`http://127.0.0.1:${port}${path}`);
  await waitFor(async () => (await get('/healthz')).status === 200, { timeoutMs: 20_000, what: 'the coordinator health listener' });
  const ready = await waitFor(async () => {
    const r = await get('/readyz');
    const body = (await r.json()) as { leader?: boolean };
    return r.status === 200 && body.leader === true ? body : undefined;
  }, { timeoutMs: 20_000, what: 'the coordinator to lead' });
  t.like(ready, { ready: true, leader: true });
  const res = await get('/metrics');
  t.is(res.status, 200);
  t.regex(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const body = await res.text();
  t.is(sample(body, 'crosslink_coordinator_leader'), 1);
  t.is(sample(body, 'crosslink_coordinator_nats_connected'), 1);
  t.true(body.includes('process_cpu_seconds_total'), 'process metrics are exported');
  const lint = await checkMetrics(body);
  t.is(lint.code, 0, lint.output);
  t.is(lint.output.trim(), '');
  t.is((await get('/status')).status, 404, 'serves nothing else');
  child.kill('SIGTERM');
  t.is(await exited, 0, stderr());
});

test('bin/crosslink-coordinator on SIGTERM closes its health/metrics listener, also with a scraper\'s keep-alive connection open: it exits within 15 s and the port can be bound again', async (t) => {
  const { child, port, exited, stderr } = await coordinatorWithHealth(t, 'xl-metrics-coord-stop');
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).status === 200, { timeoutMs: 20_000, what: 'the coordinator serving /metrics' });
  // A scraper's idle keep-alive connection: a listener closed without closing it would keep the process up.
  const idle = await new Promise<Socket>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s)).once('error', reject);
  });
  t.teardown(() => idle.destroy());
  idle.on('error', () => undefined);
  child.kill('SIGTERM');
  t.true(await settlesWithin(exited, 15_000), `exited within 15 s of SIGTERM (stderr: ${stderr()})`);
  t.is(await exited, 0, stderr());
  t.true(await canBind(port), `port ${port} is free`);
});

/** bin/crosslink-coordinator with --health-addr on a free port (its own bucket and subjects); SIGKILLed at teardown if still running. */
async function coordinatorWithHealth(t: ExecutionContext, label: string): Promise<{ child: ChildProcess; port: number; exited: Promise<number | null>; stderr: () => string }> {
  const dir = await tempDir(t, label);
  const port = await freeLoopbackPort();
  const child = spawn(COORDINATOR_BIN, ['run', '--nats-url', server().url, '--bucket', `xlmetrics_${port}`, '--subject-prefix', `xl.m${port}.v1`, '--signing-key-file', `${dir}/coordinator.key`, '--health-addr', `127.0.0.1:${port}`, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exited;
  });
  return { child, port, exited, stderr: () => stderr };
}

/** Whether 127.0.0.1:`port` can be listened on (nobody holds it). */
function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

test('a real agent serves /metrics on its health port: its peers, readiness and NATS state; promtool accepts the scrape', async (t) => {
  const mesh = await startMesh(t, { label: 'xl-metrics-mesh', nodeTtl: '10s' });
  const port = await freeLoopbackPort();
  // The agent's metrics as it makes them (prom-client loaded at the first scrape), with an event-loop sampler whose timers are counted.
  let timers = 0;
  const sampler = new EventLoopDelaySampler({ now: () => 0, utilization: () => 0, schedule: () => {
    timers++;
    return () => {
      timers--;
    };
  } });
  const metrics = new DeferredAgentMetrics(() => Promise.resolve(new AgentMetrics({ eventLoopDelay: sampler })));
  const a = await startStaticAgent(t, mesh, { name: 'node-a', cluster: 'c1', podCidr: '10.244.1.0/24', stateDir: await tempDir(t, 'xl-metrics-a'), extra: ['--health-addr', `127.0.0.1:${port}`], metrics });
  await startStaticAgent(t, mesh, { name: 'node-b', cluster: 'c2', podCidr: '10.244.2.0/24', stateDir: await tempDir(t, 'xl-metrics-b') });
  const body = await waitFor(async () => {
    const r = await fetch(`http://127.0.0.1:${port}/metrics`);
    const b = await r.text();
    return sample(b, 'crosslink_agent_ready') === 1 && b.includes('crosslink_agent_peer_up{peer="node-b",cluster="c2"}') ? b : undefined;
  }, { timeoutMs: 30_000, what: 'node-a ready with node-b as a peer in /metrics' });
  t.is(sample(body, 'crosslink_agent_nats_connected'), 1);
  t.is(sample(body, 'crosslink_agent_registered'), 1);
  t.true((sample(body, 'crosslink_agent_reconciles_total{result="ok"}') ?? 0) >= 1);
  // The mesh watch's own figures reach the scrape (agent.ts passes them on): it read at least ours and node-b.
  t.true((sample(body, 'crosslink_agent_watch_entries_total') ?? 0) >= 2, 'the mesh watch read the bucket');
  t.is(sample(body, 'crosslink_agent_watch_catching_up'), 0);
  t.is(a.healthPort, port);
  const lint = await checkMetrics(body);
  t.is(lint.code, 0, lint.output);
  t.is(lint.output.trim(), '');

  // The agent's own wiring counts wireguard-go restarts and drift repairs (FakeDataplane reports one change per full apply).
  t.is(sample(body, 'crosslink_agent_wireguard_restarts_total'), 0);
  t.is(sample(body, 'crosslink_agent_route_repairs_total'), 0);
  a.dataplane.restarted(2);
  a.dataplane.drifted('route 10.244.2.0/24 deleted');
  const healed = await waitFor(async () => {
    const b = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    return sample(b, 'crosslink_agent_wireguard_restarts_total') === 1 && (sample(b, 'crosslink_agent_route_repairs_total') ?? 0) >= 1 ? b : undefined;
  }, { timeoutMs: 20_000, what: 'the restart and the drift repair to be counted' });
  t.is(sample(healed, 'crosslink_agent_wireguard_restarts_total'), 1);

  // Stopping the agent stops its event-loop sampler: no timer left behind.
  t.is(timers, 1, 'the sampler runs once the metrics are loaded');
  await a.stop();
  t.is(timers, 0, 'no sampler timer after the agent stopped');
});
