// lib/nats-request.ts requestUntilDisconnect on a fake connection: a request that never answers ends
// at the connection's next disconnect with a ConnectionLostError (not at its timeout, which never
// comes here); other statuses and a disconnect before the call leave it alone; replies and the
// request's own errors pass through; no status stream is left open after 1,000 requests — on the
// fake, and on a real nats.js connection to a real nats-server (its listener list back to where it was).
import test from 'ava';
import { connect, type Msg, type NatsConnection, type Status } from '@nats-io/transport-node';
import { ConnectionLostError, requestUntilDisconnect, type RequestConnection } from '../lib/nats-request.ts';
import { nextConnectionStatus } from '../lib/nats-status.ts';
import { NatsServer } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { scriptedStatus } from './helpers/scripted-status.ts';

/** A connection whose requests are answered (or not) by the test, and whose status streams it counts. */
class FakeConnection {
  /** Requests made, each settled by the test (or never). */
  readonly requests: { subject: string; resolve: (m: Msg) => void; reject: (e: Error) => void }[] = [];
  private readonly scripted = scriptedStatus({
    request: (subject: string) =>
      new Promise<Msg>((resolve, reject) => {
        this.requests.push({ subject, resolve, reject });
      }),
  } as unknown as NatsConnection);

  readonly nc: RequestConnection = this.scripted.nc;

  say(s: Status): void {
    this.scripted.say(s);
  }

  /** Status streams opened and not stopped. */
  open(): number {
    return this.scripted.open();
  }
}

const disconnect: Status = { type: 'disconnect', server: 'nats://127.0.0.1:4222' };
const reply = (text: string): Msg => ({ string: () => text }) as Msg;

/** Lets every queued promise reaction run (the fake settles nothing on a timer). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

/** What `p` came to once the queued reactions ran: its value, its error, or 'pending'. */
async function outcome<T>(p: Promise<T>): Promise<{ value: T } | { error: unknown } | 'pending'> {
  let state: { value: T } | { error: unknown } | 'pending' = 'pending';
  p.then(
    (value) => (state = { value }),
    (error: unknown) => (state = { error }),
  );
  await settle();
  return state;
}

test('a request that never answers ends at the disconnect with ConnectionLostError, not at its timeout', async (t) => {
  const f = new FakeConnection();
  const p = requestUntilDisconnect(f.nc, 'xl.register', 'hello', { timeout: 60_000 });
  await settle();
  t.is(f.requests.length, 1);
  t.is(f.open(), 1, 'listening to the connection while in flight');
  t.is(await outcome(p), 'pending');
  f.say({ type: 'staleConnection' });
  f.say({ type: 'reconnecting' });
  t.is(await outcome(p), 'pending', 'only a disconnect ends it');
  f.say(disconnect);
  const o = await outcome(p);
  t.true(o !== 'pending' && 'error' in o && o.error instanceof ConnectionLostError, 'ended at the disconnect');
  const err = o !== 'pending' && 'error' in o ? (o.error as ConnectionLostError) : undefined;
  t.is(err?.name, 'ConnectionLostError');
  t.is(err?.subject, 'xl.register');
  t.is(err?.server, 'nats://127.0.0.1:4222');
  t.regex(err?.message ?? '', /lost while the request to xl\.register was in flight/);
  t.is(f.open(), 0, 'the listener is removed');
  // The abandoned request rejecting later (its timeout) is consumed, not an unhandled rejection.
  f.requests[0]!.reject(new Error('TIMEOUT'));
  await settle();
});

test('a disconnect before the call is not the request\'s loss; replies and the request\'s own errors pass through', async (t) => {
  const f = new FakeConnection();
  f.say(disconnect);
  const answered = requestUntilDisconnect(f.nc, 'xl.heartbeat', 'a', { timeout: 5000 });
  await settle();
  t.is(await outcome(answered), 'pending');
  f.requests[0]!.resolve(reply('ok'));
  const a = await outcome(answered);
  t.true(a !== 'pending' && 'value' in a && a.value.string() === 'ok');
  const timedOut = requestUntilDisconnect(f.nc, 'xl.heartbeat', 'b', { timeout: 5000 });
  await settle();
  const timeout = new Error('TIMEOUT');
  f.requests[1]!.reject(timeout);
  const b = await outcome(timedOut);
  t.true(b !== 'pending' && 'error' in b && b.error === timeout, 'the request\'s own error, unchanged');
  t.is(f.open(), 0);
  // A disconnect after both settled touches neither.
  f.say(disconnect);
  await settle();
});

test('no status stream left behind after 1,000 requests: answered, failed, or ended by one disconnect', async (t) => {
  const f = new FakeConnection();
  const answered = Array.from({ length: 1000 }, (_, i) => requestUntilDisconnect(f.nc, `xl.s${i}`, '', { timeout: 5000 }));
  await settle();
  t.is(f.open(), 1000);
  f.requests.forEach((r, i) => (i % 2 === 0 ? r.resolve(reply(`${i}`)) : r.reject(new Error('no responders'))));
  const results = await Promise.allSettled(answered);
  t.is(results.filter((r) => r.status === 'fulfilled').length, 500);
  await settle();
  t.is(f.open(), 0, 'every listener removed once its request settled');

  const lost = Array.from({ length: 1000 }, (_, i) => requestUntilDisconnect(f.nc, `xl.l${i}`, '', { timeout: 5000 }));
  await settle();
  t.is(f.open(), 1000);
  f.say(disconnect);
  const ended = await Promise.allSettled(lost);
  t.true(ended.every((r) => r.status === 'rejected' && r.reason instanceof ConnectionLostError), 'all 1,000 ended by the one disconnect');
  await settle();
  t.is(f.open(), 0, 'every listener removed');
  // Their abandoned requests end later at their own timeouts: nothing is listening, nothing is unhandled.
  for (const r of f.requests.slice(1000)) r.reject(new Error('TIMEOUT'));
  await settle();
});

test('nextConnectionStatus: true at the next reconnect, false at its timeout on the clock; the listener removed either way', async (t) => {
  const f = new FakeConnection();
  const clock = new ManualClock();
  const seen = nextConnectionStatus(f.nc, 'reconnect', { clock, timeoutMs: 2000 });
  await settle();
  f.say(disconnect);
  t.is(await outcome(seen), 'pending');
  f.say({ type: 'reconnect', server: 'nats://127.0.0.1:4223' });
  t.deepEqual(await outcome(seen), { value: true });
  t.is(f.open(), 0);

  const none = nextConnectionStatus(f.nc, 'reconnect', { clock, timeoutMs: 2000 });
  await clock.advanceWhenArmed(clock.now() + 2000, 'the reconnect wait');
  t.deepEqual(await outcome(none), { value: false });
  t.is(f.open(), 0);
});

test('on a real connection (nats.js 3): 1,000 requests, answered or refused, leave no status listener behind', async (t) => {
  const server = await NatsServer.start({ name: 'xl-nreq' });
  t.teardown(() => server.stop());
  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  nc.subscribe('xl.echo', {
    callback: (_err, msg) => {
      msg.respond(msg.data);
    },
  });
  await nc.flush();
  // nats.js keeps every open status stream in its protocol handler's listener list (internal).
  const listeners = (): number => (nc as unknown as { protocol: { listeners: unknown[] } }).protocol.listeners.length;
  const before = listeners();
  const answered = await Promise.all(Array.from({ length: 500 }, (_, i) => requestUntilDisconnect(nc, 'xl.echo', `${i}`, { timeout: 10_000 })));
  t.is(answered[499]!.string(), '499');
  const refused = await Promise.allSettled(Array.from({ length: 500 }, () => requestUntilDisconnect(nc, 'xl.nobody', '', { timeout: 10_000 })));
  t.true(refused.every((r) => r.status === 'rejected'), 'no responders');
  // Removed once each stream's end is processed (a promise reaction of nats.js).
  await waitFor(() => listeners() === before, { timeoutMs: 5000, what: `the listeners back to ${before} (${listeners()})` });
  t.is(listeners(), before);
});
