// The agent's start (issue 10, a new node programmed in ≤ 2 s): connecting to NATS begins first,
// beside the keys, the identity (the node source) and the data plane (wireguard-go's start), not
// after them. No NATS: the fake identity and data plane each wait (bounded) until a connection
// attempt has begun, so a start that connects only after them never gets past its identity. A
// start that fails closes the connection it began.
import test from 'ava';
import type { NatsConnection } from '@nats-io/transport-node';
import { waitFor } from '../lib/wait.ts';
import { createStaticNodeSource } from '../agent/control/static-source.ts';
import type { NodeSource } from '../agent/plan/model.ts';
import { startFakeAgent } from './helpers/agent-mesh.ts';
import { tempDir } from './helpers/temp-dir.ts';
import { FakeDataplane } from './agent-helpers.ts';

const DEADLINE = { timeoutMs: 5_000, intervalMs: 5 } as const;

interface Steps {
  connects: number;
  /** Settles the pending connection attempt. */
  settle: (nc: NatsConnection | Error) => void;
  /** What the start began, in order. */
  readonly order: string[];
}

/** Fakes whose identity and data plane wait (bounded) for a connection attempt to have begun. */
function wiring(s: Steps, o: { identityFails?: boolean } = {}) {
  const connecting = (me: string) => waitFor(() => s.connects > 0, { ...DEADLINE, what: `a NATS connection attempt begun beside ${me}` });
  return {
    connectNats: (): Promise<NatsConnection> => {
      s.connects++;
      s.order.push('connect');
      return new Promise<NatsConnection>((resolve, reject) => {
        s.settle = (r) => (r instanceof Error ? reject(r) : resolve(r));
      });
    },
    createDataplane: async (): Promise<FakeDataplane> => {
      s.order.push('dataplane');
      await connecting('the data plane');
      return new FakeDataplane();
    },
    nodeSource: (deps: Parameters<typeof createStaticNodeSource>[0]): NodeSource => {
      const inner = createStaticNodeSource(deps);
      return {
        onChange: (l) => inner.onChange(l),
        publish: (p) => inner.publish(p),
        stop: () => inner.stop(),
        start: async (signal) => {
          s.order.push('identity');
          await connecting('the identity');
          if (o.identityFails === true) throw new Error('the Node object cannot be read');
          return inner.start(signal);
        },
      };
    },
  };
}

const steps = (): Steps => ({ connects: 0, settle: () => undefined, order: [] });

const KEY = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

const args = (stateDir: string): string[] => [
  '--nats-url', 'nats://127.0.0.1:1',
  '--node-name', 'node-a',
  '--cluster', 'c1',
  '--location', 'lab',
  '--pod-cidr', '10.244.1.0/24',
  '--endpoint', '192.0.2.10:51820',
  '--coordinator-key', KEY,
  '--state-dir', stateDir,
  '--mtu', '1420',
];

test('start-up cost: connecting to NATS begins before the identity and the data plane; the connect loop takes that attempt', async (t) => {
  const s = steps();
  const running = await startFakeAgent(t, { name: 'node-a', args: args(await tempDir(t, 'xl-start-par-')), coordinatorKey: KEY, ...wiring(s) });
  t.deepEqual(s.order, ['connect', 'identity', 'dataplane']);
  // The connect loop used the attempt begun first rather than opening a second one.
  t.is(s.connects, 1);
  s.settle(new Error('no NATS in this test'));
  await running.stop();
});

test('a start that fails closes the connection it began', async (t) => {
  const s = steps();
  const error = await t.throwsAsync(startFakeAgent(t, { name: 'node-a', args: args(await tempDir(t, 'xl-start-par-')), coordinatorKey: KEY, ...wiring(s, { identityFails: true }) }));
  t.regex(error?.message ?? '', /Node object cannot be read/);
  let closed = false;
  // The attempt succeeds after the start failed: nobody uses that connection, so it is closed.
  s.settle({ close: () => ((closed = true), Promise.resolve()) } as unknown as NatsConnection);
  await waitFor(() => closed, { ...DEADLINE, what: 'the abandoned connection to be closed' });
  t.true(closed);
});
