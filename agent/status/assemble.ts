// GET /status: the AgentStatus document (protocol/status.ts), assembled from plain inputs — the
// node's identity, the control plane's state, the watch's snapshot, the last desired state and
// reconcile, and what WireGuard holds live. Pure: the agent gathers the inputs (one live read).
import type { ControlPlaneHealth, PeerProbe } from '../../protocol/health.ts';
import type { NodeRecord } from '../../protocol/messages.ts';
import type { PolicyStatus } from '../../protocol/policy/status.ts';
import type { AgentStatus, PeerStatus } from '../../protocol/status.ts';
import type { ControlPlaneState } from '../control/control-plane.ts';
import type { MeshWatchStats } from '../control/mesh-watch.ts';
import type { LivePeer, RelayStats } from '../dataplane/api.ts';
import type { DesiredState, MeshSnapshot, NodeIdentity } from '../plan/model.ts';
import type { ReconcileRecord } from '../reconciler.ts';

export interface StatusInputs {
  readonly version: string;
  readonly identity: NodeIdentity;
  /** The WireGuard public key in force. */
  readonly publicKey: string;
  /** Our own newest verified record. */
  readonly self: NodeRecord | null;
  /** undefined before the first NATS connection. */
  readonly controlPlane: ControlPlaneState | undefined;
  readonly mesh: MeshSnapshot | null;
  readonly watch: { readonly stats: MeshWatchStats; readonly rejected: number } | undefined;
  readonly desired: DesiredState | null;
  readonly lastReconcile: ReconcileRecord | null;
  readonly ready: boolean;
  /** Live WireGuard peers, or why they could not be read. */
  readonly live: readonly LivePeer[] | { readonly error: string };
  readonly relayStats: readonly RelayStats[];
  /** The access policy on this node, and what is wrong with it (agent/policy/). */
  readonly policy: PolicyStatus;
  readonly policyErrors: readonly string[];
  readonly dataplane: AgentStatus['dataplane'];
  /** Active probe health by peer node name (agent/health/prober.ts); a peer missing: not probed. */
  readonly probes: ReadonlyMap<string, PeerProbe | null>;
  /** Is the coordinator acknowledging our heartbeats (agent/health/control-plane-health.ts). */
  readonly controlPlaneHealth: ControlPlaneHealth;
}

export function assembleStatus(i: StatusInputs): AgentStatus {
  const errors: string[] = [];
  let live: readonly LivePeer[] = [];
  const liveRead = !('error' in i.live);
  if ('error' in i.live) errors.push(`cannot read WireGuard state: ${i.live.error}`);
  else live = i.live;
  const liveByKey = new Map(live.map((p) => [p.publicKey, p]));
  const desired = i.desired;
  const peers: PeerStatus[] = (desired?.peers ?? []).map((p) => {
    const l = liveByKey.get(p.publicKey);
    return {
      name: p.node,
      cluster: p.cluster,
      location: i.mesh?.nodes.get(p.node)?.location ?? '',
      publicKey: p.publicKey,
      path: p.path,
      via: p.via,
      configuredEndpoint: p.endpoint,
      endpoint: l?.endpoint ?? null,
      allowedIps: [...p.allowedIps],
      latestHandshakeAt: l?.latestHandshakeAt ?? null,
      rxBytes: l?.rxBytes ?? 0,
      txBytes: l?.txBytes ?? 0,
      persistentKeepalive: p.persistentKeepalive,
      carries: [...p.carries],
      ...(liveRead ? { onInterface: l !== undefined } : {}),
      probe: i.probes.get(p.node) ?? null,
    };
  });
  const cp = i.controlPlane;
  if (cp?.lastError) errors.push(cp.lastError);
  if (i.watch?.stats.lastError) errors.push(`KV watch: ${i.watch.stats.lastError}`);
  const rejected = i.watch?.rejected ?? 0;
  if (rejected > 0) errors.push(`${rejected} KV record(s) ignored (bad signature, name or generation); see \`crosslink nodes\``);
  const last = i.lastReconcile;
  if (last?.error) errors.push(`reconcile: ${last.error}`);
  errors.push(...i.policyErrors);
  const refused = desired?.refused.length ?? 0;
  if (refused > 0) errors.push(`${refused} peer CIDR(s) refused by the route guard (they overlap what this host needs); see "Refused routes"`);

  const relayStats = new Map(i.relayStats.map((s) => [s.port, s]));
  const id = i.identity;
  return {
    version: i.version,
    node: {
      name: id.name,
      cluster: id.cluster,
      location: id.location,
      publicKey: i.publicKey,
      overlayIp: i.self?.overlayIp ?? null,
      endpoints: [...id.endpoints],
      privateAddresses: [...id.privateAddresses],
      podCidrs: [...id.podCidrs],
      topology: id.topology,
      isGateway: desired?.isGateway ?? false,
      isRelay: (desired?.relays.length ?? 0) > 0,
    },
    controlPlane: {
      connected: cp?.connected ?? false,
      registered: cp?.registered ?? false,
      lastHeartbeatAt: cp?.lastHeartbeatAt ?? null,
      lastError: cp?.lastError ?? (cp ? null : 'not connected to NATS yet'),
      knownNodes: i.mesh?.nodes.size ?? 0,
      revoked: cp?.revoked ?? null,
      health: i.controlPlaneHealth,
      ...(cp ? { heartbeat: cp.heartbeat } : {}),
    },
    dataplane: i.dataplane,
    lastReconcile: last === null ? null : { at: last.at, ok: last.ok, changes: last.changes, durationMs: last.durationMs, error: last.error },
    ready: i.ready,
    peers,
    remotes: [...(desired?.remotes ?? [])],
    refusedRoutes: (desired?.refused ?? []).map((r) => ({ ...r })),
    relays: (desired?.relays ?? []).map((r) => ({
      port: r.port,
      between: [r.a.node, r.b.node] as [string, string],
      packets: relayStats.get(r.port)?.packets ?? 0,
      bytes: relayStats.get(r.port)?.bytes ?? 0,
    })),
    errors,
    policy: i.policy,
  };
}
