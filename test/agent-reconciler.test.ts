// The reconciler: inputs pushed in as data (snapshot, own record, key), fail-static without a
// complete view, ONE Dataplane.apply per run with one target, serialised and coalesced runs that
// use the newest inputs, failures recorded (never thrown).
import test from 'ava';
import { Reconciler, type ReconcileInputs } from '../agent/reconciler.ts';
import type { DataplaneConfig, DesiredInterface, DesiredState, MeshSnapshot, MeshView } from '../agent/plan/model.ts';
import { frozenMap } from '../lib/frozen-map.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { settlesWithin } from '../lib/child-process.ts';
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';
import { FakeDataplane, applyFailure, nodeRecord } from './agent-helpers.ts';

const CONFIG: DataplaneConfig = { interfaceName: 'xltest0', listenPort: 51820, mtu: 1420, natKeepaliveSec: 25, relayPortBase: 52000, relayPortSpan: 10 };
const NO_VIEW_IF: DesiredInterface = { name: 'xltest0', listenPort: 51820, mtu: 1420, addresses: ['100.96.0.9/32'] };

/** A desired state that shows what it was computed from: one peer per other node. */
function desiredFor(view: MeshView): DesiredState {
  const others = [...view.nodes.values()].filter((n) => n.name !== view.self.name);
  return {
    interface: { ...NO_VIEW_IF, addresses: [`${view.self.overlayIp}/32`] },
    peers: others.map((n) => ({ publicKey: n.publicKey, endpoint: null, allowedIps: [], persistentKeepalive: 0, node: n.name, cluster: n.cluster, path: 'direct', via: null, carries: [n.name] })),
    routes: [],
    relays: [],
    refused: [],
    remotes: [],
    isGateway: false,
  };
}

function snapshot(nodes: readonly NodeRecord[], revision: number, complete = true): MeshSnapshot {
  return Object.freeze({ nodes: frozenMap(nodes.map((n) => [n.name, n] as const)), clusters: frozenMap<string, ClusterRecord>([]), revision, complete });
}

function setup(inputs: Partial<ReconcileInputs> = {}) {
  const dataplane = new FakeDataplane();
  const reconciler = new Reconciler({
    dataplane,
    dataplaneConfig: CONFIG,
    inputs: { mesh: null, self: null, privateKey: 'secret', cachedOverlayIp: '100.96.0.9', ...inputs },
    computeDesiredState: desiredFor,
    clock: systemClock,
    logger: silentLogger(),
  });
  return { dataplane, reconciler };
}

async function viewInputs(name = 'node-a'): Promise<Pick<ReconcileInputs, 'self' | 'mesh'>> {
  const self = await nodeRecord({ name, overlayIp: '100.96.0.1' });
  return { self, mesh: snapshot([self], 7) };
}

const peerNames = (d: DesiredState | undefined): string[] => (d?.peers ?? []).map((p) => p.node);

test('without a view: one apply that ensures the interface (keeping the cached overlay IP) and nothing else', async (t) => {
  const { dataplane, reconciler } = setup();
  const r = await reconciler.reconcileNow('start');
  t.is(dataplane.targets.length, 1);
  t.like(dataplane.targets[0], { privateKey: 'secret', interface: NO_VIEW_IF, desired: null });
  t.like(r, { ok: true, applied: false, interfaceEnsured: true, changes: 0, reasons: ['start'], revision: 0 });
  t.false(reconciler.applied);
  t.is(reconciler.desired(), null);
});

test('registered but the snapshot is incomplete: still fail-static, with our own overlay IP', async (t) => {
  const { self } = await viewInputs();
  const { dataplane, reconciler } = setup({ self, mesh: snapshot([], 3, false) });
  await reconciler.reconcileNow('x');
  t.like(dataplane.targets[0], { desired: null, interface: { ...NO_VIEW_IF, addresses: ['100.96.0.1/32'] } });
});

test('with a view: ONE apply carries interface, desired state, key and our advertised endpoints', async (t) => {
  const { dataplane, reconciler } = setup(await viewInputs());
  const r = await reconciler.reconcileNow('mesh changed');
  t.is(dataplane.targets.length, 1);
  const target = dataplane.targets[0];
  t.deepEqual(target?.interface.addresses, ['100.96.0.1/32']);
  t.is(target?.interface, target?.desired?.interface);
  t.deepEqual(target?.advertisedEndpoints, ['192.0.2.10:51820']);
  t.is(target?.privateKey, 'secret');
  t.like(r, { ok: true, applied: true, changes: 1, revision: 7 });
  t.true(reconciler.applied);
  t.is(reconciler.desired(), target?.desired ?? null);
});

test('pushed inputs: a new snapshot, a new record and a new key each reach the next apply as data', async (t) => {
  const { self, mesh } = await viewInputs();
  const { dataplane, reconciler } = setup({ self, mesh });
  await reconciler.reconcileNow('start');
  t.deepEqual(peerNames(dataplane.last()), []);

  const b = await nodeRecord({ name: 'node-b', overlayIp: '100.96.0.2' });
  if (!self) throw new Error('fixture');
  reconciler.update({ mesh: snapshot([self, b], 8) }, 'mesh changed');
  const r = await reconciler.reconcileNow('wait');
  t.deepEqual(peerNames(dataplane.last()), ['node-b']);
  t.is(r?.revision, 8);

  await reconciler.reconcileNow('re-registered', { self: { ...self, overlayIp: '100.96.0.77' } });
  t.deepEqual(dataplane.last()?.interface.addresses, ['100.96.0.77/32']);

  await reconciler.reconcileNow('key rotated', { privateKey: 'new-secret' });
  t.is(dataplane.targets.at(-1)?.privateKey, 'new-secret');
});

test('the snapshot handed over is immutable: nobody can change what the reconciler plans from', async (t) => {
  const { mesh } = await viewInputs();
  const nodes = mesh?.nodes as Map<string, NodeRecord>;
  t.throws(() => nodes.set('x', {} as NodeRecord), { instanceOf: TypeError });
  t.throws(() => nodes.delete('node-a'), { instanceOf: TypeError });
  t.true(Object.isFrozen(mesh));
});

test('requests during a run coalesce into one more run, which uses the newest inputs', async (t) => {
  const { self, mesh } = await viewInputs();
  const { dataplane, reconciler } = setup({ self, mesh });
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  let entered: () => void = () => undefined;
  const inFirst = new Promise<void>((r) => (entered = r));
  const apply = dataplane.apply.bind(dataplane);
  let running = 0;
  let maxRunning = 0;
  dataplane.apply = async (target) => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    entered();
    await gate;
    running--;
    return apply(target);
  };
  reconciler.request('a');
  await inFirst;
  const b = await nodeRecord({ name: 'node-b' });
  if (!self) throw new Error('fixture');
  for (const reason of ['b', 'c', 'd', 'c']) reconciler.request(reason);
  reconciler.update({ mesh: snapshot([self, b], 9) }, 'mesh changed');
  const last = reconciler.reconcileNow('e');
  release();
  const r = await last;
  t.is(dataplane.targets.length, 2, 'one run plus one coalesced run');
  t.is(maxRunning, 1, 'never two at once');
  t.deepEqual([...(r?.reasons ?? [])].sort(), ['b', 'c', 'd', 'e', 'mesh changed']);
  t.deepEqual(peerNames(dataplane.last()), ['node-b']);
});

test('inputs pushed in the same turn make one run', async (t) => {
  const { self, mesh } = await viewInputs();
  const { dataplane, reconciler } = setup();
  reconciler.update({ mesh }, 'mesh changed');
  const r = await reconciler.reconcileNow('own record', { self });
  t.is(dataplane.targets.length, 1);
  t.deepEqual([...(r?.reasons ?? [])].sort(), ['mesh changed', 'own record']);
});

test('a partial failure is recorded, not thrown, and the next run starts clean', async (t) => {
  const { dataplane, reconciler } = setup(await viewInputs());
  dataplane.failNext = applyFailure({ op: 'add route', message: 'RTNETLINK answers: File exists' });
  const r1 = await reconciler.reconcileNow('first');
  t.like(r1, { ok: false, applied: false, interfaceEnsured: true, error: '1 add route failure; first was: RTNETLINK answers: File exists' });
  t.false(reconciler.applied);
  const r2 = await reconciler.reconcileNow('second');
  t.like(r2, { ok: true, applied: true, error: null });
  t.true(reconciler.applied);
});

test('a relay port that cannot bind is a failure of the one apply', async (t) => {
  const { dataplane, reconciler } = setup(await viewInputs());
  dataplane.failNext = applyFailure({ op: 'relay', message: 'relay forwarder could not bind 1 port(s): port 52001: EADDRINUSE' });
  const r = await reconciler.reconcileNow('x');
  t.like(r, { ok: false, applied: false, interfaceEnsured: true });
  t.regex(r?.error ?? '', /1 relay failure; first was: .*port 52001: EADDRINUSE/);
});

test('an unexpected error (interface cannot be created) is recorded too', async (t) => {
  const { dataplane, reconciler } = setup(await viewInputs());
  dataplane.failNext = new Error('wireguard-go: exit 1');
  const r = await reconciler.reconcileNow('x');
  t.like(r, { ok: false, applied: false, interfaceEnsured: false, error: 'wireguard-go: exit 1' });
  t.is(dataplane.applied.length, 0);
});

test('every result is pushed to onResult listeners', async (t) => {
  const { reconciler } = setup(await viewInputs());
  const seen: boolean[] = [];
  const off = reconciler.onResult((r) => seen.push(r.applied));
  await reconciler.reconcileNow('a');
  off();
  await reconciler.reconcileNow('b');
  t.deepEqual(seen, [true]);
});

test('stop waits for the run in flight and ignores later requests', async (t) => {
  const { dataplane, reconciler } = setup(await viewInputs());
  reconciler.request('a');
  await reconciler.stop();
  t.is(dataplane.applied.length, 1);
  reconciler.request('after stop');
  await new Promise((r) => setImmediate(r));
  t.is(dataplane.applied.length, 1);
});

test('the interface-only start reads the host beside its apply; the first view (an update) reads nothing again and gets that read\'s routes', async (t) => {
  const { self, mesh } = await viewInputs();
  if (!self || !mesh) throw new Error('fixture');
  const dataplane = new FakeDataplane();
  let hostReads = 0;
  const reconciler = new Reconciler({
    dataplane,
    dataplaneConfig: CONFIG,
    inputs: { mesh: null, self, privateKey: 'secret', cachedOverlayIp: null },
    computeDesiredState: desiredFor,
    readHost: () => {
      hostReads++;
      return Promise.resolve({ facts: { addresses: [], routes: [], natsAddresses: [] }, routes: [{ dst: '10.9.0.0/24', dev: 'eth0', via: null, metric: 0, protocol: 'kernel', scope: 'link' }] });
    },
    clock: systemClock,
    logger: silentLogger(),
  });
  await reconciler.reconcileNow('start');
  t.is(dataplane.targets[0]?.desired, null);
  t.is(hostReads, 1, 'no view yet, but the host is read ahead of it, during the start');
  reconciler.update({ mesh }, 'mesh changed');
  await waitFor(() => dataplane.targets.length >= 2, { timeoutMs: 10_000, intervalMs: 5, what: 'the first view\'s apply' });
  const target = dataplane.targets[1];
  t.is(hostReads, 1, 'the first view does not read the host again');
  t.is(target?.readLive, false, 'change-driven');
  t.deepEqual(target?.liveRoutes?.map((r) => r.dst), ['10.9.0.0/24'], 'the routes the start\'s host read saw go to the apply');
  // Only once: the next change-driven run trusts the data plane's model of what it applied.
  reconciler.update({ mesh: snapshot([self, await nodeRecord({ name: 'node-b', overlayIp: '100.96.0.2' })], 8) }, 'mesh changed');
  await waitFor(() => dataplane.targets.length >= 3, { timeoutMs: 10_000, intervalMs: 5, what: 'the second view\'s apply' });
  t.is(dataplane.targets[2]?.liveRoutes, undefined);
  t.is(hostReads, 1);
});

test('a failing host read during the start fails nothing: the first view reads the host then', async (t) => {
  const { self, mesh } = await viewInputs();
  if (!self || !mesh) throw new Error('fixture');
  const dataplane = new FakeDataplane();
  let hostReads = 0;
  const reconciler = new Reconciler({
    dataplane,
    dataplaneConfig: CONFIG,
    inputs: { mesh: null, self, privateKey: 'secret', cachedOverlayIp: null },
    computeDesiredState: desiredFor,
    readHost: () => {
      hostReads++;
      if (hostReads === 1) return Promise.reject(new Error('ip: cannot open netlink socket'));
      return Promise.resolve({ facts: { addresses: [], routes: [], natsAddresses: [] }, routes: [{ dst: '10.9.2.0/24', dev: 'eth0', via: null, metric: 0, protocol: 'kernel', scope: 'link' }] });
    },
    clock: systemClock,
    logger: silentLogger(),
  });
  const start = await reconciler.reconcileNow('start');
  t.like(start, { ok: true, interfaceEnsured: true });
  reconciler.update({ mesh }, 'mesh changed');
  await waitFor(() => dataplane.targets.length >= 2, { timeoutMs: 10_000, intervalMs: 5, what: 'the first view\'s apply' });
  t.is(hostReads, 2, 'read by the first view');
  t.deepEqual(dataplane.targets[1]?.liveRoutes?.map((r) => r.dst), ['10.9.2.0/24']);
});

test('change-driven runs (update only) reuse the host facts and ask the data plane not to re-read; requests and failures make full runs', async (t) => {
  const { self, mesh } = await viewInputs();
  if (!self || !mesh) throw new Error('fixture');
  const dataplane = new FakeDataplane();
  let hostReads = 0;
  const reconciler = new Reconciler({
    dataplane,
    dataplaneConfig: CONFIG,
    inputs: { mesh, self, privateKey: 'secret', cachedOverlayIp: null },
    computeDesiredState: desiredFor,
    readHost: () => {
      hostReads++;
      // The tables as this read saw them: the apply of the same run diffs against them.
      return Promise.resolve({ facts: { addresses: [], routes: [], natsAddresses: [] }, routes: [{ dst: `10.9.${hostReads}.0/24`, dev: 'eth0', via: null, metric: 0, protocol: 'kernel', scope: 'link' }] });
    },
    clock: systemClock,
    logger: silentLogger(),
  });
  const settle = async (): Promise<void> => {
    await waitFor(() => reconciler.lastReconcile()?.revision === reconciler.current().mesh?.revision, { timeoutMs: 10_000, intervalMs: 5, what: 'a run of the latest view' });
  };
  const readLiveOf = (i: number): boolean => dataplane.targets[i]?.readLive !== false;

  await reconciler.reconcileNow('start');
  t.true(readLiveOf(0), 'the first run reads');
  t.deepEqual(dataplane.targets[0]?.liveRoutes?.map((r) => r.dst), ['10.9.1.0/24'], 'the host read\'s route tables go to the apply of the same run');
  const b = await nodeRecord({ name: 'node-b', overlayIp: '100.96.0.2' });
  reconciler.update({ mesh: snapshot([self, b], 8) }, 'mesh changed');
  await settle();
  t.is(dataplane.targets.length, 2);
  t.false(readLiveOf(1), 'a join after a successful run is change-driven');
  t.is(dataplane.targets[1]?.liveRoutes, undefined, 'a change-driven run hands over no (stale) route read');
  t.is(hostReads, 1, 'host facts reused');

  reconciler.request('resync');
  await reconciler.reconcileNow('resync');
  t.true(readLiveOf(dataplane.targets.length - 1), 'the resync reads');
  t.is(hostReads, 2);
  t.deepEqual(dataplane.targets.at(-1)?.liveRoutes?.map((r) => r.dst), ['10.9.2.0/24'], 'the resync diffs against its own read, not the first one');

  dataplane.failNext = applyFailure({ op: 'add route', message: 'RTNETLINK answers: File exists' });
  reconciler.update({ mesh: snapshot([self], 9) }, 'mesh changed');
  await settle();
  t.false(readLiveOf(dataplane.targets.length - 1));
  reconciler.update({ mesh: snapshot([self, b], 10) }, 'mesh changed');
  await settle();
  t.true(readLiveOf(dataplane.targets.length - 1), 'after a failure the next run reads, even a change-driven one');
  t.is(hostReads, 3);
});

test('start-up cost: the start\'s host read runs beside its interface-only apply, not after it', async (t) => {
  const { self } = await viewInputs();
  const dataplane = new FakeDataplane();
  let hostReadStarted = (): void => undefined;
  const hostRead = new Promise<void>((resolve) => (hostReadStarted = resolve));
  // The apply finishes only once the host read has started: a reconciler that reads after the apply never gets there.
  const apply = dataplane.apply.bind(dataplane);
  dataplane.apply = async (target) => {
    const started = await settlesWithin(hostRead, 5000);
    if (!started) throw new Error('the host read did not start while the apply was in flight');
    return apply(target);
  };
  const reconciler = new Reconciler({
    dataplane,
    dataplaneConfig: CONFIG,
    inputs: { mesh: null, self, privateKey: 'secret', cachedOverlayIp: null },
    computeDesiredState: desiredFor,
    readHost: () => {
      hostReadStarted();
      return Promise.resolve({ facts: { addresses: [], routes: [], natsAddresses: [] }, routes: [] });
    },
    clock: systemClock,
    logger: silentLogger(),
  });
  const r = await reconciler.reconcileNow('start');
  t.like(r, { ok: true, interfaceEnsured: true, error: null });
});
