// The brokered watch's delivery checks without a server: a consumer-sequence gap ends the watch
// (nothing after it is yielded), deliveries before the broker's reply are kept in order, a consumer
// silent for 3 heartbeats (of the injected clock) ends it. Requests carry the MAC headers only while the
// agent holds K_watch.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import type { Msg, MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import { brokeredWatchSource, WatchBrokerError, WATCH_REQUEST_TIMEOUT_MS } from '../agent/control/brokered-watch.ts';
import { ConnectionLostError } from '../lib/nats-request.ts';
import { scriptedStatus } from './helpers/scripted-status.ts';
import { BROKER_API_TIMEOUT_MS } from '../coordinator/watch-broker.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { watchRequestMacInput, watchRequestMacKey, watchRequestMacMatches, WATCH_MAC_HEADERS, type WatchRequestMac } from '../protocol/watch-request-mac.ts';

interface FakeNc {
  readonly nc: NatsConnection;
  deliver(m: Partial<Msg>): void;
  /** Subjects the watch published to (flow-control answers included). */
  readonly published: string[];
}

/** A connection whose broker answers at once; deliveries are pushed by the test. */
function fakeNc(reply: object, early: readonly Partial<Msg>[] = []): FakeNc {
  let callback: ((err: Error | null, m: Msg) => void) | undefined;
  const published: string[] = [];
  const deliver = (m: Partial<Msg>): void => callback?.(null, { data: new Uint8Array(), headers: undefined, ...m } as Msg);
  const nc = {
    subscribe: (_s: string, o: { callback: (err: Error | null, m: Msg) => void }) => {
      callback = o.callback;
      return { unsubscribe: () => (callback = undefined) };
    },
    request: () => {
      for (const m of early) deliver(m);
      return Promise.resolve({ string: () => JSON.stringify(reply) });
    },
    status: () => ({ [Symbol.asyncIterator]: () => ({ next: () => new Promise(() => undefined) }), stop: () => undefined }),
    publish: (subject: string) => {
      published.push(subject);
    },
  };
  return { nc: nc as unknown as NatsConnection, deliver, published };
}

/** These tests never ask for a catch-up page: a well-formed key that verifies nothing they use. */
const UNUSED_KEY = Buffer.alloc(32).toString('base64');

const ack = (sseq: number, cseq: number, pending: number): string => `$JS.ACK.KV_crosslink.xlw_t.1.${sseq}.${cseq}.1700000000000000000.${pending}`;
const put = (key: string, sseq: number, cseq: number, pending: number): Partial<Msg> => ({ subject: `$KV.crosslink.${key}`, reply: ack(sseq, cseq, pending), data: new TextEncoder().encode(key) });

test('deliveries before the reply are kept in order; a consumer-sequence gap ends the watch and nothing after it is yielded', async (t) => {
  const f = fakeNc({ ok: true, name: 'xlw_t', pending: 2, lastRevision: 0, heartbeatMs: 0 }, [put('nodes.a', 5, 1, 1)]);
  const src = brokeredWatchSource({ nc: f.nc, bucket: 'crosslink', subjectPrefix: 'xl', logger: silentLogger(), clock: systemClock, coordinatorKey: UNUSED_KEY });
  const w = await src.watch({ key: 'nodes.>' });
  t.is(await w.initialCount(), 2);
  f.deliver(put('nodes.b', 7, 2, 0));
  f.deliver(put('nodes.c', 9, 4, 0)); // consumer sequence 3 never came
  f.deliver(put('nodes.d', 10, 5, 0));
  const got: string[] = [];
  for await (const e of w) got.push(`${e.key}@${e.revision}:${e.isUpdate ? 'update' : 'initial'}:${e.delta ?? '-'}`);
  t.deepEqual(got, ['nodes.a@5:initial:1', 'nodes.b@7:update:0']);
  t.is(src.stats().gaps, 1);
});

test('a delivery of another consumer, or not on a key, is ignored; a delete carries its operation', async (t) => {
  const f = fakeNc({ ok: true, name: 'xlw_t', pending: 0, lastRevision: 0, heartbeatMs: 0 });
  const src = brokeredWatchSource({ nc: f.nc, bucket: 'crosslink', subjectPrefix: 'xl', logger: silentLogger(), clock: systemClock, coordinatorKey: UNUSED_KEY });
  const w = await src.watch({ key: 'nodes.>' });
  f.deliver({ subject: '$KV.crosslink.nodes.x', reply: '$JS.ACK.KV_crosslink.other.1.3.1.0.0' });
  f.deliver({ subject: '_INBOX.abc', reply: ack(3, 1, 0) });
  const h = { code: 0, get: (k: string) => (k === 'KV-Operation' ? 'DEL' : '') } as unknown as NonNullable<Msg['headers']>;
  f.deliver({ ...put('nodes.y', 4, 1, 0), headers: h });
  const it = w[Symbol.asyncIterator]();
  const first = await it.next();
  t.like(first.value, { key: 'nodes.y', operation: 'DEL', revision: 4 });
  w.stop();
  t.true((await it.next()).done);
});

test('flow control is answered only on the server\'s $JS.FC. subjects: a status message forged into the inbox cannot make the agent publish elsewhere', async (t) => {
  const f = fakeNc({ ok: true, name: 'xlw_t', pending: 0, lastRevision: 0, heartbeatMs: 0 });
  const src = brokeredWatchSource({ nc: f.nc, bucket: 'crosslink', subjectPrefix: 'xl', logger: silentLogger(), clock: systemClock, coordinatorKey: UNUSED_KEY });
  const w = await src.watch({ key: 'nodes.>' });
  t.teardown(() => w.stop());
  const responded: string[] = [];
  const status = (reply: string, stalled: string): Partial<Msg> => ({
    subject: '_INBOX.abc',
    reply,
    headers: { code: 100, get: (k: string) => (k === 'Nats-Consumer-Stalled' ? stalled : '') } as unknown as NonNullable<Msg['headers']>,
    respond: () => {
      responded.push(reply);
      return true;
    },
  });
  f.deliver(status('crosslink.v1.register', 'crosslink.v1.heartbeat'));
  t.deepEqual([responded, f.published], [[], []], 'nothing published for a forged status message');
  f.deliver(status('$JS.FC.KV_crosslink.x.1', '$JS.FC.KV_crosslink.x.2'));
  t.deepEqual([responded, f.published], [['$JS.FC.KV_crosslink.x.1'], ['$JS.FC.KV_crosslink.x.2']], 'the server\'s flow control is answered');
});

test('the broker gives up on the JetStream API before the agent gives up on the broker, so an unservable create is answered `unavailable`, not a timeout', (t) => {
  t.true(BROKER_API_TIMEOUT_MS < WATCH_REQUEST_TIMEOUT_MS, `${BROKER_API_TIMEOUT_MS} < ${WATCH_REQUEST_TIMEOUT_MS}`);
  t.true(WATCH_REQUEST_TIMEOUT_MS <= 3000, 'a lost watch is asked for again within seconds');
});

test('a consumer silent for 3 heartbeats of the injected clock ends the watch (looked at every heartbeat; a delivery pushes it back), not before', async (t) => {
  const T0 = 1_700_000_000_000;
  const clock = new ManualClock(T0);
  t.teardown(() => clock.advance(3_600_000));
  const f = fakeNc({ ok: true, name: 'xlw_t', pending: 0, lastRevision: 0, heartbeatMs: 1000 });
  const src = brokeredWatchSource({ nc: f.nc, bucket: 'crosslink', subjectPrefix: 'xl', logger: silentLogger(), clock, coordinatorKey: UNUSED_KEY });
  const w = await src.watch({ key: 'nodes.>' });
  const got: string[] = [];
  const reading = (async () => {
    for await (const e of w) got.push(e.key);
  })();
  const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
  // Looks at 1 s, 2 s; a delivery at 2 s; looks at 3 s, 4 s, 5 s find 3 s of silence at most.
  await clock.advanceWhenArmed(T0 + 1000, 'the first look');
  await clock.advanceWhenArmed(T0 + 2000, 'the second look');
  f.deliver(put('nodes.a', 5, 1, 0));
  for (const at of [3000, 4000, 5000]) await clock.advanceWhenArmed(T0 + at, `the look at ${at} ms`);
  await turn();
  t.is(src.stats().silent, 0, 'not ended by 3 s of silence');
  await clock.advanceWhenArmed(T0 + 6000, 'the look that finds 4 s of silence');
  await reading;
  t.is(src.stats().silent, 1);
  t.deepEqual(got, ['nodes.a']);
  t.is(clock.sleepers, 0, 'no look left armed after the end');
});

test('a watch, count or catch-up request lost with the connection ends at the disconnect (unavailable, cause ConnectionLostError), not at its timeout; the inbox is dropped', async (t) => {
  let unsubscribed = 0;
  let asked = 0;
  const base = {
    // The broker never answers (the request or its reply went down with the connection).
    request: () => {
      asked++;
      return new Promise<Msg>(() => undefined);
    },
    subscribe: () => ({
      unsubscribe: () => {
        unsubscribed++;
      },
    }),
  } as unknown as NatsConnection;
  const s = scriptedStatus(base);
  const src = brokeredWatchSource({ nc: s.nc, bucket: 'crosslink', subjectPrefix: 'xl', logger: silentLogger(), clock: systemClock, coordinatorKey: UNUSED_KEY, requestTimeoutMs: 600_000 });
  const watch = src.watch({ key: 'nodes.>' });
  const count = src.count('nodes.>');
  const page = src.catchUp({ filter: 'nodes.>', afterRevision: 0, limit: 10 });
  const ended = Promise.allSettled([watch, count, page]);
  await new Promise((r) => setImmediate(r));
  t.is(asked, 3);
  s.say({ type: 'disconnect', server: 'nats://gone:4222' });
  const results = await ended;
  for (const r of results) {
    t.is(r.status, 'rejected');
    const err = r.status === 'rejected' ? (r.reason as unknown) : undefined;
    t.true(err instanceof WatchBrokerError && err.code === 'unavailable' && err.cause instanceof ConnectionLostError, String(err));
  }
  t.is(unsubscribed, 1, 'the watch\'s inbox subscription is dropped');
});

test('watch requests carry the MAC headers (node, sentAt of the injected clock, MAC over both and the body) only while the agent has K_watch; the body is the same WatchRequest JSON either way', async (t) => {
  const sent: { body: string; headers: MsgHdrs | undefined }[] = [];
  const nc = {
    request: (_s: string, payload: Uint8Array, opts: { headers?: MsgHdrs }) => {
      sent.push({ body: Buffer.from(payload).toString('utf8'), headers: opts.headers });
      return Promise.resolve({ string: () => JSON.stringify({ ok: true, name: '', pending: 2, lastRevision: 7, heartbeatMs: 0 }) });
    },
    status: () => ({ [Symbol.asyncIterator]: () => ({ next: () => new Promise(() => undefined) }), stop: () => undefined }),
  } as unknown as NatsConnection;
  const clock = new ManualClock(1_764_800_000_000);
  const held: { mac?: WatchRequestMac } = {};
  const src = brokeredWatchSource({ nc, bucket: 'b', subjectPrefix: 'p', logger: silentLogger(), clock, coordinatorKey: 'k', requestMac: () => held.mac });
  await src.count('nodes.>');
  const mac = { node: 'node-a', key: watchRequestMacKey(randomBytes(32)) };
  held.mac = mac;
  await src.count('nodes.>');
  const [plain, macd] = sent;
  if (plain === undefined || macd === undefined) return t.fail('two requests');
  t.is(plain.headers, undefined, 'no K: no headers (as before)');
  t.is(plain.body, JSON.stringify({ kind: 'count', filter: 'nodes.>' }));
  t.is(macd.body, plain.body, 'the body is unchanged: an older coordinator (strict schema) serves it');
  const h = macd.headers;
  t.is(h?.get(WATCH_MAC_HEADERS.node), 'node-a');
  t.is(h?.get(WATCH_MAC_HEADERS.sentAt), String(clock.now()));
  t.true(watchRequestMacMatches(watchRequestMacInput('node-a', clock.now(), Buffer.from(macd.body)), h?.get(WATCH_MAC_HEADERS.mac) ?? '', mac.key));
});
