// coordinator/deferred-events.ts: events go out after the reply sent in the same turn, in order,
// one batch per turn, none dropped.
import test from 'ava';
import { deferredEvents } from '../coordinator/deferred-events.ts';
import type { EventInput } from '../protocol/events.ts';

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
