// `crosslink diagnose`: walks the path to each remote node and says where it breaks. Pure: it is
// given the agent's status, its verified view, the desired state computed from that view, and two
// samples of live WireGuard/route state; it returns one check per line with a hint on failure.
import type { DesiredState, MeshView } from '../agent/plan/model.ts';
import type { DiagnosticsDocument } from '../protocol/status-api.ts';
import { canonicalCidr, hostCidr } from '../protocol/cidr.ts';
import type { NodeRecord } from '../protocol/messages.ts';
import type { AgentStatus } from '../protocol/status.ts';
import { formatAge } from '../lib/text-format.ts';
import { peerState, remotePathText } from './format.ts';

export interface Check {
  /** null: not applicable / skipped. */
  readonly ok: boolean | null;
  readonly label: string;
  readonly detail: string;
  readonly hint?: string;
}

export interface DiagnoseInput {
  readonly status: AgentStatus;
  /** null when the agent has no view yet. */
  readonly view: MeshView | null;
  readonly desired: DesiredState | null;
  readonly before: DiagnosticsDocument;
  /** Second sample `intervalMs` later (rx growth); null to skip that check. */
  readonly after: DiagnosticsDocument | null;
  readonly intervalMs: number;
  /** Only this remote node; default every remote node. */
  readonly target?: string;
  readonly now: number;
}

export interface DiagnoseResult {
  readonly checks: readonly Check[];
  readonly ok: boolean;
}

const pass = (label: string, detail: string): Check => ({ ok: true, label, detail });
const fail = (label: string, detail: string, hint: string): Check => ({ ok: false, label, detail, hint });
const skip = (label: string, detail: string): Check => ({ ok: null, label, detail });

function nodeCidrs(n: NodeRecord): string[] {
  return [hostCidr(n.overlayIp), ...n.podCidrs.map((c) => canonicalCidr(c) ?? c)];
}

export function diagnose(input: DiagnoseInput): DiagnoseResult {
  const { status, view, desired, before, after, now } = input;
  const checks: Check[] = [];
  const cp = status.controlPlane;
  const self = status.node.name;

  checks.push(
    cp.connected
      ? pass('connected to NATS', 'the agent has a NATS connection')
      : fail('connected to NATS', cp.lastError ?? 'disconnected', 'check --nats-url/--nats-creds and that a NATS server is reachable from this node; the data plane is kept as it is meanwhile'),
  );
  checks.push(
    cp.registered
      ? pass('registered with the coordinator', `overlay IP ${status.node.overlayIp ?? '?'}, last heartbeat ${formatAge(cp.lastHeartbeatAt, now)}`)
      : fail('registered with the coordinator', cp.lastError ?? 'not registered yet', 'is crosslink-coordinator running (same NATS, --bucket, subject prefix)? a rejection names the field to fix in the agent log'),
  );
  if (view === null) {
    checks.push(fail('verified view of the mesh', 'the agent has no view yet', 'it needs a registration and a full read of the KV bucket; see the two checks above and the agent log'));
  } else {
    const own = view.nodes.get(self);
    checks.push(
      own
        ? pass('own record in the KV, signature verified', `${view.nodes.size} verified node record${view.nodes.size === 1 ? '' : 's'}`)
        : fail('own record in the KV, signature verified', `no verified record nodes.${self}`, 'the coordinator may have expired us (heartbeats not arriving?) or the record was refused (wrong --coordinator-key? run `crosslink nodes`)'),
    );
  }
  const rec = status.lastReconcile;
  checks.push(
    rec === null
      ? fail('data plane reconciled', 'no reconcile yet', 'the agent may still be starting; see its log')
      : rec.ok
        ? pass('data plane reconciled', `${formatAge(rec.at, now)}, ${rec.changes} change${rec.changes === 1 ? '' : 's'}`)
        : fail('data plane reconciled', rec.error ?? 'failed', 'the agent retries every resync; the error names the command that failed'),
  );
  checks.push(
    before.livePeersError === null
      ? pass(`WireGuard interface ${before.interface}`, `${before.livePeers?.length ?? 0} live peer${before.livePeers?.length === 1 ? '' : 's'}`)
      : fail(`WireGuard interface ${before.interface}`, before.livePeersError, 'the interface is missing or wireguard-go is not running; the agent recreates it on its next reconcile'),
  );

  checks.push(
    status.refusedRoutes.length === 0
      ? pass('route guard', 'no peer CIDR overlaps this host\'s addresses, connected subnets, gateways, NATS servers or any node\'s underlay address')
      : fail(
          'route guard',
          `${status.refusedRoutes.length} peer CIDR(s) refused: ${status.refusedRoutes.map((r) => `${r.cidr} of ${r.node} (${r.reason})`).join('; ')}`,
          'a registration claims a range this host needs; the agent does not route it into the tunnel. Fix the cluster\'s pod CIDRs (or revoke the node if it was not you)',
        ),
  );

  let remotes = status.remotes;
  if (input.target !== undefined) {
    remotes = remotes.filter((r) => r.node === input.target);
    if (remotes.length === 0) {
      const known = view?.nodes.has(input.target) ?? false;
      checks.push(
        fail(
          `${input.target}: known to this agent`,
          known ? 'in the view but not a remote node (same cluster: reached through the CNI, not Crosslink)' : 'not in the verified view',
          known ? 'Crosslink only connects clusters; same-cluster traffic is the CNI\'s job' : 'is it registered? `crosslink nodes` lists registered and refused records',
        ),
      );
    }
  }
  const livePeers = new Map((before.livePeers ?? []).map((p) => [p.publicKey, p]));
  const laterPeers = new Map((after?.livePeers ?? []).map((p) => [p.publicKey, p]));
  const liveRoutes = new Map((before.liveRoutes ?? []).map((r) => [r.dst, r]));

  for (const r of remotes) {
    const n = r.node;
    const record = view?.nodes.get(n);
    checks.push(
      record
        ? pass(`${n}: record verified`, `cluster ${record.cluster}, overlay ${record.overlayIp}`)
        : fail(`${n}: record verified`, 'not in the verified view', 'expired or refused; `crosslink nodes` shows refused records'),
    );
    if (r.path === 'none') {
      checks.push(fail(`${n}: path`, remotePathText(r), 'no usable path: both behind NAT with no relay, or the cluster has no active gateway'));
      continue;
    }
    checks.push(pass(`${n}: path`, remotePathText(r)));
    const peer = desired?.peers.find((p) => p.carries.includes(n));
    const expectedRoutes = record && desired ? desired.routes.filter((rt) => nodeCidrs(record).includes(rt.dst)) : [];

    if (r.path === 'local-gateway') {
      checks.push(skip(`${n}: WireGuard peer`, `reached over the VPC through ${r.via ?? 'the local gateway'}, no peer here`));
    } else if (desired === null) {
      checks.push(skip(`${n}: WireGuard peer`, 'no desired state without a view'));
    } else if (!peer) {
      checks.push(fail(`${n}: WireGuard peer`, 'not in the desired state', 'the view changed since the status was taken; run diagnose again'));
    } else {
      const live = livePeers.get(peer.publicKey);
      if (!live) {
        checks.push(fail(`${n}: WireGuard peer configured`, `peer ${peer.publicKey.slice(0, 8)}… missing from ${before.interface}`, 'the agent adds it on its next reconcile; if it stays missing, the last reconcile error says why'));
      } else {
        const missingIps = peer.allowedIps.filter((c) => !live.allowedIps.includes(c));
        checks.push(
          missingIps.length === 0
            ? pass(`${n}: WireGuard peer configured`, `${peer.node}${peer.path === 'relay' ? ` via relay ${peer.via ?? '?'}` : ''}, endpoint ${live.endpoint ?? '(none yet)'}`)
            : fail(`${n}: WireGuard peer configured`, `allowed IPs lack ${missingIps.join(', ')}`, 'another peer may claim these CIDRs (overlapping pod CIDRs?); the agent fixes drift on its next reconcile'),
        );
        const state = peerState({ ...live, persistentKeepalive: peer.persistentKeepalive }, now);
        checks.push(
          state === 'up'
            ? pass(`${n}: handshake recent`, formatAge(live.latestHandshakeAt, now))
            : state === 'idle'
              ? skip(`${n}: handshake recent`, 'idle: no keepalive and no traffic yet, WireGuard handshakes on the first packet (ping a pod behind it to test)')
              : fail(
                `${n}: handshake recent`,
                state === 'never' ? 'no handshake yet' : `last handshake ${formatAge(live.latestHandshakeAt, now)}`,
                peer.endpoint === null
                  ? 'the peer is behind NAT and must reach us first: is it running, and can it reach our endpoint (UDP)? run diagnose on it too'
                  : `can UDP reach ${peer.endpoint}? check firewalls/security groups for the WireGuard port on both sides, and run diagnose on ${peer.node}`,
              ),
        );
        if (after === null) {
          checks.push(skip(`${n}: receiving`, 'single sample (--interval 0)'));
        } else {
          const later = laterPeers.get(peer.publicKey);
          const delta = later ? later.rxBytes - live.rxBytes : 0;
          checks.push(
            delta > 0
              ? pass(`${n}: receiving`, `+${delta} bytes in ${Math.round(input.intervalMs / 1000)}s`)
              : fail(
                  `${n}: receiving`,
                  `no bytes received in ${Math.round(input.intervalMs / 1000)}s`,
                  peer.persistentKeepalive > 0
                    ? 'even keepalives are not arriving: the path from the peer to us is broken (firewall, NAT mapping expired?)'
                    : 'idle peers are silent when keepalive is off: send traffic (ping its overlay IP) and run diagnose again',
                ),
          );
        }
      }
    }
    if (record) {
      const missing = expectedRoutes.filter((rt) => {
        const live = liveRoutes.get(rt.dst);
        return !live || (rt.dev !== undefined && live.dev !== rt.dev) || (rt.via !== undefined && live.via !== rt.via);
      });
      if (before.liveRoutesError !== null) checks.push(fail(`${n}: routes`, before.liveRoutesError, 'cannot read the route table'));
      else if (expectedRoutes.length === 0) checks.push(skip(`${n}: routes`, 'no routes expected'));
      else
        checks.push(
          missing.length === 0
            ? pass(`${n}: routes`, expectedRoutes.map((rt) => rt.dst).join(', '))
            : fail(`${n}: routes`, `missing ${missing.map((rt) => `${rt.dst}${rt.dev ? ` dev ${rt.dev}` : ''}${rt.via ? ` via ${rt.via}` : ''}`).join(', ')}`, 'the agent restores its routes on every resync; if they keep vanishing something else deletes them'),
        );
    }
  }
  return { checks, ok: checks.every((c) => c.ok !== false) };
}

export function formatChecks(checks: readonly Check[]): string {
  return checks
    .map((c) => {
      const mark = c.ok === true ? '✓' : c.ok === false ? '✗' : '-';
      const line = `${mark} ${c.label}: ${c.detail}`;
      return c.ok === false && c.hint ? `${line}\n    hint: ${c.hint}` : line;
    })
    .join('\n');
}
