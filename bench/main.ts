// `npm run bench [-- section ...]`: cost figures of the control plane and the data plane. Prints one
// table per section; asserts nothing. Sections (default: all but agent, about 6 minutes on 2 cores):
//   dataplane     computeDesiredState time and commands per join (pure, in-process)
//   registration  registration storm of 100/500/1000 agents (registration:2000,4000 for other sizes)
//   fanout        latency from a join to 50 watchers having the record
//   heartbeat     coordinator CPU per heartbeat and idle, per thread (heartbeat:<sizes,...>, default 200,1000)
//   restart       nats-server and coordinator restarts, fleet re-registration and the periodic audit
//                 with 500 nodes and 50 watchers (restart:2000)
//   policy        policy set → nftables table replaced on 10 agents (real nft, one netns each; policy:<agents>),
//                 then on a small real lab (4 real agents, `policy set` as an operator runs it)
//   agent         one real agent (compiled, real wireguard-go, own netns) among N simulated nodes
//                 (agent:1000,3000; not in the default set: minutes per size)
//   probing       peer probing cost per node and peer per minute: datagrams, bytes, CPU (real sockets in a
//                 netns; probing:<peers,...>, default 10,50)
//   idle          an idle converged default lab: mutating data-plane commands (0), reconciles, probe
//                 datagrams and agent CPU per minute, read from the agents' /metrics
//   memory        coordinator RSS after registering N nodes and after a restart that loads them
//                 (memory:<nodes>, default 10000; not in the default set)
//   failover      health-driven gateway failover on the default lab: UDP to gcp's active gateway
//                 dropped → replaced → traffic flowing (failover:<trials>, default 5; not in the default set)
//   failover-coordinator  the leader coordinator SIGKILLed while a follower runs, N nodes heartbeating:
//                 lease expiry → takeover → bucket loaded → leader up → every node heard again
//                 (failover-coordinator:<nodes>[,<trials>], default 1000,3; not in the default set)
//   nats-server-loss  a 3-server NATS cluster loses the bucket stream's leader: new leader, registration,
//                 heartbeat gap, lease kept, every watch resumed, rejoin (nats-server-loss:<trials>[,<nodes>],
//                 default 5,300; not in the default set)
import { randomBytes } from 'node:crypto';
import { NatsServer } from '../lib/nats-server.ts';
import { runDataPlane } from './data-plane.ts';
import { insideRealAgentNamespace, runRealAgent } from './real-agent.ts';
import { onBenchInterrupt, stopOnInterrupt } from './interrupt.ts';
import { runPolicyPropagation } from './policy.ts';
import { runPolicyLab } from './policy-lab.ts';
import { runProbingCost } from './probing.ts';
import { runIdleLab } from './idle.ts';
import { runGatewayFailover } from './gateway-failover.ts';
import { runCoordinatorFailover } from './coordinator-failover.ts';
import { runCoordinatorMemory, runFanOut, runRegistrationStorm, runRestartStorm } from './control-plane.ts';
import { HEARTBEAT_LOAD_DEFAULTS, runHeartbeatLoad } from './heartbeat-load.ts';
import { runNatsServerLoss } from './nats-server-loss.ts';

/** Each control-plane section, with an optional argument after a colon (e.g. `registration:2000,4000`). */
const CONTROL_PLANE: Record<string, (server: NatsServer, arg: number[] | undefined) => Promise<void>> = {
  registration: (s, sizes) => runRegistrationStorm(s, sizes),
  fanout: (s) => runFanOut(s),
  heartbeat: (s, sizes) => runHeartbeatLoad(s, sizes === undefined ? HEARTBEAT_LOAD_DEFAULTS : { ...HEARTBEAT_LOAD_DEFAULTS, sizes }),
  policy: async (s, n) => {
    await runPolicyPropagation(s, n?.[0]);
    await runPolicyLab();
  },
  restart: (s, n) => runRestartStorm(s, n?.[0] === undefined ? undefined : { nodes: n[0], watchers: 50, nodeTtl: '20s' }),
  memory: (s, n) => runCoordinatorMemory(s, n?.[0]),
  'failover-coordinator': (s, n) => runCoordinatorFailover(s, n?.[0], n?.[1]),
};
/** Sections that need no nats-server. */
const STANDALONE: Record<string, (arg: number[] | undefined) => Promise<void>> = {
  probing: (peers) => runProbingCost(peers),
  idle: () => runIdleLab(),
  failover: (trials) => runGatewayFailover(trials?.[0]),
  'nats-server-loss': (n) => runNatsServerLoss(n?.[0], n?.[1]),
};
/** Run only when asked for by name. */
const ON_REQUEST = new Set(['agent', 'failover', 'memory', 'failover-coordinator', 'nats-server-loss']);
const ALL = ['dataplane', ...Object.keys(STANDALONE), ...Object.keys(CONTROL_PLANE)].filter((s) => !ON_REQUEST.has(s));

function parseSection(text: string): { name: string; arg: number[] | undefined } | undefined {
  const [name = '', arg] = text.split(':', 2);
  if (!ALL.includes(name) && !ON_REQUEST.has(name)) return undefined;
  if (arg === undefined) return { name, arg: undefined };
  const nums = arg.split(',').map(Number);
  return nums.every((n) => Number.isInteger(n) && n > 0) ? { name, arg: nums } : undefined;
}

async function main(): Promise<void> {
  const asked = process.argv.slice(2).map((a) => ({ text: a, parsed: parseSection(a) }));
  const bad = asked.filter((a) => a.parsed === undefined).map((a) => JSON.stringify(a.text));
  if (bad.length > 0) {
    console.error(`unknown section ${bad.join(', ')}; use one or more of: ${ALL.join(', ')}, agent or failover (registration:<sizes,...>, agent:<sizes,...>, restart:<nodes>, failover:<trials>, failover-coordinator:<nodes>,<trials> and nats-server-loss:<trials>,<nodes> take a size; heartbeat:<sizes,...> too)`);
    process.exitCode = 2;
    return;
  }
  const real = asked.find((a) => a.parsed?.name === 'agent');
  // Ctrl-C / SIGTERM stops every process the bench started before it exits (bench/interrupt.ts). Not in
  // the real-agent section's outer process: it forwards the signal to the run in the namespace, waits
  // for it and then removes the namespace itself.
  if (!real || insideRealAgentNamespace()) stopOnInterrupt();
  if (real) {
    // Runs on its own (its own nats-server and namespace); default sizes 1,000 and 3,000.
    await runRealAgent(real.parsed?.arg ?? [1000, 3000]);
    return;
  }
  const sections = asked.length > 0 ? asked.flatMap((a) => (a.parsed ? [a.parsed] : [])) : ALL.map((name) => ({ name, arg: undefined }));
  console.log(`crosslink benchmarks: ${sections.map((s) => s.name).join(', ')} (node ${process.version}, ${new Date().toISOString()})\n`);
  if (sections.some((s) => s.name === 'dataplane')) runDataPlane();
  for (const s of sections) {
    const run = STANDALONE[s.name];
    if (!run) continue;
    const t0 = Date.now();
    await run(s.arg);
    console.log(`(${s.name}: ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
  }
  const cp = sections.filter((s) => s.name !== 'dataplane' && !(s.name in STANDALONE));
  if (cp.length === 0) return;
  // One nats-server for all control-plane sections; each section uses its own bucket and subjects.
  const server = await NatsServer.start({ name: `xl-bench-${randomBytes(3).toString('hex')}` });
  // Interrupted: the process is already stopped with every other child; this removes its store.
  const unregister = onBenchInterrupt(() => server.stop());
  try {
    for (const s of cp) {
      const t0 = Date.now();
      await CONTROL_PLANE[s.name]?.(server, s.arg);
      console.log(`(${s.name}: ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
    }
  } finally {
    unregister();
    await server.stop();
  }
}

await main();
