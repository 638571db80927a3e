// Pure: the lab's NATS servers. One server (the default: process "nats-server" on :4222, bucket
// R1) or a cluster (`lab up --nats-servers 3`: processes nats-0 … nats-<n-1> in the control
// namespace, client ports 4222+i, route ports 6222+i, monitoring 8222+i, routes to every member;
// the coordinator's bucket at R3), like deploy/control-plane/nats.yaml's StatefulSet.
import { join } from 'node:path';
import { ValidationError } from '../lib/errors.ts';
import { clusterRoutes, natsServerArgv } from '../lib/nats-server.ts';

export const NATS_PORT = 4222;
export const NATS_ROUTE_PORT = 6222;
export const NATS_MONITOR_PORT = 8222;
/** JetStream keeps a majority only with an odd number of servers; 5 is the largest stream replication. */
export const NATS_SERVER_COUNTS: readonly number[] = [1, 3, 5];

export interface NatsMemberPlan {
  /** Lab process name: `nats-server` alone, `nats-<i>` in a cluster (`lab stop nats-1`). */
  readonly name: string;
  /** nats-server's own name (`-n`): what a stream's cluster info reports as leader or replica. */
  readonly serverName: string;
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /** HTTP monitoring (/jsz); cluster members only. */
  readonly monitorPort: number | null;
  /** Route port; cluster members only. */
  readonly routePort: number | null;
}

export interface NatsPlan {
  readonly members: readonly NatsMemberPlan[];
  readonly clusterName: string | null;
  /** Replicas of the coordinator's bucket: 1 on one server, 3 on a cluster. */
  readonly bucketReplicas: number;
  /** Every member's URL, comma-separated: what the coordinator, `cluster add` and agents are given. */
  readonly urls: string;
}

export function checkNatsServerCount(value: unknown): number {
  const n = typeof value === 'string' && /^[0-9]+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !NATS_SERVER_COUNTS.includes(n)) {
    throw new ValidationError('--nats-servers', value, `must be ${NATS_SERVER_COUNTS.join(', ').replace(/, (\d+)$/, ' or $1')} (a NATS cluster needs an odd number of servers)`);
  }
  return n;
}

export function planNats(id: string, host: string, count: number): NatsPlan {
  checkNatsServerCount(count);
  if (count === 1) {
    const url = `nats://${host}:${NATS_PORT}`;
    return {
      members: [{ name: 'nats-server', serverName: `xl-${id}-nats`, host, port: NATS_PORT, url, monitorPort: null, routePort: null }],
      clusterName: null,
      bucketReplicas: 1,
      urls: url,
    };
  }
  const members = Array.from({ length: count }, (_, i): NatsMemberPlan => {
    const port = NATS_PORT + i;
    return { name: `nats-${i}`, serverName: `xl-${id}-nats-${i}`, host, port, url: `nats://${host}:${port}`, monitorPort: NATS_MONITOR_PORT + i, routePort: NATS_ROUTE_PORT + i };
  });
  return { members, clusterName: `xl-${id}-nats`, bucketReplicas: 3, urls: members.map((m) => m.url).join(',') };
}

/** The store directory of one member under the lab's state dir (a single server keeps the old `nats`). */
export function natsMemberStoreDir(labStateDir: string, member: NatsMemberPlan): string {
  return join(labStateDir, member.name === 'nats-server' ? 'nats' : member.name);
}

/** nats-server's command line for one member (run inside the control namespace). */
export function natsMemberArgv(nats: NatsPlan, member: NatsMemberPlan, storeDir: string): string[] {
  const routePorts = nats.members.flatMap((m) => (m.routePort === null ? [] : [m.routePort]));
  return natsServerArgv({
    host: member.host,
    port: member.port,
    storeDir,
    name: member.serverName,
    ...(member.monitorPort !== null ? { monitorPort: member.monitorPort } : {}),
    ...(nats.clusterName !== null && member.routePort !== null
      ? { cluster: { name: nats.clusterName, port: member.routePort, routes: clusterRoutes(member.host, routePorts) } }
      : {}),
  });
}

/** The member a drill names: its process name, or `nats`/`nats-server` when there is only one. */
export function findNatsMember(nats: NatsPlan, name: string): NatsMemberPlan | undefined {
  const only = nats.members.length === 1 ? nats.members[0] : undefined;
  if (only && (name === 'nats' || name === 'nats-server')) return only;
  return nats.members.find((m) => m.name === name);
}
