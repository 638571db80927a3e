// Self-healing on a real data plane (wireguard-go, iproute2, a NAT router; every namespace ours,
// prefix xlsh + random id). Public node P and NATed node N (behind masquerading router R). P's data
// plane runs the netlink monitor; the test wires onDrift/onRestart to a re-apply exactly as the
// agent does (agent/agent.ts). Checked on real packets:
//   - wireguard-go on P killed: it is restarted, P re-adds N at the endpoint it had learned (N has
//     none in its record), so P reaches N again without waiting for N to re-key (~2 min);
//   - our route deleted by hand and the MTU changed by hand are repaired from the netlink event
//     alone (the test never calls apply for them).
// Bounds are generous deadlines only; the measured times are logged (docs/benchmarks.md).
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { createDataplane, type LinuxDataplaneHandle, type DataplaneTarget } from '../agent/dataplane/dataplane.ts';
import { computeDesiredState } from '../agent/plan/desired-state.ts';
import type { DataplaneConfig, MeshView } from '../agent/plan/model.ts';
import { silentLogger } from '../lib/logger.ts';
import { ProcessRunner, type Runner, type RunOptions, type RunResult } from '../lib/runner.ts';
import { waitFor } from '../lib/wait.ts';
import type { NodeRecord } from '../protocol/messages.ts';
import { generateWireguardKeyPair, type WireguardKeyPair } from '../protocol/signing.ts';

const root = new ProcessRunner();
const inNs = (ns: string, argv: string[], input?: string) => root.run(['ip', 'netns', 'exec', ns, ...argv], input === undefined ? {} : { input });
const tryNs = (ns: string, argv: string[]) => root.run(['ip', 'netns', 'exec', ns, ...argv], { allowFailure: true });
const pings = (ns: string, dst: string) => () => tryNs(ns, ['ping', '-c', '1', '-W', '1', dst]).then((r) => r.exitCode === 0);

/** Counts mutating commands (the idle cost: reads are free to repeat, writes must not be). */
class CountingRunner implements Runner {
  writes: string[] = [];
  constructor(private readonly inner: Runner) {}
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    const line = argv.join(' ');
    if (!/^(wg show|ip -j|ip -d|sysctl -n|iptables -t mangle -C|ip6tables -t mangle -C)/.test(line)) this.writes.push(line);
    return this.inner.run(argv, options);
  }
}

function record(name: string, keys: WireguardKeyPair, o: Partial<NodeRecord>): NodeRecord {
  return {
    kind: 'node', v: 1, name, cluster: name, location: name, publicKey: keys.publicKey, identityKey: keys.publicKey,
    endpoints: [], privateAddresses: [], podCidrs: [], listenPort: 51820, topology: 'mesh',
    gatewayEligible: (o.endpoints ?? []).length > 0, overlayIp: '100.96.0.1', generation: 1, registeredAt: 1, updatedAt: 1, ...o,
  };
}

const config = (iface: string): DataplaneConfig => ({ interfaceName: iface, listenPort: 51820, mtu: 1420, natKeepaliveSec: 1, relayPortBase: 40000, relayPortSpan: 100 });

test.serial('self-healing: wireguard-go restart re-reaches a NATed peer; a deleted route and a changed MTU are repaired from netlink events', async (t) => {
  t.timeout(120_000);
  const id = randomBytes(3).toString('hex');
  const [nsP, nsN, nsR] = [`xlshp${id}`, `xlshn${id}`, `xlshr${id}`];
  const [ifP, ifN] = [`xlshwp${id}`, `xlshwn${id}`];
  const dataplanes: LinuxDataplaneHandle[] = [];
  t.teardown(async () => {
    // wireguard-go is stopped and awaited (teardown) before its namespace goes.
    for (const dp of dataplanes) await dp.teardown().catch(() => undefined);
    for (const ns of [nsP, nsN, nsR]) await root.run(['ip', 'netns', 'del', ns], { allowFailure: true });
  });
  for (const ns of [nsP, nsN, nsR]) {
    await root.run(['ip', 'netns', 'add', ns]);
    await inNs(ns, ['ip', 'link', 'set', 'lo', 'up']);
  }
  // P 192.0.2.1 ── R 192.0.2.254 | R 10.77.0.1 ── N 10.77.0.2 (N masqueraded behind 192.0.2.254).
  await inNs(nsR, ['ip', 'link', 'add', `xlshrp${id}`, 'type', 'veth', 'peer', 'name', `xlshpr${id}`, 'netns', nsP]);
  await inNs(nsR, ['ip', 'link', 'add', `xlshrn${id}`, 'type', 'veth', 'peer', 'name', `xlshnr${id}`, 'netns', nsN]);
  await inNs(nsR, ['ip', 'address', 'add', '192.0.2.254/24', 'dev', `xlshrp${id}`]);
  await inNs(nsR, ['ip', 'address', 'add', '10.77.0.1/24', 'dev', `xlshrn${id}`]);
  await inNs(nsP, ['ip', 'address', 'add', '192.0.2.1/24', 'dev', `xlshpr${id}`]);
  await inNs(nsN, ['ip', 'address', 'add', '10.77.0.2/24', 'dev', `xlshnr${id}`]);
  for (const [ns, dev] of [[nsR, `xlshrp${id}`], [nsR, `xlshrn${id}`], [nsP, `xlshpr${id}`], [nsN, `xlshnr${id}`]] as const) await inNs(ns, ['ip', 'link', 'set', dev, 'up']);
  await inNs(nsN, ['ip', 'route', 'add', 'default', 'via', '10.77.0.1']);
  await inNs(nsR, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  await inNs(nsR, ['iptables-restore'], `*nat\n-A POSTROUTING -s 10.77.0.0/24 -o xlshrp${id} -j MASQUERADE\nCOMMIT\n`);

  const [keysP, keysN] = [await generateWireguardKeyPair(), await generateWireguardKeyPair()];
  const p = record('node-p', keysP, { endpoints: ['192.0.2.1:51820'], overlayIp: '100.96.0.1', podCidrs: ['10.201.1.0/24'] });
  const n = record('node-n', keysN, { overlayIp: '100.96.0.2', podCidrs: ['10.201.2.0/24'] });
  const view = (self: NodeRecord): MeshView => ({ self, nodes: new Map([p, n].map((x) => [x.name, x])), clusters: new Map() });
  const desiredP = computeDesiredState(view(p), config(ifP));
  const desiredN = computeDesiredState(view(n), config(ifN));
  t.is(desiredP.peers[0]?.endpoint, null, 'P has no endpoint for the NATed N: it must learn it');
  const targetP: DataplaneTarget = { privateKey: keysP.privateKey, interface: desiredP.interface, desired: desiredP, advertisedEndpoints: [] };
  const targetN: DataplaneTarget = { privateKey: keysN.privateKey, interface: desiredN.interface, desired: desiredN, advertisedEndpoints: [] };

  const runnerP = new CountingRunner(new ProcessRunner(['ip', 'netns', 'exec', nsP]));
  const dpP = await createDataplane({ runner: runnerP, logger: silentLogger(), config: config(ifP), wireguardMode: 'userspace', wireguardGoPrefix: ['ip', 'netns', 'exec', nsP], monitorPrefix: ['ip', 'netns', 'exec', nsP] });
  dataplanes.push(dpP);
  const dpN = await createDataplane({ runner: new ProcessRunner(['ip', 'netns', 'exec', nsN]), logger: silentLogger(), config: config(ifN), wireguardMode: 'userspace', wireguardGoPrefix: ['ip', 'netns', 'exec', nsN] });
  dataplanes.push(dpN);
  // As the agent: a netlink event or an empty interface asks for a re-apply.
  const repairs: string[] = [];
  /** N's endpoint on P right after the re-apply that followed the restart (before N could re-key). */
  let endpointAfterRestart: string | null | undefined;
  const reapply = (why: string): Promise<void> => {
    repairs.push(why);
    return dpP.apply(targetP).then(
      () => undefined,
      (err: unknown) => void repairs.push(`apply failed: ${String(err)}`),
    );
  };
  dpP.onDrift((reason) => void reapply(`drift: ${reason}`));
  dpP.onRestart(() => {
    void reapply('wireguard restarted').then(async () => {
      endpointAfterRestart = (await dpP.livePeers()).find((x) => x.publicKey === keysN.publicKey)?.endpoint ?? null;
    });
  });
  await dpP.apply(targetP);
  await dpN.apply(targetN);

  const opts = { timeoutMs: 20_000, intervalMs: 100 };
  await waitFor(pings(nsN, '100.96.0.1'), { ...opts, what: 'N → P' });
  await waitFor(pings(nsP, '100.96.0.2'), { ...opts, what: 'P → N (P learned N’s mapped endpoint)' });
  const learned = (await dpP.livePeers()).find((x) => x.publicKey === keysN.publicKey)?.endpoint;
  t.regex(learned ?? '', /^192\.0\.2\.254:\d+$/, 'P sees N at the NAT router');

  // 1. wireguard-go on P dies (found by its unique interface name, stopped by pid).
  const pid = Number((await root.run(['pgrep', '-f', `^wireguard-go -f ${ifP}$`])).stdout.trim().split('\n')[0]);
  t.true(pid > 0);
  const killedAt = Date.now();
  process.kill(pid, 'SIGTERM');
  await waitFor(() => dpP.generation >= 2, { ...opts, what: 'wireguard-go restarted' });
  await waitFor(pings(nsP, '100.96.0.2'), { ...opts, what: 'P → N after the restart' });
  const restartMs = Date.now() - killedAt;
  await waitFor(() => endpointAfterRestart !== undefined, { ...opts, what: 're-apply after the restart' });
  t.is(endpointAfterRestart, learned, 'N re-added at its remembered endpoint by the re-apply itself');
  t.true(repairs.includes('wireguard restarted'));

  // 2. Our route to N's pods deleted by hand: back from the netlink event alone.
  const routeBack = async (): Promise<boolean> => (JSON.parse((await inNs(nsP, ['ip', '-j', 'route', 'show', '10.201.2.0/24', 'proto', '149'])).stdout || '[]') as unknown[]).length === 1;
  t.true(await routeBack());
  let at = Date.now();
  await inNs(nsP, ['ip', 'route', 'del', '10.201.2.0/24', 'proto', '149']);
  await waitFor(routeBack, { ...opts, intervalMs: 50, what: 'deleted route repaired' });
  const routeMs = Date.now() - at;
  t.true(repairs.some((r) => r.startsWith('drift: route deleted: 10.201.2.0/24')), repairs.join('\n'));

  // 3. The MTU changed by hand: set back.
  const mtu = async (): Promise<number> => (JSON.parse((await inNs(nsP, ['ip', '-j', 'link', 'show', 'dev', ifP])).stdout) as { mtu: number }[])[0]?.mtu ?? 0;
  at = Date.now();
  await inNs(nsP, ['ip', 'link', 'set', 'dev', ifP, 'mtu', '1280']);
  await waitFor(async () => (await mtu()) === 1420, { ...opts, intervalMs: 50, what: 'MTU repaired' });
  const mtuMs = Date.now() - at;
  await waitFor(pings(nsP, '100.96.0.2'), { ...opts, what: 'P → N after the repairs' });

  // Our own repairs raised events too; the re-applies they caused changed nothing (no loop, no writes).
  const writes = runnerP.writes.length;
  const settled = await dpP.apply(targetP);
  t.deepEqual(settled.commands, []);
  t.is(runnerP.writes.length, writes);
  t.log(`measured: wireguard-go killed → P reaches NATed N again ${restartMs} ms; route deleted → repaired ${routeMs} ms; MTU changed → repaired ${mtuMs} ms`);
});
