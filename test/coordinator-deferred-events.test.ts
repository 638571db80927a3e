// coordinator/deferred-events.ts: events go out after the reply sent in the same turn, in order,
// one batch per turn, none dropped — also not those still queued when the coordinator stops (real
// nats-server: its stop flushes them before the connection is closed).
import test from 'ava';
import { deferredEvents } from '../coordinator/deferred-events.ts';
import { CrosslinkEvent, type EventInput } from '../protocol/events.ts';
import { checkEnvelopeSignature, openEnvelopeUnverified } from '../protocol/signing.ts';
import { SignedEnvelope } from '../protocol/messages.ts';
import { waitFor } from '../lib/wait.ts';
import { fakeAgent } from './helpers/fake-agent.ts';
import { startCoordinatorEnv } from './helpers/coordinator-fixture.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';

const nats = useNatsServer('xl-defev');

const event = (node: string): EventInput => ({ type: 'node-joined', severity: 'info', node, cluster: 'c1', message: `node ${node} joined` });

test('an event published while handling a request goes out after the reply of that request', async (t) => {
  const order: string[] = [];
  const events = deferredEvents({ publish: (e) => order.push(`event ${e.node ?? ''}`) });
  events.publish(event('a'));
  await Promise.resolve(); // the handler's remaining awaits (microtasks), then the reply
  order.push('reply');
  await new Promise<void>((r) => setImmediate(r));
  t.deepEqual(order, ['reply', 'event a']);
});

test('one batch per turn, in publish order, nothing dropped', (t) => {
  const runs: (() => void)[] = [];
  const seen: string[] = [];
  const events = deferredEvents({ publish: (e) => seen.push(e.node ?? '') }, (run) => runs.push(run));
  for (const n of ['a', 'b', 'c']) events.publish(event(n));
  t.is(runs.length, 1);
  t.deepEqual(seen, []);
  runs.shift()?.();
  t.deepEqual(seen, ['a', 'b', 'c']);
  events.publish(event('d'));
  t.is(runs.length, 1, 'a new turn after the batch went out');
  runs.shift()?.();
  t.deepEqual(seen, ['a', 'b', 'c', 'd']);
});

test('flush publishes what is queued at once, in order; the scheduled turn then publishes nothing twice', (t) => {
  const runs: (() => void)[] = [];
  const seen: string[] = [];
  const events = deferredEvents({ publish: (e) => seen.push(e.node ?? '') }, (run) => runs.push(run));
  events.publish(event('a'));
  events.publish(event('b'));
  events.flush();
  t.deepEqual(seen, ['a', 'b']);
  events.publish(event('c'));
  t.is(runs.length, 1, 'the turn already scheduled takes it');
  runs.shift()?.();
  t.deepEqual(seen, ['a', 'b', 'c']);
  events.flush();
  t.deepEqual(seen, ['a', 'b', 'c']);
});

test('coordinator stop: events still queued are published before it returns (the caller then closes NATS)', async (t) => {
  // Deferred turns that never come: an event can only leave through the flush in stop().
  const env = await startCoordinatorEnv(t, { natsUrl: nats().url, bucketTag: 'xldefev', config: {}, eventSchedule: () => undefined });
  const got: CrosslinkEvent[] = [];
  const sub = env.nc.subscribe(`${env.prefix}.events.>`, {
    callback: (err, msg) => {
      if (err) return;
      // Events are signed envelopes (protocol/event-verify.ts): the coordinator's key signed this one.
      const envelope = SignedEnvelope.parse(msg.json());
      checkEnvelopeSignature(envelope, env.key.publicKey);
      got.push(CrosslinkEvent.parse(openEnvelopeUnverified(envelope)));
    },
  });
  t.teardown(() => sub.unsubscribe());
  await env.nc.flush();
  t.like(await env.client.register(await fakeAgent('late-1', { cluster: 'aws', podCidrs: ['10.31.0.0/24'], endpoints: ['192.0.2.31:51820'] })), { ok: true });
  await env.coordinator.stop();
  await waitFor(() => got.some((e) => e.type === 'node-joined' && e.node === 'late-1'), { timeoutMs: 15_000, what: 'the node-joined event queued when the coordinator stopped' });
  t.pass();
});
