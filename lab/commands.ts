// Pure: the command lines of the lab's long-running processes, from the plan and the lab's paths.
import { basename, join } from 'node:path';
import { formatDuration } from '../lib/duration.ts';
import { natsMemberArgv, natsMemberStoreDir, type NatsMemberPlan } from './nats-plan.ts';
import { RELAY_PORT_FIRST, RELAY_PORT_LAST, WIREGUARD_PORT, type CloudPlan, type LabPlan, type NodePlan } from './plan.ts';

export interface LabPaths {
  readonly repoRoot: string;
  /** The lab's state dir, <lab root>/<id> (absolute; lab/state.ts labRoot) */
  readonly dir: string;
}

/** Every lab agent serves clusterset.local here, inside its node namespace (docs/services.md). */
export const LAB_DNS_PORT = 5353;

export const signingKeyFile = (p: LabPaths): string => join(p.dir, 'coordinator.key');
export const nodeDir = (p: LabPaths, node: string): string => join(p.dir, node);
/** Unix socket paths are limited to 107 bytes; a deep checkout (CI) moves sockets to a short dir. */
const MAX_SOCKET_PATH = 100;
export const shortSocketDir = (id: string): string => `/run/xl-lab-${id}`;
export const statusSocket = (p: LabPaths, node: string): string => {
  const inState = join(p.dir, node, 'agent.sock');
  return inState.length <= MAX_SOCKET_PATH ? inState : join(shortSocketDir(basename(p.dir)), `${node}.sock`);
};
export const logFile = (p: LabPaths, name: string): string => join(p.dir, `${name}.log`);
/** The cloud's join credential, written by `cluster add` (mode 0600). */
export const joinCredentialFile = (p: LabPaths, cloud: string): string => join(p.dir, `join-${cloud}.json`);

const inNs = (ns: string, argv: readonly string[]): string[] => ['ip', 'netns', 'exec', ns, ...argv];

/** One NATS server of the lab (lab/nats-plan.ts), in the control namespace. */
export function natsArgv(plan: LabPlan, paths: LabPaths, member: NatsMemberPlan): string[] {
  return inNs(plan.ctlNs, natsMemberArgv(plan.nats, member, natsMemberStoreDir(paths.dir, member)));
}

export function coordinatorArgv(plan: LabPlan, paths: LabPaths, logLevel = 'info'): string[] {
  return inNs(plan.ctlNs, [
    join(paths.repoRoot, 'bin', 'crosslink-coordinator'),
    '--nats-url', plan.natsUrl,
    '--overlay-cidr', plan.topology.overlayCidr,
    '--node-ttl', formatDuration(plan.topology.timers.nodeTtlMs),
    '--signing-key-file', signingKeyFile(paths),
    '--bucket', 'crosslink',
    '--replicas', String(plan.nats.bucketReplicas),
    '--log-level', logLevel,
  ]);
}

/** The operator's enrollment of one cloud: `crosslink-coordinator cluster add`, its nodes' pod CIDRs as the cluster's ranges. */
export function clusterAddArgv(plan: LabPlan, paths: LabPaths, cloud: CloudPlan): string[] {
  return inNs(plan.ctlNs, [
    join(paths.repoRoot, 'bin', 'crosslink-coordinator'),
    'cluster', 'add', cloud.name,
    ...cloud.nodes.flatMap((n) => ['--pod-cidr', n.podCidr]),
    '--topology', cloud.topology,
    '--credential-out', joinCredentialFile(paths, cloud.name),
    '--nats-url', plan.natsUrl,
    '--signing-key-file', signingKeyFile(paths),
    '--bucket', 'crosslink',
  ]);
}

export function agentArgv(plan: LabPlan, node: NodePlan, paths: LabPaths, coordinatorKey: string, logLevel = 'info'): string[] {
  const t = plan.topology.timers;
  return inNs(node.ns, [
    join(paths.repoRoot, 'bin', 'crosslink-agent'),
    '--no-kubernetes',
    '--nats-url', plan.natsUrl,
    '--node-name', node.name,
    '--cluster', node.cloud,
    '--location', node.location,
    '--pod-cidr', node.podCidr,
    ...(node.publicIp ? ['--endpoint', `${node.publicIp}:${WIREGUARD_PORT}`] : []),
    '--private-address', node.vpcIp,
    '--listen-port', String(WIREGUARD_PORT),
    '--interface', node.wgInterface,
    '--state-dir', nodeDir(paths, node.name),
    '--status-socket', statusSocket(paths, node.name),
    '--wireguard', 'userspace',
    '--coordinator-key', coordinatorKey,
    '--join-credential-file', joinCredentialFile(paths, node.cloud),
    '--topology', node.topology,
    ...(node.gatewayEligible === undefined ? [] : [node.gatewayEligible ? '--gateway-eligible' : '--no-gateway-eligible']),
    '--nat-keepalive', String(t.natKeepaliveSec),
    '--resync-interval', formatDuration(t.resyncIntervalMs),
    '--relay-port-range', `${RELAY_PORT_FIRST}-${RELAY_PORT_LAST}`,
    '--dns-addr', `127.0.0.1:${LAB_DNS_PORT}`,
    '--log-level', logLevel,
  ]);
}
