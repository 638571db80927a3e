// Multi-cluster services on real packets (lab/topologies/two-nodes.yaml: clouds east and west,
// real nats-server, coordinator, agents, wireguard-go): a service exported from a pod in east is
// resolved from the west node through its agent's DNS and a west pod connects to it over the
// overlay; exported from both clouds each side answers its own cloud first; when east's agent
// stops, east's endpoint leaves west's answers within the node TTL and west's remains.
import test from 'ava';
import { findPod } from '../lab/plan.ts';
import { connectFrom, exportFromPod, resolveFrom, startEchoServer, type EchoServer } from '../lab/services.ts';
import { assertConverged, useLab } from './helpers/lab-harness.ts';

const SERVICE = 'echo.demo';
const PORT = 8080;

const theLab = useLab('two-nodes', 's');

async function answersWithin(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
}

test.serial('export in east, resolve and connect from west; both clouds local-first; east stops → only west remains', async (t) => {
  const l = theLab();
  await assertConverged(t, l, 60_000);
  const eastPod = findPod(l.plan, 'east-n1-p1');
  const westPod = findPod(l.plan, 'west-n1-p1');
  const east = l.node('east-n1');
  const west = l.node('west-n1');
  const servers: EchoServer[] = [];
  try {
    servers.push(await startEchoServer(l, eastPod, PORT));
    await exportFromPod(l, SERVICE, servers[0]!);

    // Resolved from the west node through its own agent's DNS…
    t.true(await answersWithin(async () => (await resolveFrom(l, west, SERVICE)).join() === eastPod.ip, 10_000), `west answers ${eastPod.ip}`);
    // …and a west pod reaches the answer over the overlay (WireGuard between the clouds).
    const [ip] = await resolveFrom(l, west, SERVICE);
    let reply = '';
    t.true(
      await answersWithin(async () => {
        reply = await connectFrom(l, westPod, ip ?? '', PORT);
        return true;
      }, 20_000),
      `west pod could not connect to ${ip ?? '?'}:${PORT}`,
    );
    t.is(reply, `hello from ${eastPod.name}`);

    // Exported from west too: each cloud answers its own endpoint first.
    servers.push(await startEchoServer(l, westPod, PORT));
    await exportFromPod(l, SERVICE, servers[1]!);
    t.true(await answersWithin(async () => (await resolveFrom(l, west, SERVICE)).join() === `${westPod.ip},${eastPod.ip}`, 10_000), 'west: local first');
    t.true(await answersWithin(async () => (await resolveFrom(l, east, SERVICE)).join() === `${eastPod.ip},${westPod.ip}`, 10_000), 'east: local first');

    // East's agent stops: its node leaves, and so do its endpoints; west's remains.
    const bound = l.plan.topology.timers.nodeTtlMs;
    await l.stopAgent('east-n1');
    const stoppedAt = Date.now();
    t.true(await answersWithin(async () => (await resolveFrom(l, west, SERVICE)).join() === westPod.ip, bound), `east's endpoint still answered after the node TTL (${bound} ms)`);
    t.log(`east's endpoint left west's answers ${Date.now() - stoppedAt} ms after its agent stopped (bound: node TTL ${bound} ms)`);
    t.is(await connectFrom(l, westPod, westPod.ip, PORT), `hello from ${westPod.name}`);
  } finally {
    for (const s of servers) await s.stop();
  }
});
