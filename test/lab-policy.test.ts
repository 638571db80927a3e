// The access policy on real packets (lab/topologies/policy.yaml: clusters east (2 nodes), west,
// north; real agents, wireguard-go, nft inside each node namespace), set with the coordinator's
// `policy set` command exactly as an operator would:
//   default deny + one allow rule; a deny rule inside default allow; a long TCP flow that keeps
//   going while policies switch back and forth; an invalid policy changing nothing; an agent
//   restart with no moment unfiltered; a node without nftables saying so (best-effort) and
//   refusing traffic (required). The drop counters are also checked as Prometheus metrics.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { resolveNftCommand } from '../agent/policy/nft-command.ts';
import { AgentResponseError, getFromAgent } from '../cli/client.ts';
import { signingKeyFile } from '../lab/commands.ts';
import type { Lab } from '../lab/lab.ts';
import { findPod, type PodPlan } from '../lab/plan.ts';
import { waitFor } from '../lib/wait.ts';
import { PolicyDocumentResponse } from '../protocol/policy/status.ts';
import * as z from 'zod';
import { assertConverged, pingFailsWithin, pingUntil, useLab } from './helpers/lab-harness.ts';
import { pacedTransfer, startTcpServer, tcpProbe, type TcpServer } from './helpers/tcp-probe.ts';
import { agentRequest } from './helpers/agent-http.ts';
import { checkMetrics } from './helpers/promtool.ts';

const CONVERGE_MS = 90_000;
/** The real nft (PATH under npm has node_modules/.bin/nft first, which is not nftables). */
const NFT = resolveNftCommand('nft');
const ENFORCE_MS = 20_000;
const APP_PORT = 8080;
const OTHER_PORT = 8081;
const FLOW_PORT = 5201;

const theLab = useLab('policy', 'p');

const ONLY_EAST_TO_WEST_APP = `# default deny, one allow rule
default: deny
rules:
  - from: {cluster: east}
    to: {cluster: west, ports: ["tcp/${APP_PORT}", "tcp/${FLOW_PORT}", "udp/53"]}
`;
const NORTH_MAY_NOT_REACH_WEST = `# prod may not reach dev
default: allow
rules:
  - from: {cluster: north}
    to: {cluster: west}
    action: deny
`;

let fileCount = 0;

/** `crosslink-coordinator policy set --file` in the control namespace, as an operator runs it. */
async function policySet(lab: Lab, yaml: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const file = join(lab.paths.dir, `policy-${++fileCount}.yaml`);
  await writeFile(file, yaml);
  const bin = join(lab.paths.repoRoot, 'bin', 'crosslink-coordinator');
  const r = await lab.exec(lab.plan.ctlNs, [bin, 'policy', 'set', '--file', file, '--by', 'lab-test', '--nats-url', lab.plan.natsUrl, '--bucket', 'crosslink', '--signing-key-file', signingKeyFile(lab.paths)], { allowFailure: true, timeoutMs: 120_000 });
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
}

async function setAndEnforce(t: ExecutionContext, lab: Lab, yaml: string): Promise<number> {
  const r = await policySet(lab, yaml);
  t.is(r.code, 0, r.stderr);
  const version = Number(/policy version ([0-9]+) is in force/.exec(r.stdout)?.[1] ?? /unchanged: policy version ([0-9]+)/.exec(r.stdout)?.[1]);
  await waitEnforced(lab, version);
  return version;
}

/** Every running agent reports the version as enforced (its nft -f succeeded). */
async function waitEnforced(lab: Lab, version: number): Promise<void> {
  await waitFor(
    async () => {
      for (const n of lab.runningAgents()) {
        const s = await lab.status(n).catch(() => null);
        if (s?.policy?.enforcedVersion !== version) return false;
      }
      return true;
    },
    { timeoutMs: ENFORCE_MS, intervalMs: 100, what: `policy version ${version} enforced on every node` },
  );
}

const pod = (lab: Lab, name: string): PodPlan => findPod(lab.plan, name);

/** A probe expected to be refused by policy: it times out (dropped), never connects. */
async function assertBlocked(t: ExecutionContext, lab: Lab, from: PodPlan, to: PodPlan, port: number, what: string): Promise<void> {
  t.is(await tcpProbe(lab.runner, from, to, port), 'timeout', `${what}: ${from.name} → ${to.name}:${port} should be dropped`);
}

async function assertOpen(t: ExecutionContext, lab: Lab, from: PodPlan, to: PodPlan, port: number, what: string): Promise<void> {
  // Retried briefly: the first packets after a peer change may race the handshake.
  const r = await waitFor(async () => ((await tcpProbe(lab.runner, from, to, port)) === 'ok' ? 'ok' : undefined), { timeoutMs: 15_000, intervalMs: 200, what: `${from.name} → ${to.name}:${port}` }).catch((err: unknown) => String(err));
  t.is(r, 'ok', `${what}: ${from.name} → ${to.name}:${port} should connect`);
}

let servers: TcpServer[] = [];

/** Greeting servers on every pod, on every port the tests use (started by the first test). */
async function ensureServers(lab: Lab): Promise<void> {
  if (servers.length > 0) return;
  for (const p of lab.plan.pods) for (const port of [APP_PORT, OTHER_PORT, FLOW_PORT]) servers.push(await startTcpServer(p, port));
}

test.after.always(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  servers = [];
});

test.serial('default deny with one allow rule: the allowed flow and its replies pass; other ports, ICMP, other clusters and the reverse are dropped; inside a cluster is untouched', async (t) => {
  const lab = theLab();
  await assertConverged(t, lab, CONVERGE_MS);
  await ensureServers(lab);
  const east1 = pod(lab, 'east-n1-p1');
  const east2 = pod(lab, 'east-n2-p1');
  const west = pod(lab, 'west-n1-p1');
  const north = pod(lab, 'north-n1-p1');
  t.true((await pingUntil(lab, north, west, 20_000)).ok, 'before any policy everything reaches everything');

  const v = await setAndEnforce(t, lab, ONLY_EAST_TO_WEST_APP);
  await assertOpen(t, lab, east1, west, APP_PORT, 'allowed by rule 1 (the greeting is the reply)');
  await assertOpen(t, lab, east2, west, APP_PORT, 'allowed from the other east node');
  await assertBlocked(t, lab, east1, west, OTHER_PORT, 'another port');
  t.false((await lab.ping(east1, west, 1)).ok, 'ICMP is not in the rule');
  await assertBlocked(t, lab, north, west, APP_PORT, 'another cluster');
  await assertBlocked(t, lab, west, east1, APP_PORT, 'a new connection in the other direction');
  t.true((await pingUntil(lab, east1, east2, 10_000)).ok, 'inside cluster east: untouched');
  await assertOpen(t, lab, east2, east1, OTHER_PORT, 'inside cluster east, any port');

  // Visibility: the version in force, drops counted by the default verdict on the receiving node.
  const s = await lab.status('west-n1');
  t.like(s.policy, { enforcing: true, enforcedVersion: v, nft: 'available' });
  t.true((s.policy?.drops.find((d) => d.rule === 'default')?.packets ?? 0) > 0, JSON.stringify(s.policy?.drops));
  const doc = await getFromAgent(lab.statusSocket('west-n1'), '/policy', PolicyDocumentResponse);
  t.regex(doc.liveTable ?? '', /table inet crosslink_policy/);
  t.regex(doc.liveTable ?? '', /tcp dport \{ 5201, 8080 \}/);

  // The drop counter as a Prometheus metric moves when a packet is dropped, and a real agent's
  // scrape passes promtool (docs/metrics.md).
  const dropped = async (): Promise<{ body: string; packets: number }> => {
    // Fresh: the kernel's counter now, not the reading the agent shares among requests for up to 1 s.
    const r = await agentRequest({ socketPath: lab.statusSocket('west-n1') }, '/metrics?fresh=1');
    t.is(r.status, 200);
    const line = r.body.split('\n').find((l) => l.startsWith('crosslink_agent_policy_dropped_packets_total{rule="default"} '));
    return { body: r.body, packets: Number(line?.split(' ')[1] ?? NaN) };
  };
  const before = await dropped();
  t.true(before.packets > 0, 'the drops so far are exported');
  // Dropped where it would enter the tunnel: a new connection from west is counted on west-n1.
  await assertBlocked(t, lab, west, east1, APP_PORT, 'one more dropped connection attempt');
  // The attempt above was refused, so its drop is already counted: one fresh scrape sees it.
  const after = await dropped();
  t.true(after.packets > before.packets, `the default rule's drop counter moved: ${before.packets} → ${after.packets}`);
  t.regex(after.body, /^crosslink_agent_policy_enforcing 1$/m);
  t.regex(after.body, /^crosslink_agent_policy_version \d+$/m);
  const lint = await checkMetrics(after.body);
  t.is(lint.code, 0, lint.output);
  t.is(lint.output.trim(), '', 'promtool check metrics: no findings on a real agent\'s scrape');
});

test.serial('a deny rule inside default allow: north may not reach west; everything else may', async (t) => {
  const lab = theLab();
  await ensureServers(lab);
  const east1 = pod(lab, 'east-n1-p1');
  const west = pod(lab, 'west-n1-p1');
  const north = pod(lab, 'north-n1-p1');
  await setAndEnforce(t, lab, NORTH_MAY_NOT_REACH_WEST);
  t.true(await pingFailsWithin(lab, north, west, 5000), 'north → west ICMP dropped');
  await assertBlocked(t, lab, north, west, OTHER_PORT, 'north → west TCP');
  t.true((await pingUntil(lab, east1, west, 10_000)).ok, 'east → west by default');
  t.true((await pingUntil(lab, west, east1, 10_000)).ok, 'west → east by default');
  t.true((await pingUntil(lab, east1, north, 10_000)).ok, 'east → north by default');
  // Dropped where it would enter the tunnel: on north's node (defence in depth: west would drop it too).
  const s = await lab.status('north-n1');
  t.true((s.policy?.drops.find((d) => d.rule === 1)?.packets ?? 0) > 0, `drops counted for rule 1: ${JSON.stringify(s.policy?.drops)}`);
});

test.serial('an invalid policy changes nothing: non-zero exit with the reason, same version enforced, same packets dropped', async (t) => {
  const lab = theLab();
  await ensureServers(lab);
  const before = (await lab.status('west-n1')).policy?.enforcedVersion;
  const r = await policySet(lab, 'default: deny\nrules:\n  - from: {cluster: east}\n    to: {cluster: west, ports: ["tcp/0"]}\n');
  t.is(r.code, 2);
  t.regex(r.stderr, /rules\[0\]\.to\.ports\[0\]: "tcp\/0" is not valid/);
  for (const n of lab.runningAgents()) t.is((await lab.status(n)).policy?.enforcedVersion, before, n);
  await assertBlocked(t, lab, pod(lab, 'north-n1-p1'), pod(lab, 'west-n1-p1'), OTHER_PORT, 'still denied by the old policy');
});

test.serial('a long TCP flow on an allowed path keeps going while policies switch back and forth', async (t) => {
  const lab = theLab();
  await ensureServers(lab);
  const east1 = pod(lab, 'east-n1-p1');
  const west = pod(lab, 'west-n1-p1');
  await setAndEnforce(t, lab, ONLY_EAST_TO_WEST_APP);
  await assertOpen(t, lab, east1, west, FLOW_PORT, 'the flow\'s port');
  let switching = true;
  const flow = pacedTransfer(lab.runner, east1, west, FLOW_PORT, 25_000).finally(() => {
    switching = false;
  });
  let switches = 0;
  const policies = [NORTH_MAY_NOT_REACH_WEST, ONLY_EAST_TO_WEST_APP];
  while (switching && switches < 2) {
    await setAndEnforce(t, lab, policies[switches % 2] ?? '');
    switches++;
  }
  const r = await flow;
  t.log(`${switches} policy switches during the flow; sent ${r.sent} bytes`);
  t.true(switches >= 1, 'the policy switched while the flow ran');
  t.is(r.error, null);
  t.true(r.sent > 0);
  t.is(r.confirmed, r.sent, 'every byte arrived on the same connection');
});

test.serial('agent restart: the table stays in place, no moment unfiltered, then it is replaced atomically', async (t) => {
  const lab = theLab();
  const north = pod(lab, 'north-n1-p1');
  const west = pod(lab, 'west-n1-p1');
  const version = await setAndEnforce(t, lab, NORTH_MAY_NOT_REACH_WEST);
  const westNs = lab.node('west-n1').ns;
  const tableThere = async (): Promise<boolean> => (await lab.exec(westNs, [NFT, 'list', 'table', 'inet', 'crosslink_policy'], { allowFailure: true })).exitCode === 0;
  // An upgrade-style restart (--no-cleanup; --cleanup, the default, is an uninstall: interface and table go).
  await lab.stopAgent('west-n1');
  await lab.startAgent('west-n1', 'info', ['--no-cleanup']);
  await waitEnforced(lab, version);
  await lab.stopAgent('west-n1');
  t.true(await tableThere(), 'the table outlives the agent');
  await lab.startAgent('west-n1', 'info', ['--no-cleanup']);
  // Until the new agent reports the version enforced: the table is always there and north never gets through.
  let rounds = 0;
  for (;;) {
    t.true(await tableThere(), `round ${rounds}: the table is in place`);
    t.false((await lab.ping(north, west, 1)).ok, `round ${rounds}: north → west is dropped`);
    rounds++;
    const s = await lab.status('west-n1').catch(() => null);
    if (s?.policy?.enforcedVersion === version && s.ready) break;
    if (rounds > 60) {
      t.fail(`the restarted agent did not report version ${version}: ${JSON.stringify(s?.policy)}`);
      break;
    }
  }
  await assertConverged(t, lab, CONVERGE_MS);
  t.false((await lab.ping(north, west, 1)).ok, 'north → west still dropped');
  t.true((await pingUntil(lab, pod(lab, 'east-n1-p1'), west, 15_000)).ok, 'east → west passes');
});

const Readiness = z.object({ ready: z.boolean(), reason: z.string() });

test.serial('a node without nftables says so loudly (best-effort: carries traffic unfiltered; required: carries none)', async (t) => {
  const lab = theLab();
  const north = pod(lab, 'north-n1-p1');
  const east1 = pod(lab, 'east-n1-p1');
  const version = (await lab.status('north-n1')).policy?.enforcedVersion ?? null;
  await lab.stopAgent('north-n1');
  // nft missing: its table from before is gone too (a node that never had nft has none).
  await lab.exec(lab.node('north-n1').ns, [NFT, 'delete', 'table', 'inet', 'crosslink_policy'], { allowFailure: true });
  await lab.startAgent('north-n1', 'info', ['--nft', '/nonexistent/xl-nft']);
  const s = await waitFor(async () => {
    const st = await lab.status('north-n1').catch(() => null);
    return st?.policy?.nft === 'missing' && st.policy.desiredVersion === version ? st : undefined;
  }, { timeoutMs: 30_000, what: 'north-n1 to report nft missing' });
  t.like(s.policy, { nft: 'missing', enforcing: false, enforcedVersion: null, blocksTraffic: false, mode: 'best-effort' });
  t.true(s.errors.some((e) => /policy: NOT ENFORCED, nftables \(\/nonexistent\/xl-nft\) is not usable.*best-effort: traffic passes unfiltered/.test(e)), s.errors.join('\n'));
  // /readyz: 503 naming the policy once the earlier steps (registration, reconcile) are done.
  const notEnforced = new RegExp(`policy v${version ?? '?'} NOT enforced`);
  const ready = await waitFor(async () => {
    const r = await getFromAgent(lab.statusSocket('north-n1'), '/readyz', Readiness).then(
      (x) => x,
      (err: unknown) => (err instanceof AgentResponseError ? { ready: false, reason: err.message } : { ready: true, reason: String(err) }),
    );
    return notEnforced.test(r.reason) ? r : undefined;
  }, { timeoutMs: 30_000, what: '/readyz to name the policy' });
  t.false(ready.ready);
  t.true((await pingUntil(lab, north, east1, 20_000)).ok, 'best-effort: traffic still carried');

  await lab.stopAgent('north-n1');
  await lab.startAgent('north-n1', 'info', ['--nft', '/nonexistent/xl-nft', '--policy-enforcement', 'required']);
  const r = await waitFor(async () => {
    const st = await lab.status('north-n1').catch(() => null);
    return st?.policy?.blocksTraffic === true && st.lastReconcile?.ok === true && st.peers.length === 0 ? st : undefined;
  }, { timeoutMs: 30_000, what: 'north-n1 to refuse traffic' });
  t.true(r.remotes.every((x) => x.path === 'none' && /carrying no overlay traffic/.test(x.reason ?? '')), JSON.stringify(r.remotes));
  t.true(await pingFailsWithin(lab, north, east1, 10_000), 'required: north carries no overlay traffic');

  // Back to normal for whatever runs next.
  await lab.stopAgent('north-n1');
  await lab.startAgent('north-n1');
  await assertConverged(t, lab, CONVERGE_MS);
});
