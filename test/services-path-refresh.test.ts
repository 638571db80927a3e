// The services agent (agent/services/services-agent.ts) refreshes path health for its answer order
// every pathRefreshMs of the INJECTED clock (lib/clock-timer.ts, not a real setInterval), and only
// while some service is exported. A real nats-server on 127.0.0.1 holds one signed export; a manual
// clock.
import test from 'ava';
import { ServicesAgent } from '../agent/services/services-agent.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import type { ClusterPathInfo } from '../protocol/service.ts';
import { serviceKeys } from '../protocol/service.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';
import { bed, BUCKET, putSigned, service, T0 } from './helpers/range-watch-bed.ts';

test('path health is refreshed every pathRefreshMs of the clock, not between', async (t) => {
  const b = await bed(t, 'svcpaths');
  await putSigned(b.kv, serviceKeys.export('shop', 'a', 'east'), service('a'), b.coordinator);
  let asked = 0;
  const agent = new ServicesAgent({
    cluster: 'west',
    nodeName: () => 'west-n1',
    bucket: BUCKET,
    dnsAddr: null,
    dnsPolicy: 'all',
    coordinatorKey: b.coordinator.publicKey,
    identityKey: await generateSigningKeyPair(),
    clusterPaths: () => {
      asked++;
      return Promise.resolve(new Map<string, ClusterPathInfo>([['east', { healthy: true, rttMs: 3 }]]));
    },
    clock: b.clock,
    logger: silentLogger(),
    pathRefreshMs: 5000,
  });
  await agent.start();
  t.teardown(() => agent.stop());
  agent.attach(b.nc, b.src);
  await waitFor(() => b.src.created.length === 1 && b.clock.hasSleeperAt(T0 + 5000), { timeoutMs: 10_000, intervalMs: 20, what: 'the watch, and the refresh armed on the clock' });
  await waitFor(() => agent.document().services.length === 1, { timeoutMs: 10_000, intervalMs: 20, what: 'the export read' });
  b.clock.advanceTo(T0 + 4999);
  await new Promise((r) => setImmediate(r));
  t.is(asked, 0, 'not before the period');
  b.clock.advanceTo(T0 + 5000);
  await waitFor(() => asked === 1, { timeoutMs: 10_000, intervalMs: 20, what: 'the first refresh' });
  await b.clock.advanceWhenArmed(T0 + 10_000, 'the second refresh');
  await waitFor(() => asked === 2, { timeoutMs: 10_000, intervalMs: 20, what: 'the second refresh' });
});
