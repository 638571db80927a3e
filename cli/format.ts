// Pure text formatting for the CLI: tables, ages, byte counts, peer states. No I/O, so every
// layout decision is table-tested (test/cli-format.test.ts).
import type { AgentStatus, HeartbeatAuth, PeerStatus, RemotePath } from '../protocol/status.ts';
import { byName, compareText } from '../lib/compare.ts';
import { formatAge, formatBytes, renderTable } from '../lib/text-format.ts';
import { policyLine } from './policy-line.ts';

/** WireGuard re-handshakes every 2 minutes on an active session; 3 minutes without one means trouble. */
export const HANDSHAKE_UP_MS = 180_000;

/**
 * up: recent handshake. idle: no keepalive and nothing sent since the last session (WireGuard only
 * handshakes when there is traffic, so a quiet pair of public nodes is not a failure). stale: had a
 * session, lost it while keepalives or traffic are flowing. never: trying, never answered.
 */
export type PeerState = 'up' | 'idle' | 'stale' | 'never' | 'down' | 'pending';

export interface PeerActivity {
  readonly latestHandshakeAt: number | null;
  readonly persistentKeepalive: number;
  /** false: wanted, but missing from the live interface. */
  readonly onInterface?: boolean | undefined;
  readonly txBytes: number;
  /** The agent's active probe verdict (absent from older agents: then the handshake decides). */
  readonly probe?: { readonly state: 'up' | 'down' | 'pending' } | null | undefined;
}

/** With probes: the probe verdict (up / down / pending). Without (older agent): from the handshake. */
export function peerState(p: PeerActivity, now: number): PeerState {
  if (p.probe) return p.probe.state;
  return handshakeState(p, now);
}

export function handshakeState(p: PeerActivity, now: number): 'up' | 'idle' | 'stale' | 'never' {
  const never = p.latestHandshakeAt === null || p.latestHandshakeAt <= 0;
  if (!never && now - (p.latestHandshakeAt ?? 0) < HANDSHAKE_UP_MS) return 'up';
  if (p.persistentKeepalive === 0 && (!never || p.txBytes === 0)) return 'idle';
  return never ? 'never' : 'stale';
}

/** Healthy for exit codes: up, or idle (nothing asked of the tunnel yet). */
export const peerHealthy = (p: PeerActivity, now: number): boolean => {
  if (p.onInterface === false) return false;
  const state = peerState(p, now);
  return state === 'up' || state === 'idle';
};

export function peerPathText(p: Pick<PeerStatus, 'path' | 'via' | 'carries'>): string {
  if (p.path === 'relay') return `relay via ${p.via ?? '?'}`;
  if (p.path === 'gateway') return `gateway (${p.carries.length} node${p.carries.length === 1 ? '' : 's'})`;
  return 'direct';
}

/** Configured vs learned: NATed peers have no configured endpoint and WireGuard learns one. */
export function endpointText(p: Pick<PeerStatus, 'configuredEndpoint' | 'endpoint'>): string {
  if (p.configuredEndpoint === null) return p.endpoint === null ? '(none yet)' : `${p.endpoint} (learned)`;
  if (p.endpoint === null || p.endpoint === p.configuredEndpoint) return p.configuredEndpoint;
  return `${p.configuredEndpoint} (now ${p.endpoint})`;
}

export function formatPeerTable(peers: readonly PeerStatus[], now: number): string {
  if (peers.length === 0) return 'No peers.';
  const probed = peers.some((p) => p.probe);
  const rows = [...peers]
    .sort((a, b) => compareText(a.cluster, b.cluster) || byName(a, b))
    .map((p) => [
      p.name,
      p.cluster,
      peerPathText(p),
      endpointText(p),
      formatAge(p.latestHandshakeAt, now),
      formatBytes(p.rxBytes),
      formatBytes(p.txBytes),
      ...(probed ? [p.probe?.rttMs == null ? '-' : `${p.probe.rttMs.toFixed(1)} ms`, p.probe ? `${p.probe.lossPct}%` : '-'] : []),
      peerState(p, now),
    ]);
  return renderTable(['PEER', 'CLUSTER', 'PATH', 'ENDPOINT', 'HANDSHAKE', 'RX', 'TX', ...(probed ? ['RTT', 'LOSS'] : []), 'STATE'], rows);
}

/** Peers that are not up, with the agent's reason ("node-b: down: no answer to the last 3 probes …"). */
export function peerProblems(peers: readonly PeerStatus[], now: number): string[] {
  return peers
    .filter((p) => !peerHealthy(p, now))
    .map((p) => (p.onInterface === false ? `${p.name}: not on the interface (wanted but missing live; the agent re-adds it)` : `${p.name}: ${peerState(p, now)}${p.probe ? `: ${p.probe.reason}` : ''}`));
}

/** The live interface differs from what the agent applies (MTU changed by hand, interface gone). */
export function dataplaneProblems(s: AgentStatus): string[] {
  const live = s.dataplane.liveMtu;
  if (live === undefined || live === s.dataplane.mtu) return [];
  return [live === null ? `cannot read the MTU of ${s.dataplane.interface} (interface missing?)` : `interface MTU is ${live}, configured ${s.dataplane.mtu} (changed by hand? the agent sets it back)`];
}

export function remotePathText(r: RemotePath): string {
  switch (r.path) {
    case 'direct':
      return 'direct';
    case 'relay':
      return `via relay ${r.via ?? '?'}`;
    case 'gateway':
      return `via gateway ${r.via ?? '?'}`;
    case 'local-gateway':
      return `via local gateway ${r.via ?? '?'}`;
    case 'none':
      return `none: ${r.reason ?? 'no path'}`;
  }
}

export function formatRemoteTable(remotes: readonly RemotePath[]): string {
  if (remotes.length === 0) return 'No remote nodes.';
  return renderTable(
    ['REMOTE', 'CLUSTER', 'PATH'],
    remotes.map((r) => [r.node, r.cluster, remotePathText(r)]),
  );
}

/**
 * 0 when the agent is ready, the control plane answers (heartbeats acknowledged recently), the live
 * interface has the configured MTU and every peer is on it and reachable (probes answered) — a
 * scriptable health check.
 */
export function statusExitCode(status: AgentStatus, now: number): 0 | 1 {
  if (!status.ready) return 1;
  if (status.controlPlane.health && !status.controlPlane.health.answering) return 1;
  if (dataplaneProblems(status).length > 0) return 1;
  return status.peers.every((p) => peerHealthy(p, now)) ? 0 : 1;
}

const yesNo = (b: boolean): string => (b ? 'yes' : 'no');

/** The live MTU; says so when it differs from the configured one or cannot be read. */
export function mtuText(s: AgentStatus): string {
  const live = s.dataplane.liveMtu;
  if (live === undefined) return String(s.dataplane.mtu);
  if (live === null) return `${s.dataplane.mtu} configured (live MTU unreadable)`;
  return live === s.dataplane.mtu ? String(live) : `${live} (CONFIGURED ${s.dataplane.mtu})`;
}

export function formatStatus(s: AgentStatus, now: number): string {
  const n = s.node;
  const roles = [n.isGateway ? 'gateway' : null, n.isRelay ? 'relay' : null].filter((x) => x !== null);
  const cp = s.controlPlane;
  const rec = s.lastReconcile;
  const reconcile =
    rec === null
      ? 'not yet'
      : rec.ok
        ? `ok ${formatAge(rec.at, now)} (${rec.changes} change${rec.changes === 1 ? '' : 's'}, ${rec.durationMs} ms)`
        : `FAILED ${formatAge(rec.at, now)}: ${rec.error ?? 'unknown error'}`;
  const up = s.peers.filter((p) => peerState(p, now) === 'up').length;
  const head: [string, string][] = [
    ['Node', `${n.name} (cluster ${n.cluster}, location ${n.location}${roles.length > 0 ? `, ${roles.join(' + ')}` : ''})`],
    ['Overlay IP', n.overlayIp ?? '(none: not registered)'],
    ['Public key', n.publicKey],
    ['Endpoints', n.endpoints.length > 0 ? n.endpoints.join(', ') : '(none: behind NAT)'],
    ['Pod CIDRs', n.podCidrs.join(', ') || '(none)'],
    ['Topology', n.topology],
    ['Data plane', `${s.dataplane.backend} WireGuard on ${s.dataplane.interface}, port ${s.dataplane.listenPort}, MTU ${mtuText(s)}`],
    [
      'Control plane',
      cp.revoked
        ? `REVOKED by an operator (no registrations or heartbeats): ${cp.revoked}`
        : `${cp.connected ? 'connected' : 'DISCONNECTED'}, ${cp.registered ? 'registered' : 'NOT registered'}, last heartbeat ${formatAge(cp.lastHeartbeatAt, now)}, ${cp.knownNodes} node${cp.knownNodes === 1 ? '' : 's'} known${cp.health && !cp.health.answering ? ` — NOT ANSWERING: ${cp.health.reason}` : ''}`,
    ],
    ...(cp.heartbeat ? [['Heartbeats', heartbeatLine(cp.heartbeat)] as [string, string]] : []),
    ['Last reconcile', reconcile],
    ['Ready', yesNo(s.ready)],
    ['Peers', `${up}/${s.peers.length} up`],
    ['Policy', policyLine(s.policy)],
  ];
  const width = Math.max(...head.map(([k]) => k.length));
  const lines = head.map(([k, v]) => `${`${k}:`.padEnd(width + 2)}${v}`);
  const out = [lines.join('\n'), '', formatPeerTable(s.peers, now), '', formatRemoteTable(s.remotes)];
  if (s.refusedRoutes.length > 0) {
    out.push('', 'Refused routes (the route guard keeps these peer CIDRs out of WireGuard and the route table):');
    out.push(renderTable(['CIDR', 'NODE', 'CLUSTER', 'REASON'], s.refusedRoutes.map((r) => [r.cidr, r.node, r.cluster, r.reason])));
  }
  if (s.relays.length > 0) {
    out.push('', renderTable(['RELAY PORT', 'BETWEEN', 'PACKETS', 'BYTES'], s.relays.map((r) => [String(r.port), `${r.between[0]} <-> ${r.between[1]}`, String(r.packets), formatBytes(r.bytes)])));
  }
  const problems = [...s.errors, ...dataplaneProblems(s), ...peerProblems(s.peers, now)];
  if (problems.length > 0) out.push('', 'Problems:', ...problems.map((e) => `  - ${e}`));
  return out.join('\n');
}

/** How the agent authenticates its heartbeats, and why it signs when it fell back from MACs. */
function heartbeatLine(h: HeartbeatAuth): string {
  if (h.form === 'mac') return `MAC (key agreed with coordinator key ${h.coordinatorKey ?? '?'})`;
  if (h.fallback === null) return 'signed (no MAC key agreed)';
  return `signed: the coordinator refused the MAC (${h.fallback.code}: ${h.fallback.message}); MAC again after the next registration`;
}

export interface NodeRow {
  readonly key: string;
  readonly name: string;
  readonly cluster: string;
  readonly location: string;
  readonly overlayIp: string;
  readonly endpoints: readonly string[];
  readonly podCidrs: readonly string[];
  /** 'active' (the cluster's gateway), 'eligible', or '' */
  readonly gateway: string;
  /** null: verified; else why the record was refused. */
  readonly problem: string | null;
}

export function formatNodeTable(rows: readonly NodeRow[]): string {
  if (rows.length === 0) return 'No nodes registered.';
  const table = renderTable(
    ['NAME', 'CLUSTER', 'LOCATION', 'OVERLAY IP', 'ENDPOINTS', 'POD CIDRS', 'GATEWAY', 'SIGNATURE'],
    rows.map((r) =>
      r.problem === null
        ? [r.name, r.cluster, r.location, r.overlayIp, r.endpoints.join(',') || '(NAT)', r.podCidrs.join(','), r.gateway || '-', '✓ verified']
        : [r.name, '?', '?', '?', '?', '?', '?', '✗ REFUSED'],
    ),
  );
  const problems = rows.filter((r) => r.problem !== null);
  if (problems.length === 0) return table;
  return [table, '', 'Refused records (ignored by every agent):', ...problems.map((r) => `  ✗ ${r.key}: ${r.problem ?? ''}`)].join('\n');
}
