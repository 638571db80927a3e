// Kubernetes Events on the Node through the real @kubernetes/client-node against the in-test API
// server (test/helpers/fake-apiserver.ts, the one accepted stand-in): the kubelet's conventions
// (namespace default, involvedObject = the Node), repeats aggregated into one Event's count, a
// deleted Event re-created, an API failure dropping only that event.
import test from 'ava';
import { AGGREGATE_WINDOW_MS, KubernetesNodeEvents, NODE_EVENTS_NAMESPACE, eventReason } from '../agent/kubernetes/node-events.ts';
import { eventsApi } from '../agent/kubernetes/events-api.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { silentLogger } from '../lib/logger.ts';
import type { EventInput } from '../protocol/events.ts';
import { FakeApiServer, type JsonObject } from './helpers/fake-apiserver.ts';

const restart = (g: number): EventInput => ({ type: 'wireguard-restarted', severity: 'warning', node: 'n1', message: `wireguard-go on n1 restarted (generation ${g})` });
const str = (o: JsonObject, ...path: string[]): unknown => path.reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], o);

test('events on the Node: kubelet conventions, repeats bump one Event\'s count, a new window or a deleted Event makes a new one, a failed call drops only that event', async (t) => {
  const server = await FakeApiServer.start();
  t.teardown(() => server.stop());
  const clock = new ManualClock(1_790_000_000_000);
  const sink = new KubernetesNodeEvents({ api: eventsApi(server.kubeConfig(), { timeoutMs: 5000 }), nodeName: () => 'n1', clock, logger: silentLogger() });

  sink.publish(restart(2));
  sink.publish({ type: 'route-repaired', severity: 'warning', node: 'n1', message: 'n1: 1 route(s) put back' });
  clock.advance(1000);
  sink.publish(restart(3));
  sink.publish(restart(4));
  await sink.flush();
  const events = server.listObjects('events');
  t.is(events.length, 2, 'one Event per reason');
  const restarts = events.find((e) => e['reason'] === 'WireguardRestarted');
  if (!restarts) throw new Error('no WireguardRestarted Event');
  t.like(restarts, {
    metadata: { namespace: NODE_EVENTS_NAMESPACE },
    involvedObject: { kind: 'Node', name: 'n1', uid: 'n1' },
    type: 'Warning',
    count: 3,
    message: 'wireguard-go on n1 restarted (generation 4)',
    source: { component: 'crosslink-agent', host: 'n1' },
  });
  t.is(Date.parse(restarts['lastTimestamp'] as string) - Date.parse(restarts['firstTimestamp'] as string), 1000);
  t.like(events.find((e) => e['reason'] === 'RouteRepaired'), { count: 1 });

  // After the aggregation window: a new Event.
  clock.advance(AGGREGATE_WINDOW_MS);
  sink.publish(restart(5));
  await sink.flush();
  t.is(server.listObjects('events').filter((e) => e['reason'] === 'WireguardRestarted').length, 2);

  // The Event was deleted meanwhile (events have a TTL): the repeat creates a new one.
  const latest = server.listObjects('events').find((e) => e['message'] === 'wireguard-go on n1 restarted (generation 5)');
  t.true(server.deleteObject('events', NODE_EVENTS_NAMESPACE, String(str(latest ?? {}, 'metadata', 'name'))));
  sink.publish(restart(6));
  await sink.flush();
  t.like(server.listObjects('events').find((e) => e['message'] === 'wireguard-go on n1 restarted (generation 6)'), { count: 1 });

  // The API failing: that event is lost (logged), the sink goes on.
  server.failNextRequests(1, { status: 500 });
  sink.publish({ type: 'mtu-repaired', severity: 'warning', node: 'n1', message: 'lost' });
  sink.publish({ type: 'mtu-repaired', severity: 'warning', node: 'n1', message: 'recorded' });
  await sink.flush();
  t.deepEqual(server.listObjects('events').filter((e) => e['reason'] === 'MtuRepaired').map((e) => e['message']), ['recorded']);
  t.is(eventReason('node-joined'), 'NodeJoined');
});
