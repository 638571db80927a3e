// The agent's own events end to end on a real nats-server and the real coordinator: faults injected
// through the FakeDataplane (a route put back by the drift path, wireguard-go restarting in a loop,
// an apply failing) come out of `crosslink events`, bounded in rate, and — with the Kubernetes sink
// agent/main.ts adds in Kubernetes mode — as Events on the Node in the in-test API server (real
// @kubernetes/client-node).
import test from 'ava';
import { runCli } from '../cli/main.ts';
import { DEFAULT_EVENT_BURST } from '../agent/events/event-rate-limit.ts';
import { waitFor } from '../lib/wait.ts';
import { CrosslinkEvent } from '../protocol/events.ts';
import { DEFAULT_BUCKET } from '../protocol/subjects.ts';
import { kubernetesNodeEventsFromConfig } from '../agent/kubernetes/node-events.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { applyFailure } from './agent-helpers.ts';
import { FakeApiServer } from './helpers/fake-apiserver.ts';
import { startMesh, startStaticAgent } from './helpers/agent-mesh.ts';
import { captureIo } from './helpers/cli-io.ts';
import { tempDir } from './helpers/temp-dir.ts';

const WAIT = { timeoutMs: 20_000, intervalMs: 100 } as const;

test('repairs, wireguard-go restarts and reconcile failures of an agent are events, a restart loop is bounded', async (t) => {
  const mesh = await startMesh(t, { label: 'xl-agent-ev', nodeTtl: '30s' });
  const kube = await FakeApiServer.start();
  t.teardown(() => kube.stop());
  const nodeEvents = kubernetesNodeEventsFromConfig({ nodeName: 'ev-a' }, { kubeConfig: kube.kubeConfig(), clock: systemClock, logger: silentLogger() });
  const a = await startStaticAgent(t, mesh, { name: 'ev-a', cluster: 'c1', podCidr: '10.61.0.0/24', stateDir: await tempDir(t, 'xl-agent-ev-'), events: nodeEvents });
  await waitFor(() => a.dataplane.applied.length > 0, { ...WAIT, what: 'the first full apply' });
  const iface = a.config.interfaceName;

  const events = async (): Promise<CrosslinkEvent[]> => {
    const io = captureIo();
    const code = await runCli(['events', '--json', '--nats-url', mesh.server.url, '--bucket', DEFAULT_BUCKET, '--coordinator-key', mesh.coordinatorKey.publicKey, '--node', 'ev-a'], io);
    if (code !== 0) throw new Error(`crosslink events exited ${code}: ${io.err()}`);
    return io.out().split('\n').filter((l) => l.startsWith('{')).map((l) => CrosslinkEvent.parse(JSON.parse(l)));
  };
  const until = async (what: string, ok: (es: CrosslinkEvent[]) => boolean): Promise<CrosslinkEvent[]> => {
    let seen: CrosslinkEvent[] = [];
    await waitFor(async () => ok((seen = await events())), { ...WAIT, what });
    return seen;
  };

  // 1. The drift monitor reports a deleted route; the reconcile it asks for puts it back.
  a.dataplane.nextCommands = [['ip', 'route', 'replace', '10.62.0.0/24', 'dev', iface, 'proto', '149']];
  a.dataplane.drifted(`route deleted: 10.62.0.0/24 dev ${iface} proto 149`);
  const afterRepair = await until('route-repaired', (es) => es.some((e) => e.type === 'route-repaired'));
  const repaired = afterRepair.find((e) => e.type === 'route-repaired');
  t.like(repaired, { node: 'ev-a', cluster: 'c1', reporter: { role: 'agent', name: 'ev-a' }, details: { count: 1, routes: '10.62.0.0/24' } });

  // 2. wireguard-go crashing in a loop: events are bounded (DEFAULT_EVENT_BURST a minute).
  for (let g = 2; g < 2 + 3 * DEFAULT_EVENT_BURST; g++) a.dataplane.restarted(g);
  const afterRestarts = await until('wireguard-restarted events', (es) => es.filter((e) => e.type === 'wireguard-restarted').length >= DEFAULT_EVENT_BURST);

  // 3. An apply that fails (fault injected in the data plane) is a reconcile-failed event.
  a.dataplane.failNext = applyFailure({ op: 'add route', message: 'ip route replace 10.62.0.0/24 exited 2: RTNETLINK answers: Invalid argument' });
  await a.agent.reconcileNow('resync');
  const all = await until('reconcile-failed', (es) => es.some((e) => e.type === 'reconcile-failed'));
  t.regex(all.find((e) => e.type === 'reconcile-failed')?.message ?? '', /reconcile on ev-a failed: .*RTNETLINK answers: Invalid argument/);
  // Captured in the same read that saw the failure: never more restarts than the bound, whatever came late.
  t.is(all.filter((e) => e.type === 'wireguard-restarted').length, DEFAULT_EVENT_BURST, JSON.stringify(afterRestarts.map((e) => e.message)));
  // The routine reconciles (start, mesh changes) were not reported as repairs.
  t.is(all.filter((e) => e.type === 'route-repaired').length, 1);

  // The same events on the Node: one Event per reason, the bounded restarts aggregated into a count.
  await nodeEvents.flush();
  const onNode = kube.listObjects('events');
  const byReason = new Map(onNode.map((e) => [e['reason'] as string, e]));
  t.deepEqual([...byReason.keys()].sort(), ['ReconcileFailed', 'RouteRepaired', 'WireguardRestarted'], JSON.stringify(onNode));
  t.is(onNode.length, 3);
  t.like(byReason.get('WireguardRestarted'), { involvedObject: { kind: 'Node', name: 'ev-a' }, type: 'Warning', count: DEFAULT_EVENT_BURST });
  t.like(byReason.get('RouteRepaired'), { count: 1, involvedObject: { kind: 'Node', name: 'ev-a' } });
});
