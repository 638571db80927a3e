// Failure drills on a small lab (lab/topologies/resilience.yaml): gateway failover within a bound,
// fail-static while NATS is down, a node joining once NATS is back, clean node removal, and an
// agent restart keeping its key, and a WireGuard key rotation on a running node.
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { RotateKeyResponse } from '../protocol/status-api.ts';
import type { Lab } from '../lab/lab.ts';
import { findPod } from '../lab/plan.ts';
import { assertConverged, assertReachable, explainPair, pingUntil, useLab } from './helpers/lab-harness.ts';

const CONVERGE_MS = 60_000;
/** Documented in docs/lab.md: gcp pods reachable through the new gateway within TTL + this. */
const FAILOVER_MARGIN_MS = 15_000;
/** Fail-static: existing pairs must keep working through a NATS outage at least this long (> TTL). */
const OUTAGE_MS = 8000;

const theLab = useLab('resilience', 'r', { deferAgents: ['onprem-n1'] });

async function activeGateway(l: Lab): Promise<string> {
  const s = await l.status('aws-n1');
  const r = s.remotes.find((x) => x.cluster === 'gcp' && x.path === 'gateway');
  if (!r?.via) throw new Error(`aws-n1 has no gateway path into gcp: ${JSON.stringify(s.remotes)}`);
  return r.via;
}

test.serial('gateway failover: the other gcp node takes over within TTL + margin', async (t) => {
  const l = theLab();
  await assertConverged(t, l, CONVERGE_MS);
  const aws = findPod(l.plan, 'aws-n1-p1');
  await assertReachable(t, l, ['gcp-n1-p1', 'gcp-n2-p1'].map((g) => [aws, findPod(l.plan, g)] as const), 20_000);
  const old = await activeGateway(l);
  const survivor = old === 'gcp-n1' ? 'gcp-n2' : 'gcp-n1';
  const target = findPod(l.plan, `${survivor}-p1`);
  const bound = l.plan.topology.timers.nodeTtlMs + FAILOVER_MARGIN_MS;
  await l.cutNode(old);
  const cutAt = Date.now();
  const r = await pingUntil(l, aws, target, bound);
  const took = Date.now() - cutAt;
  t.true(r.ok, r.ok ? '' : `no failover within ${bound} ms: ${await explainPair(l, aws, target, r)}`);
  t.log(`old gateway ${old} cut; ${aws.name} → ${target.name} flowing again after ${took} ms (bound ${bound} ms)`);
  t.is(await activeGateway(l), survivor);
  // The reverse direction goes through the new gateway as well.
  const back = await pingUntil(l, target, aws, 10_000);
  t.true(back.ok, back.ok ? '' : await explainPair(l, target, aws, back));
  await l.restoreNode(old);
});

test.serial('NATS down: existing pairs keep working; a new node joins once NATS is back', async (t) => {
  const l = theLab();
  await assertConverged(t, l, CONVERGE_MS);
  const aws = findPod(l.plan, 'aws-n1-p1');
  const gcp = findPod(l.plan, 'gcp-n2-p1');
  const warm = await pingUntil(l, aws, gcp, 15_000);
  t.true(warm.ok, warm.ok ? '' : await explainPair(l, aws, gcp, warm));

  await l.stopNats();
  // Fail-static: for longer than the node TTL, every ping across the clouds must still succeed.
  const until = Date.now() + OUTAGE_MS;
  while (Date.now() < until) {
    for (const [a, b] of [
      [aws, gcp],
      [gcp, aws],
    ] as const) {
      const r = await l.ping(a, b, 2);
      if (!r.ok) {
        t.fail(`during the NATS outage: ${await explainPair(l, a, b, r)}`);
        return;
      }
    }
  }
  // A node that starts while NATS is down cannot register…
  await l.startAgent('onprem-n1');
  const early = await pingUntil(l, findPod(l.plan, 'onprem-n1-p1'), aws, 3000);
  t.false(early.ok, 'onprem-n1 cannot be connected before it registers');
  // …and becomes reachable once NATS is back (same store: nodes, IPAM and keys survive).
  await l.startNats();
  const natsBack = Date.now();
  await assertConverged(t, l, CONVERGE_MS, 'after NATS restart: ');
  const onprem = findPod(l.plan, 'onprem-n1-p1');
  await assertReachable(t, l, [[onprem, aws], [aws, onprem], [onprem, gcp], [gcp, onprem]], 20_000);
  t.log(`onprem-n1 connected ${Date.now() - natsBack} ms after NATS came back`);
});

let awsKey = '';

test.serial('a removed node (SIGTERM → deregister) is dropped by its peers: routes gone', async (t) => {
  const l = theLab();
  awsKey = (await l.status('aws-n1')).node.publicKey;
  const awsNode = l.node('aws-n1');
  await l.stopAgent('aws-n1');
  // Every other node: the gateway and the NAT node drop the peer; the non-gateway gcp node its route via the gateway.
  const watchers = l.plan.nodes.map((n) => n.name).filter((n) => n !== 'aws-n1');
  const deadline = Date.now() + 15_000;
  for (const w of watchers) {
    const ns = l.node(w).ns;
    for (;;) {
      const route = (await l.exec(ns, ['ip', 'route', 'show', awsNode.podCidr])).stdout.trim();
      const known = (await l.status(w)).peers.some((p) => p.name === 'aws-n1' || p.carries.includes('aws-n1'));
      if (route === '' && !known) break;
      if (Date.now() > deadline) {
        t.fail(`${w} still routes to removed aws-n1 (${route || 'no route'}; peer known: ${known})\n${await l.diagnostics({ nodes: [w] })}`);
        return;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  t.pass();
});

test.serial('a restarted agent keeps its key and connectivity comes back', async (t) => {
  const l = theLab();
  await l.startAgent('aws-n1');
  await assertConverged(t, l, CONVERGE_MS);
  t.is((await l.status('aws-n1')).node.publicKey, awsKey);
  const aws = findPod(l.plan, 'aws-n1-p1');
  await assertReachable(t, l, ['gcp-n1-p1', 'gcp-n2-p1', 'onprem-n1-p1'].map((other) => [aws, findPod(l.plan, other)] as const), 20_000);
});

test.serial('key rotation (crosslink rotate-key): peers swap in the new key and connectivity comes back', async (t) => {
  const l = theLab();
  await assertConverged(t, l, CONVERGE_MS);
  const aws = findPod(l.plan, 'aws-n1-p1');
  const gateway = await activeGateway(l);
  // aws-n1 peers directly with the gcp gateway and the NATed onprem node.
  const watchers = [gateway, 'onprem-n1'];
  const others = watchers.map((w) => findPod(l.plan, `${w}-p1`));
  await assertReachable(t, l, others.map((o) => [aws, o] as const), 15_000);
  const oldKey = (await l.status('aws-n1')).node.publicKey;

  const cli = await execa(join(import.meta.dirname, '..', 'bin', 'crosslink'), ['rotate-key', '--json', '--socket', l.statusSocket('aws-n1')], { reject: false, timeout: 30_000 });
  t.is(cli.exitCode, 0, cli.stderr);
  const r = RotateKeyResponse.parse(JSON.parse(cli.stdout));
  t.is(r.oldPublicKey, oldKey);
  t.not(r.newPublicKey, oldKey);

  // Both directions flow again: the tunnels re-handshake with the new key.
  await assertReachable(t, l, others.flatMap((o) => [[aws, o] as const, [o, aws] as const]), 10_000);
  // What WireGuard itself holds on the peers: the new key, and the old one is gone.
  for (const w of watchers) {
    const node = l.node(w);
    const deadline = Date.now() + 5000;
    let dump: string;
    for (;;) {
      dump = (await l.exec(node.ns, ['wg', 'show', node.wgInterface, 'dump'])).stdout;
      if ((dump.includes(r.newPublicKey) && !dump.includes(oldKey)) || Date.now() > deadline) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    t.true(dump.includes(r.newPublicKey), `${w}: wg show lists the new key of aws-n1`);
    t.false(dump.includes(oldKey), `${w}: wg show no longer lists the old key of aws-n1`);
  }
  t.is((await l.status('aws-n1')).node.publicKey, r.newPublicKey);
});
