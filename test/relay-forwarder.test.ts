// Real UDP sockets on loopback: two fake "nodes" talk through the relay forwarder.
import test, { type ExecutionContext } from 'ava';
import { createSocket, type Socket } from 'node:dgram';
import { RelayForwarder, relayHintsFrom } from '../agent/dataplane/relay-forwarder.ts';
import type { RelayAssignment } from '../agent/plan/model.ts';
import type { LivePeer } from '../agent/dataplane/wg-dump.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';

interface FakeNode {
  socket: Socket;
  port: number;
  received: string[];
  send(text: string, port: number): Promise<void>;
  close(): Promise<void>;
}

/** A UDP socket standing in for a node; closed when the test ends unless the test closed it first. */
async function fakeNode(t: Pick<ExecutionContext, 'teardown'>, address = '127.0.0.1'): Promise<FakeNode> {
  const socket = createSocket('udp4');
  const received: string[] = [];
  socket.on('message', (m) => received.push(m.toString()));
  await new Promise<void>((resolve) => socket.bind(0, address, resolve));
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => (closed ??= new Promise<void>((resolve) => socket.close(() => resolve())));
  t.teardown(close);
  return {
    socket,
    port: socket.address().port,
    received,
    send: (text, port) => new Promise<void>((resolve, reject) => socket.send(text, port, '127.0.0.1', (err) => (err ? reject(err) : resolve()))),
    close,
  };
}

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

const assignment = (port: number, a = 'x', b = 'y'): RelayAssignment => ({
  port,
  a: { node: a, publicKey: `key-${a}` },
  b: { node: b, publicKey: `key-${b}` },
});

async function expectMessage(node: FakeNode, text: string): Promise<void> {
  await waitFor(() => node.received.includes(text), { timeoutMs: 3000, intervalMs: 10, what: `${text} at port ${node.port}` });
}

/** Sends and waits until the relay has received the datagram (and so learned the sender's side). */
async function sendAndSettle(relay: RelayForwarder, node: FakeNode, text: string, port: number): Promise<void> {
  const before = relay.received(port);
  await node.send(text, port);
  await waitFor(() => relay.received(port) > before, { timeoutMs: 3000, intervalMs: 5, what: `the relay on ${port} to receive ${text}` });
}

async function setup(t: { teardown(fn: () => Promise<void>): void }, clock = new ManualClock()) {
  const port = await freeUdpPort();
  const relay = new RelayForwarder({ logger: silentLogger(), bindAddress: '127.0.0.1', clock });
  t.teardown(() => relay.close());
  await relay.update([assignment(port)]);
  return { port, relay, clock };
}

test('forwards datagrams both ways once both sides are known', async (t) => {
  const { port, relay } = await setup(t);
  const x = await fakeNode(t);
  const y = await fakeNode(t);
  await sendAndSettle(relay, x, 'x1', port); // nobody to forward to yet: dropped, x learned
  t.deepEqual(relay.stats(), [{ port, between: ['x', 'y'], packets: 0, bytes: 0 }]);
  await y.send('y1', port);
  await expectMessage(x, 'y1');
  await x.send('x2', port);
  await expectMessage(y, 'x2');
  t.deepEqual(y.received, ['x2']);
  t.deepEqual(relay.stats(), [{ port, between: ['x', 'y'], packets: 2, bytes: 4 }]);
});

test('re-learns a side that changed its port (least recently seen slot is replaced)', async (t) => {
  const { port, relay, clock } = await setup(t);
  const x = await fakeNode(t);
  const y = await fakeNode(t);
  await sendAndSettle(relay, x, 'x1', port);
  clock.advance(1000);
  await y.send('y1', port);
  await expectMessage(x, 'y1');
  await x.close(); // x's NAT mapping changes: same node, new source port
  const x2 = await fakeNode(t);
  await x2.send('x-again', port);
  await expectMessage(y, 'x-again');
  await y.send('y2', port);
  await expectMessage(x2, 'y2');
  t.pass();
});

test('hints identify the side even when LRU would pick the wrong slot', async (t) => {
  const { port, relay, clock } = await setup(t);
  const x = await fakeNode(t, '127.0.0.1');
  const y = await fakeNode(t, '127.0.0.2');
  const hintPeers: LivePeer[] = [
    { publicKey: 'key-x', endpoint: '127.0.0.1:51820', allowedIps: [], latestHandshakeAt: null, rxBytes: 0, txBytes: 0, persistentKeepalive: 0, hasPresharedKey: false },
    { publicKey: 'key-y', endpoint: '127.0.0.2:51820', allowedIps: [], latestHandshakeAt: null, rxBytes: 0, txBytes: 0, persistentKeepalive: 0, hasPresharedKey: false },
  ];
  await relay.update([assignment(port)], { hints: relayHintsFrom(hintPeers) });
  await sendAndSettle(relay, x, 'x1', port);
  clock.advance(1000);
  await y.send('y1', port);
  await expectMessage(x, 'y1');
  clock.advance(1000);
  await x.send('x2', port); // x is now the most recently seen side
  await expectMessage(y, 'x2');
  clock.advance(1000);
  await x.close();
  const x2 = await fakeNode(t, '127.0.0.1');
  await x2.send('x3', port); // without the hint, y's (older) slot would be replaced
  await expectMessage(y, 'x3');
  await y.send('y2', port);
  await expectMessage(x2, 'y2');
  t.deepEqual(y.received, ['x2', 'x3']);
});

test('a side not heard from for 3 minutes is forgotten', async (t) => {
  const { port, relay, clock } = await setup(t);
  const x = await fakeNode(t);
  const y = await fakeNode(t);
  await sendAndSettle(relay, x, 'x1', port);
  clock.advance(3 * 60_000 + 1);
  await sendAndSettle(relay, y, 'y1', port);
  t.deepEqual(x.received, []);
  t.is(relay.stats()[0]?.packets, 0);
});

test('update keeps unchanged ports (and what they learned), closes removed ones, resets re-assigned ones', async (t) => {
  const { port, relay } = await setup(t);
  const other = await freeUdpPort();
  const x = await fakeNode(t);
  const y = await fakeNode(t);
  await sendAndSettle(relay, x, 'x1', port);
  await relay.update([assignment(port), assignment(other, 'p', 'q')]);
  await y.send('y1', port); // x was remembered across the update
  await expectMessage(x, 'y1');
  t.deepEqual(relay.stats().map((s) => s.port), [port, other].sort((a, b) => a - b));

  await relay.update([assignment(port, 'x', 'z')]); // same port, different pair: fresh learning
  t.deepEqual(relay.stats(), [{ port, between: ['x', 'z'], packets: 0, bytes: 0 }]);
  // The removed port is free again.
  const rebound = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    rebound.once('error', reject);
    rebound.bind(other, '127.0.0.1', resolve);
  });
  await new Promise<void>((resolve) => rebound.close(() => resolve()));
  t.pass();
});

test('a port that cannot be bound is reported; the others still open', async (t) => {
  const busy = await fakeNode(t);
  const free = await freeUdpPort();
  const relay = new RelayForwarder({ logger: silentLogger(), bindAddress: '127.0.0.1' });
  t.teardown(() => relay.close());
  const err = await t.throwsAsync(relay.update([assignment(busy.port), assignment(free, 'p', 'q')]));
  t.regex(err.message, new RegExp(`could not bind 1 port\\(s\\): port ${busy.port}: .*EADDRINUSE`));
  t.deepEqual(relay.stats().map((s) => s.port), [free]);
});

test('a new bind address (our advertised endpoint changed) re-opens the ports on it', async (t) => {
  const port = await freeUdpPort();
  const relay = new RelayForwarder({ logger: silentLogger(), bindAddress: '127.0.0.1' });
  t.teardown(() => relay.close());
  const bindable = async (address: string): Promise<boolean> => {
    const s = createSocket('udp4');
    const ok = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.bind(port, address, () => resolve(true));
    });
    await new Promise<void>((resolve) => s.close(() => resolve()));
    return ok;
  };
  await relay.update([assignment(port)]);
  t.false(await bindable('127.0.0.1'), 'bound on the default address');
  await relay.update([assignment(port)], { bindAddress: '127.0.0.2' });
  t.true(await bindable('127.0.0.1'), 'the old socket is closed');
  t.false(await bindable('127.0.0.2'), 'the port is open on the new address');
  t.deepEqual(relay.stats().map((s) => s.port), [port]);
});
