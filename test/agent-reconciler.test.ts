// The reconciler: fail-static without a view, serialised and coalesced runs, failures recorded
// (never thrown), relay updates with live-endpoint hints.
import test from 'ava';
import { Reconciler, type AgentRelay } from '../agent/reconciler.ts';
import type { DataplaneConfig, DesiredInterface, DesiredState, MeshView, RelayAssignment } from '../agent/plan/model.ts';
import type { RelayStats } from '../agent/dataplane/relay-forwarder.ts';
import { systemClock } from '../lib/clock.ts';
import { PartialFailureError } from '../lib/errors.ts';
import { silentLogger } from '../lib/logger.ts';
import { FakeDataplane, nodeRecord } from './agent-helpers.ts';

const CONFIG: DataplaneConfig = { interfaceName: 'xltest0', listenPort: 51820, mtu: 1420, natKeepaliveSec: 25, relayPortBase: 52000, relayPortSpan: 10 };
const NO_VIEW_IF: DesiredInterface = { name: 'xltest0', listenPort: 51820, mtu: 1420, addresses: ['100.96.0.9/32'] };
const KEY = 'K'.repeat(43) + '=';

function desiredFor(view: MeshView): DesiredState {
  const relays: RelayAssignment[] = view.self.name === 'relay' ? [{ port: 52001, a: { node: 'x', publicKey: KEY }, b: { node: 'y', publicKey: KEY } }] : [];
  return {
    interface: { ...NO_VIEW_IF, addresses: [`${view.self.overlayIp}/32`] },
    peers: [],
    routes: [],
    relays,
    refused: [],
    remotes: [],
    isGateway: false,
  };
}

class FakeRelay implements AgentRelay {
  readonly updates: { assignments: readonly RelayAssignment[]; hints: ReadonlyMap<string, string> | undefined }[] = [];
  fail = false;
  update(assignments: readonly RelayAssignment[], hints?: ReadonlyMap<string, string>): Promise<void> {
    this.updates.push({ assignments, hints });
    return this.fail ? Promise.reject(new Error('port 52001: EADDRINUSE')) : Promise.resolve();
  }
  stats(): readonly RelayStats[] {
    return [];
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function setup(opts: { view?: MeshView; relay?: FakeRelay } = {}) {
  const dataplane = new FakeDataplane();
  let view = opts.view;
  const reconciler = new Reconciler({
    dataplane,
    relay: opts.relay ?? null,
    dataplaneConfig: CONFIG,
    privateKey: 'secret',
    view: () => view,
    interfaceWithoutView: () => NO_VIEW_IF,
    computeDesiredState: desiredFor,
    clock: systemClock,
    logger: silentLogger(),
  });
  return { dataplane, reconciler, setView: (v: MeshView | undefined) => (view = v) };
}

async function viewOf(name = 'node-a'): Promise<MeshView> {
  const self = await nodeRecord({ name, overlayIp: '100.96.0.1' });
  return { self, nodes: new Map([[name, self]]), clusters: new Map() };
}

test('without a view: ensures the interface (keeping the last overlay IP) and applies nothing', async (t) => {
  const { dataplane, reconciler } = setup();
  const r = await reconciler.reconcileNow('start');
  t.deepEqual(dataplane.interfaces, [NO_VIEW_IF]);
  t.is(dataplane.applied.length, 0);
  t.like(r, { ok: true, applied: false, changes: 0, reasons: ['start'] });
  t.false(reconciler.applied);
  t.is(reconciler.desired(), null);
});

test('with a view: interface from the desired state, then apply', async (t) => {
  const { dataplane, reconciler } = setup({ view: await viewOf() });
  const r = await reconciler.reconcileNow('mesh changed');
  t.deepEqual(dataplane.interfaces.map((i) => i.addresses), [['100.96.0.1/32']]);
  t.is(dataplane.applied.length, 1);
  t.like(r, { ok: true, applied: true, changes: 1 });
  t.true(reconciler.applied);
  t.truthy(reconciler.desired());
});

test('requests during a run coalesce into one more run', async (t) => {
  const { dataplane, reconciler } = setup({ view: await viewOf() });
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  const apply = dataplane.apply.bind(dataplane);
  let running = 0;
  let maxRunning = 0;
  dataplane.apply = async (d) => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    await gate;
    running--;
    return apply(d);
  };
  reconciler.request('a');
  for (const reason of ['b', 'c', 'd', 'c']) reconciler.request(reason);
  const last = reconciler.reconcileNow('e');
  release();
  const r = await last;
  t.is(dataplane.applied.length, 2, 'one run plus one coalesced run');
  t.is(maxRunning, 1, 'never two at once');
  t.deepEqual([...(r?.reasons ?? [])].sort(), ['b', 'c', 'd', 'e']);
});

test('a partial failure is recorded, not thrown, and the next run starts clean', async (t) => {
  const { dataplane, reconciler } = setup({ view: await viewOf() });
  dataplane.failNext = new PartialFailureError([{ op: 'add route', error: new Error('RTNETLINK answers: File exists') }]);
  const r1 = await reconciler.reconcileNow('first');
  t.like(r1, { ok: false, applied: false, error: '1 add route failure; first was: RTNETLINK answers: File exists' });
  t.false(reconciler.applied);
  const r2 = await reconciler.reconcileNow('second');
  t.like(r2, { ok: true, applied: true, error: null });
  t.true(reconciler.applied);
});

test('an unexpected error (interface cannot be created) is recorded too', async (t) => {
  const { dataplane, reconciler } = setup({ view: await viewOf() });
  dataplane.ensureInterface = () => Promise.reject(new Error('wireguard-go: exit 1'));
  const r = await reconciler.reconcileNow('x');
  t.like(r, { ok: false, applied: false, error: 'wireguard-go: exit 1' });
  t.is(dataplane.applied.length, 0);
});

test('relay: assignments with hints from live WireGuard endpoints; bind failures recorded', async (t) => {
  const relay = new FakeRelay();
  const { dataplane, reconciler } = setup({ view: await viewOf('relay'), relay });
  dataplane.live = [
    { publicKey: KEY, endpoint: '203.0.113.5:4500', allowedIps: [], latestHandshakeAt: null, rxBytes: 0, txBytes: 0, persistentKeepalive: 0, hasPresharedKey: false },
  ];
  await reconciler.reconcileNow('x');
  t.is(relay.updates.length, 1);
  t.is(relay.updates[0]?.assignments.length, 1);
  t.deepEqual([...(relay.updates[0]?.hints ?? new Map())], [[KEY, '203.0.113.5']]);

  relay.fail = true;
  const r = await reconciler.reconcileNow('y');
  t.like(r, { ok: false, applied: false });
  t.regex(r?.error ?? '', /^relay: port 52001: EADDRINUSE/);
});

test('stop waits for the run in flight and ignores later requests', async (t) => {
  const { dataplane, reconciler } = setup({ view: await viewOf() });
  reconciler.request('a');
  await reconciler.stop();
  t.is(dataplane.applied.length, 1);
  reconciler.request('after stop');
  await new Promise((r) => setTimeout(r, 20));
  t.is(dataplane.applied.length, 1);
});
