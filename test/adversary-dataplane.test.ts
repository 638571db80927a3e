// Issue 8 on real packets: finding 1 (claims that would pull the host's own traffic into the
// tunnel) against the data-plane guard, and findings 9 and 10 against a real agent process. One lab
// for the file: real nats-server, coordinator, three agents with wireguard-go in network namespaces.
//   east-n1  the honest victim. It reaches NATS at a private address of the control host
//            (172.31.0.2, DNATed to nats-server), as a real VPC does: the lab's simulated public
//            addresses are documentation space, which admission refuses outright as pod space.
//   west-n1  an honest peer (pods on both sides must keep talking).
//   evil-n1  the attacker: its cluster was enrolled by an operator with BROAD ranges (admission lets
//            them through) that cover part of east's VPC subnet, the NATS address and west's private
//            address; its agent claims them all.
// Guarded, east refuses exactly the hostile CIDRs and keeps everything else working. NEGATIVE
// CONTROL: the same east agent with the guard off (a test-only entry point, no product flag) routes
// the NATS address into WireGuard — so the guarded assertions can fail. Then the operator revokes
// the attacker: a revoked real agent says so in `crosslink status --json`, fails /readyz and stops
// heartbeating (counted on NATS). Its health listener, bound to 0.0.0.0, warned and serves no /status.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { join } from 'node:path';
import test from 'ava';
import { Lab } from '../lab/lab.ts';
import { agentArgv, logFile, signingKeyFile, joinCredentialFile } from '../lab/commands.ts';
import { randomLabId } from '../lab/names.ts';
import { findPod } from '../lab/plan.ts';
import { namespacePids } from '../lab/netns-pids.ts';
import { REPO_ROOT } from '../lab/state.ts';
import { roleOf, spawnDetached, terminate, type ProcessRef } from '../lab/processes.ts';
import { ProcessRunner } from '../lib/runner.ts';
import { waitFor } from '../lib/wait.ts';
import { AgentStatus } from '../protocol/status.ts';
import { assertReachable, leftoversOf, pollOrExplain } from './helpers/lab-harness.ts';
import { startTcpServer, tcpProbe } from './helpers/tcp-probe.ts';

const TOPOLOGY = `# test/adversary-dataplane.test.ts
timers:
  nodeTtl: 5s
  resyncInterval: 10s
  natKeepaliveSec: 5
clouds:
  - name: east
    edge: public
    nodes:
      - pods: 1
  - name: west
    edge: public
    nodes:
      - pods: 1
  - name: evil
    edge: public
    nodes:
      - pods: 1
`;

/** The NATS server's private address as east sees it (a VPC address in real deployments). */
const NATS_PRIVATE = '172.31.0.2';
const HEALTH_PORT = 9464;
const TCP_PORT = 8080;
const CONVERGE_MS = 60_000;
const COORDINATOR = join(REPO_ROOT, 'bin', 'crosslink-coordinator');
const CLI = join(REPO_ROOT, 'bin', 'crosslink');
const UNGUARDED_AGENT = join(REPO_ROOT, 'test', 'helpers', 'unguarded-crosslink-agent.ts');
const COUNT_HEARTBEATS = join(REPO_ROOT, 'test', 'helpers', 'count-heartbeats.ts');

let lab: Lab | undefined;
const theLab = (): Lab => {
  if (!lab) throw new Error('lab not up');
  return lab;
};

test.before(async (t) => {
  const t0 = Date.now();
  const log = (m: string): void => t.log(`${Date.now() - t0} ms ${m}`);
  lab = await Lab.up({ onProgress: log, id: randomLabId('v'), topologyText: TOPOLOGY, topologySource: 'test/adversary-dataplane.test.ts', runner: new ProcessRunner(), deferAgents: ['east-n1', 'evil-n1'] });
  const l = lab;
  const east = l.node('east-n1');
  // The control host answers NATS on a private address too; east's edge routes it there.
  await l.exec(l.plan.ctlNs, ['ip', 'address', 'add', `${NATS_PRIVATE}/32`, 'dev', 'lo']);
  await l.exec(l.plan.ctlNs, ['iptables', '-t', 'nat', '-A', 'PREROUTING', '-d', `${NATS_PRIVATE}/32`, '-p', 'tcp', '--dport', '4222', '-j', 'DNAT', '--to-destination', `${l.plan.ctlIp}:4222`]);
  await l.exec(east.edgeNs, ['ip', 'route', 'add', `${NATS_PRIVATE}/32`, 'via', l.plan.ctlIp]);
  log('up');
  await l.startAgent('east-n1', 'info', ['--nats-url', `nats://${NATS_PRIVATE}:4222`]);
  // Meanwhile the operator withdraws the attacker's cloud enrollment the lab made (no node of it runs
  // yet); the first test enrolls it again, broadly, once the honest nodes have registered.
  await Promise.all([l.waitConverged(CONVERGE_MS), coordinatorCommand(l, ['cluster', 'remove', 'evil'])]);
  log('converged');
});

test.after.always(async (t) => {
  const t0 = Date.now();
  const report = await lab?.down();
  t.log(`down ${Date.now() - t0} ms`);
  t.deepEqual(report?.errors ?? [], []);
  if (lab) t.deepEqual(await leftoversOf(lab.id), []);
});

// ---------------------------------------------------------------------------------------------

/** The attacker's claims: part of east's VPC subnet, the NATS address, west's private address. */
function attackCidrs(l: Lab): { vpc: string; nats: string; peer: string } {
  const east = l.node('east-n1');
  const west = l.node('west-n1');
  const vpc = l.plan.clouds.find((c) => c.name === 'east')?.vpc ?? '';
  // The upper half of east's VPC subnet: overlaps its connected subnet, covers none of its nodes
  // (admission refuses a node whose own address lies in another cluster's range).
  const upperHalf = vpc.replace(/\.0\/24$/, '.128/25');
  if (upperHalf === vpc || !east.vpcIp.startsWith(vpc.replace(/0\/24$/, ''))) throw new Error(`unexpected lab layout: ${vpc} ${east.vpcIp}`);
  return { vpc: upperHalf, nats: `${NATS_PRIVATE}/32`, peer: `${west.vpcIp}/32` };
}

/** Host routes Crosslink does not own (proto 149 is ours), as `ip -j route` prints them. */
async function hostRoutes(l: Lab, ns: string, wgInterface: string): Promise<string[]> {
  const r = await l.exec(ns, ['ip', '-j', 'route', 'show', 'table', 'main']);
  const routes = JSON.parse(r.stdout) as { dst: string; gateway?: string; dev?: string; protocol?: string; scope?: string }[];
  return routes
    .filter((x) => x.protocol !== '149' && x.dev !== wgInterface)
    .map((x) => `${x.dst} via ${x.gateway ?? '-'} dev ${x.dev ?? '-'} proto ${x.protocol ?? '-'} scope ${x.scope ?? '-'}`)
    .sort();
}

async function routeGet(l: Lab, ns: string, ip: string): Promise<string> {
  return (await l.exec(ns, ['ip', 'route', 'get', ip])).stdout.trim();
}

/** `crosslink status --json`, the operator's view (the real CLI on the agent's socket; exit 1 when not ready). */
async function cliStatus(l: Lab, node: string): Promise<AgentStatus & { exitCode: number }> {
  const r = await l.runner.run([CLI, 'status', '--json', '--socket', l.statusSocket(node)], { allowFailure: true, timeoutMs: 60_000 });
  if (r.exitCode !== 0 && r.exitCode !== 1) throw new Error(`crosslink status exited ${r.exitCode}: ${r.stderr}`);
  return { ...AgentStatus.parse(JSON.parse(r.stdout)), exitCode: r.exitCode };
}

async function httpCode(l: Lab, ns: string, url: string): Promise<string> {
  const r = await l.exec(ns, ['curl', '-s', '-o', '/dev/null', '-m', '5', '-w', '%{http_code}', url], { allowFailure: true, timeoutMs: 15_000 });
  return r.stdout.trim();
}

async function coordinatorCommand(l: Lab, args: readonly string[]): Promise<string> {
  const r = await l.exec(l.plan.ctlNs, [COORDINATOR, ...args, '--nats-url', l.plan.natsUrl, '--bucket', 'crosslink', '--signing-key-file', signingKeyFile(l.paths)], {
    timeoutMs: 60_000,
  });
  return r.stdout;
}


// ---------------------------------------------------------------------------------------------

test.serial('finding 1, guarded: an admitted claim on the VPC subnet, the NATS address and a peer address is refused; the host keeps its routes, NATS, peers and pod traffic', async (t) => {
  const l = theLab();
  const east = l.node('east-n1');
  const attack = attackCidrs(l);
  const ttl = l.plan.topology.timers.nodeTtlMs;
  const routesBefore = await hostRoutes(l, east.ns, east.wgInterface);
  const natsPathBefore = await routeGet(l, east.ns, NATS_PRIVATE);
  t.notRegex(natsPathBefore, new RegExp(`dev ${east.wgInterface}\\b`));
  t.true(routesBefore.some((r) => r.startsWith('default via ')), routesBefore.join('\n'));

  // The operator enrolls the attacker's cluster broadly (after the honest nodes registered: admission
  // refuses a node whose own address lies in another cluster's range); the attacker claims it all.
  const evil = l.node('evil-n1');
  const claims = [evil.podCidr, attack.vpc, attack.nats, attack.peer];
  const added = await coordinatorCommand(l, ['cluster', 'add', 'evil', ...claims.flatMap((c) => ['--pod-cidr', c]), '--credential-out', joinCredentialFile(l.paths, 'evil')]);
  t.regex(added, /evil/);
  await l.startAgent('evil-n1', 'info', [...[attack.vpc, attack.nats, attack.peer].flatMap((c) => ['--pod-cidr', c]), '--health-addr', `0.0.0.0:${HEALTH_PORT}`]);

  // east saw the record (evil became a peer for its honest range) and refused exactly the hostile CIDRs.
  const seen = await pollOrExplain(
    t,
    'east refusing the three hostile CIDRs with evil as a peer',
    CONVERGE_MS,
    async () => {
      const s = await l.status('east-n1');
      const refused = s.refusedRoutes.filter((r) => r.node === 'evil-n1').map((r) => r.cidr).sort();
      const evilPeer = s.peers.find((p) => p.name === 'evil-n1');
      return refused.length === 3 && evilPeer ? { status: s, at: Date.now() } : undefined;
    },
    () => l.diagnostics({ nodes: ['east-n1', 'evil-n1'] }),
  );
  if (!seen) return;
  const reasons = new Map(seen.status.refusedRoutes.map((r) => [r.cidr, r.reason]));
  t.deepEqual([...reasons.keys()].sort(), [attack.vpc, attack.nats, attack.peer].sort());
  t.regex(reasons.get(attack.vpc) ?? '', /connected subnet 172\.16\.1\.0\/24/);
  t.regex(reasons.get(attack.nats) ?? '', new RegExp(`NATS server ${NATS_PRIVATE.replace(/\./g, '\\.')}`));
  t.regex(reasons.get(attack.peer) ?? '', /private address .* of node west-n1/);

  // WireGuard: evil's peer carries only its honest range.
  const allowed = (await l.exec(east.ns, ['wg', 'show', east.wgInterface, 'allowed-ips'])).stdout;
  t.regex(allowed, new RegExp(evil.podCidr.replace(/[./]/g, '\\$&')));
  for (const c of [attack.vpc, attack.nats, attack.peer]) t.false(allowed.includes(c), `${c} in wg allowed-ips:\n${allowed}`);

  // The host's own routes: default, connected, the path to NATS and to west's private address.
  t.deepEqual(await hostRoutes(l, east.ns, east.wgInterface), routesBefore);
  t.is(await routeGet(l, east.ns, NATS_PRIVATE), natsPathBefore);
  t.notRegex(await routeGet(l, east.ns, '172.16.1.200'), new RegExp(`dev ${east.wgInterface}\\b`));
  t.notRegex(await routeGet(l, east.ns, l.node('west-n1').vpcIp), new RegExp(`dev ${east.wgInterface}\\b`));

  // Pods keep talking across the tunnel: ping both ways, TCP east → west.
  const [eastPod, westPod] = [findPod(l.plan, 'east-n1-p1'), findPod(l.plan, 'west-n1-p1')];
  const server = await startTcpServer(westPod, TCP_PORT);
  t.teardown(() => server.stop());
  const [tcp] = await Promise.all([
    waitFor(async () => ((await tcpProbe(l.runner, eastPod, westPod, TCP_PORT)) === 'ok' ? 'ok' : undefined), { timeoutMs: 20_000, intervalMs: 200, what: 'TCP east pod → west pod' }).catch((err: unknown) => String(err)),
    assertReachable(t, l, [[eastPod, westPod], [westPod, eastPod]], 20_000),
  ]);
  t.is(tcp, 'ok', 'TCP east pod → west pod');
  await server.stop();

  // The refusal is reported to the operator: `crosslink status --json` and `crosslink diagnose`.
  const [cli, diag] = await Promise.all([
    cliStatus(l, 'east-n1'),
    l.runner.run([CLI, 'diagnose', '--json', '--interval', '0', '--socket', l.statusSocket('east-n1')], { allowFailure: true, timeoutMs: 60_000 }),
  ]);
  t.deepEqual(cli.refusedRoutes.map((r) => r.cidr).sort(), [attack.vpc, attack.nats, attack.peer].sort());
  t.is(diag.exitCode, 1, diag.stdout + diag.stderr);
  const checks = (JSON.parse(diag.stdout) as { checks: { id: string; ok: boolean | null; detail: string }[] }).checks;
  const guard = checks.find((c) => c.id === 'dataplane.route-guard');
  t.like(guard, { ok: false });
  t.regex(guard?.detail ?? '', /3 peer CIDR\(s\) refused: .*172\.31\.0\.2\/32 of evil-n1/);

  // NATS (checked last: the checks above take part of the TTL): heartbeats keep being acknowledged for more than a TTL after the attack, and east never expires.
  const later = await pollOrExplain(
    t,
    `east heartbeating ${ttl} ms after the attack`,
    ttl * 4,
    async () => {
      const s = await l.status('east-n1');
      const c = s.controlPlane;
      return c.lastHeartbeatAt !== null && c.lastHeartbeatAt > seen.at + ttl ? s : undefined;
    },
    () => l.diagnostics({ nodes: ['east-n1'] }),
  );
  if (!later) return;
  t.true(later.controlPlane.connected && later.controlPlane.registered, JSON.stringify(later.controlPlane));
  const westView = await l.status('west-n1');
  t.true(westView.peers.some((p) => p.name === 'east-n1'), `west lost east: ${JSON.stringify(westView.peers.map((p) => p.name))}`);
});

test.serial('finding 1, NEGATIVE CONTROL: the same agent without the guard routes the NATS address into the attacker\'s tunnel', async (t) => {
  const l = theLab();
  const east = l.node('east-n1');
  const attack = attackCidrs(l);
  const key = l.coordinatorPublicKey;
  if (key === null) return t.fail('no coordinator key');
  await l.stopAgent('east-n1');
  // The lab's own command line for east, run through the test-only entry point instead of bin/.
  const argv = agentArgv(l.plan, east, l.paths, key);
  const at = argv.findIndex((a) => a.endsWith('/bin/crosslink-agent'));
  argv.splice(at, 1, process.execPath, '--import', 'tsx', UNGUARDED_AGENT);
  argv.push('--nats-url', `nats://${NATS_PRIVATE}:4222`);
  let ref: ProcessRef | undefined = await spawnDetached(argv, logFile(l.paths, 'east-n1-unguarded'));
  const stop = async (): Promise<void> => {
    if (!ref) return;
    const alive = await terminate([ref], { graceMs: 20_000, killAfter: true });
    ref = undefined;
    t.deepEqual(alive, [], 'the unguarded agent did not exit');
    const left = (await namespacePids(east.ns)).filter((pid) => roleOf(pid) === 'wireguard-go');
    t.deepEqual(left, [], 'wireguard-go left behind by the unguarded agent');
  };
  t.teardown(stop);

  const hijacked = await pollOrExplain(
    t,
    'the unguarded agent routing the NATS address into WireGuard',
    CONVERGE_MS,
    async () => {
      const route = await routeGet(l, east.ns, NATS_PRIVATE);
      return new RegExp(`dev ${east.wgInterface}\\b`).test(route) ? route : undefined;
    },
    async () => `${await routeGet(l, east.ns, NATS_PRIVATE)}\n${await l.logTail('east-n1-unguarded', 15)}`,
  );
  t.truthy(hijacked, 'without the guard the hijack must happen, or the guarded test proves nothing');
  // The other claims went in too: part of the VPC subnet and west's private address.
  t.regex(await routeGet(l, east.ns, '172.16.1.200'), new RegExp(`dev ${east.wgInterface}\\b`));
  t.regex(await routeGet(l, east.ns, l.node('west-n1').vpcIp), new RegExp(`dev ${east.wgInterface}\\b`));
  t.regex((await l.exec(east.ns, ['wg', 'show', east.wgInterface, 'allowed-ips'])).stdout, new RegExp(attack.nats.replace(/[./]/g, '\\$&')));
  await stop();
});

test.serial('findings 9 and 10 on a real agent: a 0.0.0.0 health listener warns and serves no /status; revoked, the agent says so, fails /readyz and stops heartbeating', async (t) => {
  const l = theLab();
  const evil = l.node('evil-n1');
  const base = `http://${evil.vpcIp}:${HEALTH_PORT}`;
  // Finding 9: bound off loopback without --health-status — a warning, health only.
  t.regex(await l.logTail('evil-n1', 400), /the health listener is reachable off this host \(unauthenticated \/healthz, \/readyz and \/metrics\)/);
  t.is(await httpCode(l, evil.ns, `${base}/healthz`), '200');
  t.is(await httpCode(l, evil.ns, `${base}/status`), '404', 'the mesh topology must not be served without --health-status');
  await pollOrExplain(t, 'evil /readyz 200', 30_000, async () => ((await httpCode(l, evil.ns, `${base}/readyz`)) === '200' ? true : undefined), () => l.diagnostics({ nodes: ['evil-n1'] }));

  // Heartbeats as the NATS server delivers them, counted inside the control namespace.
  const counter = spawn('ip', ['netns', 'exec', l.plan.ctlNs, process.execPath, '--import', 'tsx', COUNT_HEARTBEATS, l.plan.natsUrl], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => stopChild(counter));
  const counts = heartbeatCounts(counter);
  const current = (): Record<string, number> => counts.latest;
  await pollOrExplain(t, 'heartbeats of evil-n1 and west-n1 on NATS', 30_000, () => Promise.resolve((current()['evil-n1'] ?? 0) > 0 && (current()['west-n1'] ?? 0) > 0 ? true : undefined), () => Promise.resolve(counts.log()));

  const out = await coordinatorCommand(l, ['revoke', 'evil-n1', '--reason', 'attacker']);
  t.regex(out, /revoked node "evil-n1"/);

  // Finding 10: the operator's `crosslink status --json` says revoked, not ready — one document.
  const revoked = await pollOrExplain(
    t,
    'evil-n1 status showing revoked',
    30_000,
    async () => {
      const s = await cliStatus(l, 'evil-n1');
      return s.controlPlane.revoked ? s : undefined;
    },
    () => l.diagnostics({ nodes: ['evil-n1'] }),
  );
  if (!revoked) return;
  t.false(revoked.ready, JSON.stringify(revoked.controlPlane));
  t.false(revoked.controlPlane.registered, JSON.stringify(revoked.controlPlane));
  t.is(revoked.exitCode, 1, 'crosslink status exits 1 for a revoked node');
  t.regex(revoked.controlPlane.revoked ?? '', /attacker|revoked/);
  t.is(await httpCode(l, evil.ns, `${base}/readyz`), '503');

  // It stops heartbeating: after west (the clock here) heartbeats once more — anything evil had in
  // flight has arrived by then — evil's count must not move while west heartbeats twice more (two intervals).
  const atRevoke = { ...current() };
  const settled = await pollOrExplain(t, 'one more west heartbeat', 30_000, () => Promise.resolve((current()['west-n1'] ?? 0) > (atRevoke['west-n1'] ?? 0) ? { ...current() } : undefined), () => Promise.resolve(counts.log()));
  if (!settled) return;
  const after = await pollOrExplain(t, 'two more west heartbeats', 30_000, () => Promise.resolve((current()['west-n1'] ?? 0) >= (settled['west-n1'] ?? 0) + 2 ? { ...current() } : undefined), () => Promise.resolve(counts.log()));
  if (!after) return;
  t.is(after['evil-n1'], settled['evil-n1'], `evil-n1 kept heartbeating after revocation: ${JSON.stringify(settled)} → ${JSON.stringify(after)}`);
});

// ---------------------------------------------------------------------------------------------

type Counter = ChildProcessByStdio<null, Readable, Readable>;

function heartbeatCounts(child: Counter): { latest: Record<string, number>; log: () => string } {
  const state = { latest: {} as Record<string, number>, lines: [] as string[], stderr: '' };
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      state.lines.push(line);
      if (line.startsWith('{')) state.latest = JSON.parse(line) as Record<string, number>;
    }
  });
  child.stderr.on('data', (d: Buffer) => (state.stderr += d.toString()));
  return {
    get latest() {
      return state.latest;
    },
    log: () => `heartbeat counter: ${state.lines.slice(-3).join(' | ')} ${state.stderr.slice(-500)}`,
  };
}

async function stopChild(child: Counter): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
