// Real data plane in network namespaces: wireguard-go per node, Dataplane driven by
// computeDesiredState, traffic checked with ping. Everything lives in per-run namespaces (prefix
// xldp + random id); wireguard-go is always stopped (SIGTERM, awaited) before its namespace goes.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createDataplane, type Dataplane, type DataplaneTarget } from '../agent/dataplane/dataplane.ts';
import { computeDesiredState } from '../agent/plan/desired-state.ts';
import type { DataplaneConfig, DesiredState, MeshView } from '../agent/plan/model.ts';
import { WIREGUARD_SOCKET_DIR } from '../agent/dataplane/wireguard-backend.ts';
import { silentLogger } from '../lib/logger.ts';
import { ProcessRunner } from '../lib/runner.ts';
import { waitFor } from '../lib/wait.ts';
import type { NodeRecord } from '../protocol/messages.ts';
import { generateWireguardKeyPair, type WireguardKeyPair } from '../protocol/signing.ts';

const root = new ProcessRunner();
const sh = (argv: string[]) => root.run(argv);
const inNs = (ns: string, argv: string[]) => root.run(['ip', 'netns', 'exec', ns, ...argv]);
const tryNs = (ns: string, argv: string[]) => root.run(['ip', 'netns', 'exec', ns, ...argv], { allowFailure: true });

interface Cleanup {
  namespaces: string[];
  dataplanes: Dataplane[];
  interfaces: string[];
  children: ChildProcess[];
}

/** Teardown in the only safe order: dataplanes (wireguard-go stopped and awaited), helpers, then namespaces. */
async function cleanUp(c: Cleanup): Promise<void> {
  for (const dp of c.dataplanes) await dp.teardown().catch(() => undefined);
  for (const child of c.children) await stopChild(child);
  // Safety net: a wireguard-go for one of OUR interfaces that somehow survived (matched by unique name, stopped by pid).
  for (const iface of c.interfaces) {
    const found = await root.run(['pgrep', '-f', `^wireguard-go -f ${iface}$`], { allowFailure: true });
    for (const pid of found.stdout.split('\n').filter(Boolean).map(Number)) {
      process.kill(pid, 'SIGTERM');
      await waitFor(() => !alive(pid), { timeoutMs: 20_000, what: `wireguard-go ${pid} exit` }).catch(() => undefined);
    }
  }
  for (const ns of c.namespaces) await root.run(['ip', 'netns', 'del', ns], { allowFailure: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  await waitFor(() => child.exitCode !== null || child.signalCode !== null, { timeoutMs: 10_000, what: 'helper exit' }).catch(() => {
    child.kill('SIGKILL');
  });
}

function record(name: string, cluster: string, keys: WireguardKeyPair, o: Partial<NodeRecord>): NodeRecord {
  return {
    kind: 'node', v: 1, name, cluster, location: cluster, publicKey: keys.publicKey, identityKey: keys.publicKey,
    endpoints: [], privateAddresses: [], podCidrs: [], listenPort: 51820, topology: 'mesh',
    // As the agent defaults: public nodes may carry others' traffic (relay, gateway).
    gatewayEligible: (o.endpoints ?? []).length > 0,
    overlayIp: '100.96.0.1', generation: 1, registeredAt: 1, updatedAt: 1, ...o,
  };
}

const meshView = (self: NodeRecord, all: NodeRecord[]): MeshView => ({
  self,
  nodes: new Map(all.map((n) => [n.name, n])),
  clusters: new Map(),
});

function config(iface: string): DataplaneConfig {
  return { interfaceName: iface, listenPort: 51820, mtu: 1420, natKeepaliveSec: 1, relayPortBase: 40000, relayPortSpan: 100 };
}

async function node(ns: string, iface: string, c: Cleanup): Promise<Dataplane> {
  const dp = await createDataplane({
    runner: new ProcessRunner(['ip', 'netns', 'exec', ns]),
    logger: silentLogger(),
    config: config(iface),
    wireguardMode: 'userspace',
    wireguardGoPrefix: ['ip', 'netns', 'exec', ns],
  });
  c.dataplanes.push(dp);
  return dp;
}

const target = (keys: WireguardKeyPair, desired: DesiredState): DataplaneTarget => ({ privateKey: keys.privateKey, interface: desired.interface, desired, advertisedEndpoints: [] });

async function bringUp(dp: Dataplane, keys: WireguardKeyPair, desired: DesiredState): Promise<void> {
  await dp.apply(target(keys, desired));
}

const pings = (ns: string, dst: string, src?: string) => () =>
  tryNs(ns, ['ping', '-c', '1', '-W', '1', ...(src ? ['-I', src] : []), dst]).then((r) => r.exitCode === 0);

test.serial('two nodes over real wireguard-go: overlay and pod reachable both ways, re-apply is a no-op, drift repaired, clean teardown', async (t) => {
  t.timeout(60_000);
  const id = randomBytes(3).toString('hex');
  const [nsA, nsB, nsPod] = [`xldpa${id}`, `xldpb${id}`, `xldpp${id}`];
  const [ifA, ifB] = [`xldwa${id}`, `xldwb${id}`];
  const c: Cleanup = { namespaces: [nsA, nsB, nsPod], dataplanes: [], interfaces: [ifA, ifB], children: [] };
  t.teardown(() => cleanUp(c));

  for (const ns of c.namespaces) {
    await sh(['ip', 'netns', 'add', ns]);
    await inNs(ns, ['ip', 'link', 'set', 'lo', 'up']);
  }
  // Underlay: A 192.0.2.1 ↔ B 192.0.2.2 (documentation range, only inside our namespaces).
  await inNs(nsA, ['ip', 'link', 'add', `xldua${id}`, 'type', 'veth', 'peer', 'name', `xldub${id}`, 'netns', nsB]);
  await inNs(nsA, ['ip', 'address', 'add', '192.0.2.1/24', 'dev', `xldua${id}`]);
  await inNs(nsA, ['ip', 'link', 'set', `xldua${id}`, 'up']);
  await inNs(nsB, ['ip', 'address', 'add', '192.0.2.2/24', 'dev', `xldub${id}`]);
  await inNs(nsB, ['ip', 'link', 'set', `xldub${id}`, 'up']);
  // A "pod" behind B: 10.201.2.2 in its own namespace, B is its gateway.
  await inNs(nsB, ['ip', 'link', 'add', `xldpb${id}`, 'type', 'veth', 'peer', 'name', `xldpp${id}`, 'netns', nsPod]);
  await inNs(nsB, ['ip', 'address', 'add', '10.201.2.1/24', 'dev', `xldpb${id}`]);
  await inNs(nsB, ['ip', 'link', 'set', `xldpb${id}`, 'up']);
  await inNs(nsPod, ['ip', 'address', 'add', '10.201.2.2/24', 'dev', `xldpp${id}`]);
  await inNs(nsPod, ['ip', 'link', 'set', `xldpp${id}`, 'up']);
  await inNs(nsPod, ['ip', 'route', 'add', 'default', 'via', '10.201.2.1']);

  const [keysA, keysB] = [await generateWireguardKeyPair(), await generateWireguardKeyPair()];
  const a = record('node-a', 'east', keysA, { endpoints: ['192.0.2.1:51820'], overlayIp: '100.96.0.1', podCidrs: ['10.201.1.0/24'] });
  const b = record('node-b', 'west', keysB, { endpoints: ['192.0.2.2:51820'], overlayIp: '100.96.0.2', podCidrs: ['10.201.2.0/24'] });
  const desiredA = computeDesiredState(meshView(a, [a, b]), config(ifA));
  const desiredB = computeDesiredState(meshView(b, [a, b]), config(ifB));

  const dpA = await node(nsA, ifA, c);
  const dpB = await node(nsB, ifB, c);
  t.is(dpA.backend, 'userspace');
  await bringUp(dpA, keysA, desiredA);
  await bringUp(dpB, keysB, desiredB);

  const opts = { timeoutMs: 15_000, intervalMs: 250 };
  await waitFor(pings(nsA, '100.96.0.2'), { ...opts, what: 'A → B overlay ping' });
  await waitFor(pings(nsB, '100.96.0.1'), { ...opts, what: 'B → A overlay ping' });
  await waitFor(pings(nsA, '10.201.2.2'), { ...opts, what: 'A → pod behind B' });
  await waitFor(pings(nsPod, '100.96.0.1'), { ...opts, what: 'pod behind B → A' });
  const peersA = await dpA.livePeers();
  t.is(peersA.length, 1);
  t.not(peersA[0]?.latestHandshakeAt, null);

  // Same desired state again (interface included): reads only.
  t.deepEqual((await dpA.apply(target(keysA, desiredA))).commands, []);
  t.deepEqual((await dpB.apply(target(keysB, desiredB))).commands, []);

  // Drift: someone deletes our route; the next apply puts exactly that one back.
  await inNs(nsA, ['ip', 'route', 'del', '10.201.2.0/24', 'proto', '149']);
  t.false(await pings(nsA, '10.201.2.2')());
  const repair = await dpA.apply(target(keysA, desiredA));
  t.deepEqual(repair.commands, [['ip', 'route', 'replace', '10.201.2.0/24', 'dev', ifA, 'proto', '149']]);
  await waitFor(pings(nsA, '10.201.2.2'), { ...opts, what: 'A → pod after repair' });

  // Teardown: no interface, no socket, no process, no route, no MSS rule.
  await dpA.teardown();
  t.false(existsSync(`${WIREGUARD_SOCKET_DIR}/${ifA}.sock`));
  t.not((await tryNs(nsA, ['ip', 'link', 'show', 'dev', ifA])).exitCode, 0);
  t.is((await root.run(['pgrep', '-f', `^wireguard-go -f ${ifA}$`], { allowFailure: true })).stdout.trim(), '');
  t.is((await inNs(nsA, ['ip', '-j', 'route', 'show', 'proto', '149'])).stdout.trim(), '[]');
  t.not((await tryNs(nsA, ['iptables', '-t', 'mangle', '-C', 'FORWARD', '-o', ifA, '-p', 'tcp', '--tcp-flags', 'SYN,RST', 'SYN', '-m', 'comment', '--comment', 'crosslink', '-j', 'TCPMSS', '--clamp-mss-to-pmtu'])).exitCode, 0);
});

const forwarderModule = fileURLToPath(new URL('../agent/dataplane/relay-forwarder.ts', import.meta.url));

/** Runs a RelayForwarder inside `ns` (a child node process: sockets bind in the namespace they are created in). */
async function relayProcess(ns: string, desired: DesiredState, c: Cleanup): Promise<ChildProcess> {
  const script = `
    const { RelayForwarder } = await import(${JSON.stringify(forwarderModule)});
    const { pino } = await import('pino');
    // Bound to the advertised address: a multi-homed relay bound to 0.0.0.0 would answer from
    // another source address and the peers' WireGuard would roam away from the relay endpoint.
    const relay = new RelayForwarder({ logger: pino({ level: 'silent' }), bindAddress: '203.0.113.1' });
    await relay.update(JSON.parse(process.argv[1]));
    process.on('SIGTERM', () => { relay.close().then(() => process.exit(0)); });
    console.log('ready');
    setInterval(() => {}, 1000);
  `;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', '--input-type=module', '-e', script, JSON.stringify(desired.relays)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: fileURLToPath(new URL('..', import.meta.url)),
  });
  c.children.push(child);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(() => out.includes('ready') || (child.exitCode !== null ? 'exited' : false), { timeoutMs: 20_000, what: 'relay forwarder ready' });
  if (!out.includes('ready')) throw new Error(`relay forwarder failed: ${out}`);
  return child;
}

test.serial('NAT ↔ NAT through a relay: end-to-end encrypted traffic forwarded by the relay node', async (t) => {
  t.timeout(60_000);
  const id = randomBytes(3).toString('hex');
  const [nsX, nsY, nsR] = [`xldpx${id}`, `xldpy${id}`, `xldpr${id}`];
  const [ifX, ifY] = [`xldwx${id}`, `xldwy${id}`];
  const c: Cleanup = { namespaces: [nsX, nsY, nsR], dataplanes: [], interfaces: [ifX, ifY], children: [] };
  t.teardown(() => cleanUp(c));

  for (const ns of c.namespaces) {
    await sh(['ip', 'netns', 'add', ns]);
    await inNs(ns, ['ip', 'link', 'set', 'lo', 'up']);
  }
  // X and Y only reach the relay's public address 203.0.113.1; R does not forward, so X and Y cannot reach each other.
  await inNs(nsR, ['ip', 'address', 'add', '203.0.113.1/32', 'dev', 'lo']);
  for (const [ns, side, net] of [[nsX, 'x', '192.0.2'], [nsY, 'y', '198.51.100']] as const) {
    await inNs(nsR, ['ip', 'link', 'add', `xldr${side}${id}`, 'type', 'veth', 'peer', 'name', `xldn${side}${id}`, 'netns', ns]);
    await inNs(nsR, ['ip', 'address', 'add', `${net}.1/24`, 'dev', `xldr${side}${id}`]);
    await inNs(nsR, ['ip', 'link', 'set', `xldr${side}${id}`, 'up']);
    await inNs(ns, ['ip', 'address', 'add', `${net}.10/24`, 'dev', `xldn${side}${id}`]);
    await inNs(ns, ['ip', 'link', 'set', `xldn${side}${id}`, 'up']);
    await inNs(ns, ['ip', 'route', 'add', '203.0.113.1/32', 'via', `${net}.1`]);
  }

  const [keysX, keysY, keysR] = [await generateWireguardKeyPair(), await generateWireguardKeyPair(), await generateWireguardKeyPair()];
  const x = record('node-x', 'east', keysX, { overlayIp: '100.96.0.11', podCidrs: ['10.202.1.0/24'] });
  const y = record('node-y', 'west', keysY, { overlayIp: '100.96.0.12', podCidrs: ['10.202.2.0/24'] });
  const r = record('node-r', 'hub', keysR, { endpoints: ['203.0.113.1:51820'], overlayIp: '100.96.0.13', podCidrs: ['10.202.3.0/24'] });
  const all = [x, y, r];
  const desiredX = computeDesiredState(meshView(x, all), config(ifX));
  const desiredY = computeDesiredState(meshView(y, all), config(ifY));
  const desiredR = computeDesiredState(meshView(r, all), config('unused'));
  const peerY = desiredX.peers.find((p) => p.node === 'node-y');
  t.is(peerY?.path, 'relay');
  t.is(peerY?.via, 'node-r');
  t.is(desiredR.relays.length, 1);
  t.is(peerY?.endpoint, `203.0.113.1:${desiredR.relays[0]?.port}`);

  await relayProcess(nsR, desiredR, c);
  const dpX = await node(nsX, ifX, c);
  const dpY = await node(nsY, ifY, c);
  await bringUp(dpX, keysX, desiredX);
  await bringUp(dpY, keysY, desiredY);

  await waitFor(pings(nsX, '100.96.0.12'), { timeoutMs: 20_000, intervalMs: 250, what: 'X → Y through the relay' });
  await waitFor(pings(nsY, '100.96.0.11'), { timeoutMs: 10_000, intervalMs: 250, what: 'Y → X through the relay' });
  // Both sides see each other at the relay's address: the relay never had their keys.
  const seenByX = (await dpX.livePeers()).find((p) => p.publicKey === keysY.publicKey);
  t.is(seenByX?.endpoint, peerY?.endpoint);
  t.not(seenByX?.latestHandshakeAt, null);
  // The endpoint stays what we configured, so the next reconcile has nothing to do (no flapping).
  t.deepEqual((await dpX.apply(target(keysX, desiredX))).commands, []);
});
