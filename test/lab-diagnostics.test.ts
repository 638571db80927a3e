// Diagnostics on the default lab (real agents, wireguard-go, nats-server, namespaces; one bring-up
// for the file): a healthy lab is healthy by `status` and `diagnose` on every node; `crosslink ping`
// reports each kind of path; injected faults (UDP to the WireGuard port firewalled on a mesh node and
// on the active gateway, a drop inside a pod, an MTU changed by hand, a route deleted, the
// coordinator stopped, NATS stopped) turn the right nodes' status non-zero, are named by `diagnose`
// (check id asserted), and clear after the fix.
import test, { type ExecutionContext } from 'ava';
import { runCli } from '../cli/main.ts';
import type { Lab } from '../lab/lab.ts';
import { findPod, WIREGUARD_PORT } from '../lab/plan.ts';
import { PingReply } from '../protocol/health.ts';
import { AgentStatus } from '../protocol/status.ts';
import { captureIo } from './helpers/cli-io.ts';
import { assertConverged, useLab } from './helpers/lab-harness.ts';

const CONVERGE_MS = 90_000;
/** Generous: the documented bound is 15 s down / 5 s up at default settings; no timing is asserted. */
const HEALTH_MS = 45_000;

const theLab = useLab('default', 'd');

interface CliResult {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

async function cli(l: Lab, node: string, args: readonly string[]): Promise<CliResult> {
  const io = captureIo();
  const code = await runCli([...args, '--socket', l.statusSocket(node)], io);
  return { code, out: io.out(), err: io.err() };
}

interface JsonCheck {
  id: string;
  node?: string;
  ok: boolean | null;
  label: string;
  detail: string;
}

async function diagnoseJson(l: Lab, node: string, extra: readonly string[] = ['--interval', '0']): Promise<{ code: number; checks: JsonCheck[]; text: string }> {
  const r = await cli(l, node, ['diagnose', '--json', ...extra]);
  const doc = JSON.parse(r.out || '{"checks":[]}') as { checks: JsonCheck[] };
  return { code: r.code, checks: doc.checks, text: r.out + r.err };
}

/** Polls `f` until it returns true; fails the test with `explain()` at the deadline. */
async function eventually(t: ExecutionContext, what: string, f: () => Promise<boolean>, explain: () => Promise<string>, timeoutMs = HEALTH_MS): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await f()) return true;
    if (Date.now() > deadline) {
      t.fail(`${what} not reached within ${timeoutMs} ms:\n${await explain()}`);
      return false;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

const statusCode = async (l: Lab, node: string): Promise<number> => (await cli(l, node, ['status'])).code;
const statusText = async (l: Lab, node: string): Promise<string> => (await cli(l, node, ['status'])).out;

async function allHealthy(t: ExecutionContext, l: Lab, context: string, names: readonly string[] = l.plan.nodes.map((n) => n.name)): Promise<void> {
  await eventually(
    t,
    `${context}: status exit 0 on every node`,
    async () => (await Promise.all(names.map((n) => statusCode(l, n)))).every((c) => c === 0),
    async () => (await Promise.all(names.map(async (n) => `--- ${n}\n${await statusText(l, n)}`))).join('\n'),
  );
}

async function activeGateway(l: Lab, cloud: string): Promise<string> {
  const s = AgentStatus.parse(await l.status('aws-n1'));
  const r = s.remotes.find((x) => x.cluster === cloud && x.path === 'gateway');
  if (!r?.via) throw new Error(`aws-n1 has no gateway path into ${cloud}`);
  return r.via;
}

async function nft(l: Lab, ns: string, rules: string): Promise<void> {
  // Absolute: under npm, node_modules/.bin/nft (@vercel/nft) shadows the nftables CLI.
  await l.exec(ns, ['/usr/sbin/nft', '-f', '-'], { input: rules });
}

const dropWireguard = (port: number): string => `table inet xltest {\n chain input { type filter hook input priority -10; udp dport ${port} drop; }\n}\n`;
const clearTest = 'delete table inet xltest\n';

test.serial('healthy lab: status and diagnose exit 0 on every node (no false positives)', async (t) => {
  const l = theLab();
  await assertConverged(t, l, CONVERGE_MS);
  await allHealthy(t, l, 'converged lab');
  // The full diagnose (two traffic samples 3 s apart, path-MTU probes) on all 8 nodes.
  const results = await Promise.all(l.plan.nodes.map(async (n) => ({ node: n.name, ...(await diagnoseJson(l, n.name, [])) })));
  for (const r of results) t.is(r.code, 0, `${r.node}:\n${r.text}`);
  const ids = new Set(results.flatMap((r) => r.checks.map((c) => c.id)));
  for (const id of ['controlplane.nats', 'controlplane.heartbeat', 'dataplane.mtu', 'peer.probe', 'peer.pmtu', 'peer.routes', 'peer.nat-mapping']) t.true(ids.has(id), `check ${id} ran somewhere`);
});

test.serial('crosslink ping: direct, relay, gateway, local gateway, and a pod IP', async (t) => {
  const l = theLab();
  const gw = await activeGateway(l, 'gcp');
  const other = gw === 'gcp-n1' ? 'gcp-n2' : 'gcp-n1';
  const cases: [string, string, string, RegExp][] = [
    ['aws-n1', 'azure-n1', 'direct', /direct/],
    ['onprem-n1', 'edge-n1', 'relay', /relay via /],
    ['aws-n1', other, 'gateway', new RegExp(`gateway ${gw}`)],
    [other, 'aws-n1', 'local-gateway', new RegExp(`local gateway ${gw}`)],
  ];
  for (const [from, to, path, text] of cases) {
    // Retried until answered: under load a relay or gateway may be re-planned meanwhile.
    let r: CliResult = { code: -1, out: '', err: '' };
    await eventually(
      t,
      `${from} → ${to} answered`,
      async () => {
        r = await cli(l, from, ['ping', to, '--count', '3', '--timeout', '3s', '--json']);
        return r.code === 0;
      },
      () => Promise.resolve(`${r.out}${r.err}`),
    );
    const reply = PingReply.parse(JSON.parse(r.out || '{}'));
    t.is(reply.path, path, `${from} → ${to}`);
    t.regex(reply.pathText, text);
    t.true(reply.received > 0);
  }
  // By overlay IP and by pod IP; the human output names path and RTT.
  const azure = AgentStatus.parse(await l.status('azure-n1'));
  const byIp = await cli(l, 'aws-n1', ['ping', azure.node.overlayIp ?? '?', '--count', '1']);
  t.is(byIp.code, 0, byIp.out + byIp.err);
  t.regex(byIp.out, /node azure-n1: 1\/1 probes answered, 0% loss, rtt/);
  const pod = findPod(l.plan, 'edge-n1-p1');
  const byPod = await cli(l, 'aws-n1', ['ping', pod.ip, '--count', '2', '--json']);
  t.is(byPod.code, 0, byPod.out + byPod.err);
  const podReply = PingReply.parse(JSON.parse(byPod.out));
  t.is(podReply.node, 'edge-n1');
  t.true((podReply.pod?.received ?? 0) > 0);
  // Unknown target: exit 1, said so.
  const unknown = await cli(l, 'aws-n1', ['ping', '10.250.0.1', '--count', '1']);
  t.is(unknown.code, 1);
  t.regex(unknown.out, /not a known node/);
});

test.serial('a drop inside a pod: the node answers, the pod does not; ping says so and exits 1', async (t) => {
  const l = theLab();
  const pod = findPod(l.plan, 'azure-n1-p1');
  await nft(l, pod.ns, 'table inet xltest {\n chain input { type filter hook input priority -10; icmp type echo-request drop; }\n}\n');
  try {
    const r = await cli(l, 'aws-n1', ['ping', pod.ip, '--count', '2', '--json']);
    t.is(r.code, 1, r.out);
    const reply = PingReply.parse(JSON.parse(r.out));
    t.true(reply.received > 0, 'the node azure-n1 answered');
    t.is(reply.pod?.received, 0);
    t.regex(reply.summary, /the node azure-n1 answered but pod .* did not: the tunnel works, the drop is beyond the node/);
  } finally {
    await nft(l, pod.ns, clearTest);
  }
  const again = await cli(l, 'aws-n1', ['ping', pod.ip, '--count', '2']);
  t.is(again.code, 0, again.out);
});

for (const where of ['mesh', 'gateway'] as const) {
  test.serial(`UDP to the WireGuard port firewalled on a ${where} node: down on both sides, named by diagnose, clears after the fix`, async (t) => {
    const l = theLab();
    const victim = where === 'mesh' ? 'azure-n1' : await activeGateway(l, 'gcp');
    const observer = 'aws-n1';
    const ns = l.node(victim).ns;
    await nft(l, ns, dropWireguard(WIREGUARD_PORT));
    try {
      for (const node of [victim, observer]) {
        await eventually(t, `${node}: status exit 1`, async () => (await statusCode(l, node)) === 1, () => statusText(l, node));
      }
      // The observer's diagnose names the broken hop: the tunnel to the victim.
      const seen = await eventually(
        t,
        `${observer}: diagnose names peer.probe for ${victim}`,
        async () => {
          const d = await diagnoseJson(l, observer);
          return d.code === 1 && d.checks.some((c) => c.id === 'peer.probe' && c.ok === false && c.node !== undefined && (c.node === victim || c.detail.includes(victim)));
        },
        async () => (await diagnoseJson(l, observer)).text,
      );
      if (seen) {
        const d = await diagnoseJson(l, victim);
        t.is(d.code, 1);
        t.true(d.checks.some((c) => c.id === 'peer.probe' && c.ok === false && c.node === observer), d.text);
      }
    } finally {
      await nft(l, ns, clearTest);
    }
    await allHealthy(t, l, 'after removing the firewall rule', [victim, observer]);
  });
}

test.serial('MTU changed by hand and a route deleted: named by diagnose (dataplane.mtu, peer.routes)', async (t) => {
  const l = theLab();
  const node = l.node('aws-n2');
  // The agent repairs both at its next reconcile; inject again until diagnose has seen it.
  await eventually(
    t,
    'dataplane.mtu fails after ip link set mtu 1280',
    async () => {
      await l.exec(node.ns, ['ip', 'link', 'set', 'dev', node.wgInterface, 'mtu', '1280']);
      const d = await diagnoseJson(l, 'aws-n2');
      return d.code === 1 && d.checks.some((c) => c.id === 'dataplane.mtu' && c.ok === false && /live MTU 1280/.test(c.detail));
    },
    async () => (await diagnoseJson(l, 'aws-n2')).text,
  );
  const azure = l.node('azure-n1');
  await eventually(
    t,
    'peer.routes fails after ip route del',
    async () => {
      await l.exec(node.ns, ['ip', 'route', 'del', azure.podCidr], { allowFailure: true });
      const d = await diagnoseJson(l, 'aws-n2');
      return d.code === 1 && d.checks.some((c) => c.id === 'peer.routes' && c.ok === false && c.node === 'azure-n1');
    },
    async () => (await diagnoseJson(l, 'aws-n2')).text,
  );
  await allHealthy(t, l, 'after the repairs', ['aws-n2']);
  t.pass();
});

test.serial('coordinator stopped, then NATS stopped: status non-zero, diagnose names the control plane; clears after restart', async (t) => {
  const l = theLab();
  await l.stopCoordinator();
  try {
    await eventually(
      t,
      'controlplane.heartbeat fails with the coordinator stopped',
      async () => {
        const d = await diagnoseJson(l, 'onprem-n1');
        return d.code === 1 && d.checks.some((c) => c.id === 'controlplane.heartbeat' && c.ok === false);
      },
      async () => (await diagnoseJson(l, 'onprem-n1')).text,
    );
    t.is(await statusCode(l, 'onprem-n1'), 1);
  } finally {
    await l.startCoordinator();
  }
  await allHealthy(t, l, 'after the coordinator restart', ['onprem-n1']);
  await l.stopNats();
  try {
    await eventually(
      t,
      'controlplane.nats fails with NATS stopped',
      async () => {
        const d = await diagnoseJson(l, 'aws-n1');
        return d.code === 1 && d.checks.some((c) => c.id === 'controlplane.nats' && c.ok === false);
      },
      async () => (await diagnoseJson(l, 'aws-n1')).text,
    );
    t.is(await statusCode(l, 'aws-n1'), 1);
  } finally {
    await l.startNats();
  }
  await allHealthy(t, l, 'after the NATS restart', ['aws-n1']);
});
