// Data-plane figures (pure, in-process): computeDesiredState time as the mesh grows (the agent runs
// it on every change) and the commands needed on an agent when one node joins (must stay constant).
import { performance } from 'node:perf_hooks';
import { computeDesiredState } from '../agent/plan/desired-state.ts';
import { IncrementalPlanner } from '../agent/plan/incremental-plan.ts';
import type { HostFacts } from '../agent/plan/route-guard.ts';
import { diffWireguard, wireguardCommands } from '../agent/dataplane/wg-diff.ts';
import { diffRoutes, routeCommands, type LiveRoute } from '../agent/dataplane/route-diff.ts';
import type { DataplaneConfig, DesiredState, MeshView } from '../agent/plan/model.ts';
import type { LiveWireguard } from '../agent/dataplane/wg-dump.ts';
import { syntheticMesh, syntheticNode } from './fixtures.ts';
import { median, printTable } from './report.ts';

const config: DataplaneConfig = {
  interfaceName: 'crosslink0',
  listenPort: 51820,
  mtu: 1420,
  natKeepaliveSec: 25,
  relayPortBase: 52000,
  relayPortSpan: 1000,
};

function timeIt(fn: () => void, minRuns = 5, budgetMs = 1500): { medianMs: number; runs: number } {
  const samples: number[] = [];
  const start = performance.now();
  while (samples.length < minRuns || (performance.now() - start < budgetMs && samples.length < 200)) {
    const t0 = performance.now();
    fn();
    samples.push(performance.now() - t0);
  }
  return { medianMs: median(samples), runs: samples.length };
}

/** Live state exactly matching `desired`, as an agent would have after converging. */
function liveFrom(desired: DesiredState): { wg: LiveWireguard; routes: LiveRoute[] } {
  return {
    wg: {
      interface: { publicKey: null, listenPort: desired.interface.listenPort, fwmark: 0 },
      peers: desired.peers.map((p) => ({
        publicKey: p.publicKey,
        endpoint: p.endpoint,
        allowedIps: p.allowedIps,
        latestHandshakeAt: null,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: p.persistentKeepalive,
        hasPresharedKey: false,
      })),
    },
    routes: desired.routes.map((r) => ({ dst: r.dst, dev: r.dev ?? null, via: r.via ?? null, metric: r.dst.includes(':') ? 1024 : 0, protocol: '149', scope: null })),
  };
}

function joinCost(view: MeshView, newIndex: number, clusters: number): number {
  const before = computeDesiredState(view, config);
  const live = liveFrom(before);
  const joined = syntheticNode(newIndex, clusters, false);
  const nodes = new Map(view.nodes);
  nodes.set(joined.name, joined);
  const after = computeDesiredState({ ...view, nodes }, config);
  const wg = wireguardCommands(config.interfaceName, diffWireguard({ listenPort: after.interface.listenPort, peers: after.peers }, live.wg));
  const rdiff = diffRoutes(after.routes, live.routes);
  const rc = routeCommands(rdiff, new Set(live.routes.map((r) => r.dst)));
  return wg.upserts.length + wg.removals.length + rc.upserts.length + rc.removals.length;
}

/** A host as the agent sees it (a connected subnet, a default route, a NATS server): the route guard has work. */
const HOST: HostFacts = {
  addresses: [{ cidr: '192.168.77.2/24', dev: 'eth0' }],
  routes: [{ dst: '0.0.0.0/0', dev: 'eth0', via: '192.168.77.1', protocol: 'boot', scope: null }],
  natsAddresses: ['192.168.77.1'],
};

/**
 * What one join costs the agent's planner: the full computation on the grown mesh, and the
 * incremental planner (agent/plan/incremental-plan.ts) editing its previous result — joins and
 * leaves alternating, each a new snapshot map as the KV watch delivers it. Returns median ms and
 * how many of the timed plans took the incremental path.
 */
function perJoinPlan(view: MeshView, newIndex: number, clusters: number): { fullMs: number; incrementalMs: number; incremental: string } {
  const joined = syntheticNode(newIndex, clusters, false);
  const withJoiner = new Map(view.nodes);
  withJoiner.set(joined.name, joined);
  const views = [view, { ...view, nodes: withJoiner }];
  let i = 0;
  const full = timeIt(() => computeDesiredState(views[1] ?? view, config, HOST));
  const planner = new IncrementalPlanner();
  planner.compute(view, config, HOST);
  const before = planner.stats();
  const inc = timeIt(() => {
    i++;
    const v = views[i % 2] ?? view;
    planner.compute({ ...v, nodes: new Map(v.nodes) }, config, HOST);
  });
  const after = planner.stats();
  return { fullMs: full.medianMs, incrementalMs: inc.medianMs, incremental: `${after.incremental - before.incremental}/${after.incremental - before.incremental + after.full - before.full}` };
}

/** Section "dataplane": computeDesiredState time and the commands one join costs an agent. */
export function runDataPlane(): void {
  const rows: string[][] = [];
  for (const [nodes, clusters, nat] of [
    [100, 4, 0],
    [1000, 10, 0],
    [3000, 10, 0],
    [1000, 10, 0.1],
    [3000, 10, 0.1],
  ] as const) {
    const view = syntheticMesh({ nodes, clusters, natFraction: nat }, 1);
    let peers = 0;
    const { medianMs, runs } = timeIt(() => {
      peers = computeDesiredState(view, config).peers.length;
    });
    // The joining node lands in another cluster than self (node-1), so it becomes a peer.
    const joinerIndex = nodes + (clusters - ((nodes - 1) % clusters)) + 1;
    const cost = joinCost(view, joinerIndex, clusters);
    const plan = perJoinPlan(view, joinerIndex, clusters);
    rows.push([
      `mesh${nat ? `, ${nat * 100}% NAT (relay planning)` : ''}`,
      String(nodes),
      String(peers),
      medianMs.toFixed(2),
      String(runs),
      String(cost),
      plan.fullMs.toFixed(2),
      plan.incrementalMs.toFixed(3),
      plan.incremental,
    ]);
  }
  printTable({
    title: 'data plane: desired-state computation and commands per join (pure, in-process)',
    header: ['scenario', 'nodes', 'peers', 'median ms', 'runs', 'cmds on 1 join', 'per join: full plan ms (host facts)', 'incremental plan ms', 'incremental / plans'],
    rows,
  });
}
