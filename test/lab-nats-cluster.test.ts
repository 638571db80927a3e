// Issue 10, "the lab can run its control plane on such a cluster": `lab up --nats-servers 3` — three
// routed nats-servers in the control namespace, the bucket at R3, coordinator and agents given all
// three URLs. The server leading the bucket's stream is stopped; a node started right after is
// reached from every pod over the tunnels (its registration, and every agent's watch, went through
// the surviving servers); the stopped server comes back and is a current replica again.
import test from 'ava';
import { waitFor } from '../lib/wait.ts';
import type { NatsClusterHealth } from '../lab/nats-health.ts';
import { assertConverged, assertReachable, useLab } from './helpers/lab-harness.ts';

const CONVERGE_MS = 60_000;
// The bound is 10 s. With the catch-up path (round 22) 12 runs here took 1.7–5.9 s at load 2–6
// (docs/benchmarks.md round 22), so this deadline is 5× the slowest seen: no timing assertion at the
// issue's bound on a shared CI box, but a return of the consumer-create wait (7–41 s before, one run
// past 60 s) fails it. The figure is logged below and recorded in docs/benchmarks.md.
const REACH_MS = 30_000;
const NATS_MS = 60_000;
const NEW_NODE = 'north-n1';

const theLab = useLab('nats-cluster', 'c', { deferAgents: [NEW_NODE], natsServers: 3 });

const describe = (h: NatsClusterHealth): string => JSON.stringify(h);

test.serial('3 NATS servers: the bucket stream leader stopped, a new node is reached from every pod; the server rejoins', async (t) => {
  const l = theLab();
  t.deepEqual(
    l.processes.filter((p) => p.role === 'nats-server').map((p) => p.name).sort(),
    ['nats-0', 'nats-1', 'nats-2'],
  );
  await assertConverged(t, l, CONVERGE_MS);

  // The coordinator made the bucket R3: a leader and two current followers.
  let last = '';
  const before = await waitFor(
    async () => {
      const h = await l.natsHealth();
      last = describe(h);
      return h.stream.leader !== null && h.stream.followers.length === 2 && h.stream.followers.every((f) => f.current) ? h : undefined;
    },
    { timeoutMs: NATS_MS, what: 'the bucket stream at R3 with a leader and two current replicas' },
  ).catch(() => undefined);
  if (!before?.stream.leader) return t.fail(`bucket stream not at R3 with current replicas: ${last}`);
  const leader = before.stream.leader;

  await l.stopNats(leader);
  const stoppedAt = Date.now();
  t.false(l.isRunning(leader));
  await l.startAgent(NEW_NODE);

  const fresh = l.node(NEW_NODE).pods[0]!;
  const others = l.plan.pods.filter((p) => p.node !== NEW_NODE);
  await assertReachable(t, l, others.flatMap((p) => [[p, fresh] as const, [fresh, p] as const]), REACH_MS);
  t.log(`${NEW_NODE} reached from every pod and back ${Date.now() - stoppedAt} ms after ${leader} (the bucket's stream leader) stopped`);

  // Another server leads the stream meanwhile; the stopped one, started again, is a current replica.
  const during = await l.natsHealth();
  t.not(during.stream.leader, leader, `the stopped server still reported as leader: ${describe(during)}`);
  t.false(during.members.find((m) => m.name === leader)?.up ?? true, `the stopped server still answers: ${describe(during)}`);

  await l.startNats(leader);
  const rejoined = await waitFor(
    async () => {
      const h = await l.natsHealth();
      last = describe(h);
      const replicas = [...(h.stream.leader ? [{ name: h.stream.leader, current: true }] : []), ...h.stream.followers];
      return h.members.every((m) => m.up) && replicas.length === 3 && replicas.every((r) => r.current) && replicas.some((r) => r.name === leader) ? h : undefined;
    },
    { timeoutMs: NATS_MS, what: `${leader} back as a current replica of the bucket stream` },
  ).catch(() => undefined);
  t.truthy(rejoined, `${leader} did not rejoin as a current replica: ${last}`);
  t.log(`${leader} a current replica again ${Date.now() - stoppedAt} ms after it was stopped`);
  await assertConverged(t, l, CONVERGE_MS, 'after the server returned: ');
});
