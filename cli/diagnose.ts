// `crosslink diagnose`: walks the path to each remote node and says where it breaks. Pure: it is
// given the agent's status (with its probe verdicts), its verified view, the desired state computed
// from that view, two samples of live WireGuard/route state and optional path-MTU probe answers; it
// returns one check per line with a stable id (for scripts and tests) and a hint on failure.
//
// Check ids (stable; `--json` carries them, per-peer checks also carry `node`):
//   controlplane.nats, controlplane.registered, controlplane.heartbeat, controlplane.own-record,
//   dataplane.reconcile, dataplane.interface, dataplane.mtu, dataplane.route-guard,
//   peer.known, peer.record, peer.path, peer.configured, peer.handshake, peer.nat-mapping,
//   peer.probe, peer.pmtu, peer.receiving, peer.routes
import type { DesiredState, MeshView } from '../agent/plan/model.ts';
import type { DiagnosticsDocument } from '../protocol/status-api.ts';
import { canonicalCidr, hostCidr } from '../protocol/cidr.ts';
import type { PingReply } from '../protocol/health.ts';
import type { NodeRecord } from '../protocol/messages.ts';
import type { AgentStatus } from '../protocol/status.ts';
import { formatAge } from '../lib/text-format.ts';
import { handshakeState, remotePathText } from './format.ts';

export interface Check {
  /** Stable identifier of the check, e.g. `peer.probe`. */
  readonly id: string;
  /** The remote node a per-peer check is about. */
  readonly node?: string;
  /** null: not applicable / skipped. */
  readonly ok: boolean | null;
  readonly label: string;
  readonly detail: string;
  readonly hint?: string;
}

/** Path-MTU probes to one peer (cli/diagnose-probes.ts): a full-size one and a small control sent together; null: that probe could not be sent (agent error). */
export interface PathMtuProbe {
  readonly full: PingReply | null;
  readonly small: PingReply | null;
}

export type PathMtuVerdict = 'passes' | 'too-small' | 'inconclusive';

/** The one reading of a probe pair, used by diagnose and its tests. */
export function pathMtuVerdict(p: PathMtuProbe): PathMtuVerdict {
  if (p.full !== null && p.full.received > 0) return 'passes';
  if (p.small !== null && p.small.received > 0) return 'too-small';
  return 'inconclusive';
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
  /** Path-MTU probes (a probe padded to the live MTU) per WireGuard peer node; absent: not probed. */
  readonly pmtu?: ReadonlyMap<string, PathMtuProbe>;
  /** Only this remote node; default every remote node. */
  readonly target?: string;
  readonly now: number;
}

export interface DiagnoseResult {
  readonly checks: readonly Check[];
  readonly ok: boolean;
}

const pass = (id: string, label: string, detail: string, node?: string): Check => ({ id, ...(node ? { node } : {}), ok: true, label, detail });
const fail = (id: string, label: string, detail: string, hint: string, node?: string): Check => ({ id, ...(node ? { node } : {}), ok: false, label, detail, hint });
const skip = (id: string, label: string, detail: string, node?: string): Check => ({ id, ...(node ? { node } : {}), ok: null, label, detail });

function nodeCidrs(n: NodeRecord): string[] {
  return [hostCidr(n.overlayIp), ...n.podCidrs.map((c) => canonicalCidr(c) ?? c)];
}

/** The hop a broken tunnel to `n` goes through, in words. */
function hopText(path: string, via: string | null, node: string): string {
  if (path === 'relay') return `the tunnel to ${node} through relay ${via ?? '?'}`;
  if (path === 'gateway') return `the tunnel to ${via ?? '?'}, the gateway of ${node}'s cluster`;
  return `the direct tunnel to ${node}`;
}

export function diagnose(input: DiagnoseInput): DiagnoseResult {
  const { status, view, desired, before, after, now } = input;
  const checks: Check[] = [];
  const cp = status.controlPlane;
  const self = status.node.name;

  checks.push(
    cp.connected
      ? pass('controlplane.nats', 'connected to NATS', 'the agent has a NATS connection')
      : fail('controlplane.nats', 'connected to NATS', cp.lastError ?? 'disconnected', 'check --nats-url/--nats-creds and that a NATS server is reachable from this node; the data plane is kept as it is meanwhile'),
  );
  checks.push(
    cp.registered
      ? pass('controlplane.registered', 'registered with the coordinator', `overlay IP ${status.node.overlayIp ?? '?'}, last heartbeat ${formatAge(cp.lastHeartbeatAt, now)}`)
      : fail('controlplane.registered', 'registered with the coordinator', cp.lastError ?? 'not registered yet', 'is crosslink-coordinator running (same NATS, --bucket, subject prefix)? a rejection names the field to fix in the agent log'),
  );
  if (cp.health && cp.connected && cp.registered) {
    checks.push(
      cp.health.answering
        ? pass('controlplane.heartbeat', 'coordinator leader answering', cp.health.reason)
        : fail(
            'controlplane.heartbeat',
            'coordinator leader answering',
            cp.health.reason,
            'NATS is reachable but no coordinator acknowledges heartbeats: is crosslink-coordinator running and does one replica hold the leader lease? (`crosslink-coordinator` logs); tunnels stay as they are meanwhile, but nodes expire when it comes back late',
          ),
    );
  }
  if (view === null) {
    checks.push(fail('controlplane.own-record', 'verified view of the mesh', 'the agent has no view yet', 'it needs a registration and a full read of the KV bucket; see the two checks above and the agent log'));
  } else {
    const own = view.nodes.get(self);
    checks.push(
      own
        ? pass('controlplane.own-record', 'own record in the KV, signature verified', `${view.nodes.size} verified node record${view.nodes.size === 1 ? '' : 's'}`)
        : fail('controlplane.own-record', 'own record in the KV, signature verified', `no verified record nodes.${self}`, 'the coordinator may have expired us (heartbeats not arriving?) or the record was refused (wrong --coordinator-key? run `crosslink nodes`)'),
    );
  }
  const rec = status.lastReconcile;
  checks.push(
    rec === null
      ? fail('dataplane.reconcile', 'data plane reconciled', 'no reconcile yet', 'the agent may still be starting; see its log')
      : rec.ok
        ? pass('dataplane.reconcile', 'data plane reconciled', `${formatAge(rec.at, now)}, ${rec.changes} change${rec.changes === 1 ? '' : 's'}`)
        : fail('dataplane.reconcile', 'data plane reconciled', rec.error ?? 'failed', 'the agent retries every resync; the error names the command that failed'),
  );
  checks.push(
    before.livePeersError === null
      ? pass('dataplane.interface', `WireGuard interface ${before.interface}`, `${before.livePeers?.length ?? 0} live peer${before.livePeers?.length === 1 ? '' : 's'}`)
      : fail('dataplane.interface', `WireGuard interface ${before.interface}`, before.livePeersError, 'the interface is missing or wireguard-go is not running; the agent recreates it on its next reconcile'),
  );
  const liveMtu = status.dataplane.liveMtu;
  if (liveMtu !== undefined) {
    checks.push(
      liveMtu === status.dataplane.mtu
        ? pass('dataplane.mtu', 'interface MTU', `${liveMtu} (as configured)`)
        : fail(
            'dataplane.mtu',
            'interface MTU',
            liveMtu === null ? `cannot read the MTU of ${status.dataplane.interface}` : `live MTU ${liveMtu}, configured ${status.dataplane.mtu}`,
            liveMtu === null ? 'the interface may be missing; see the interface check' : 'someone changed the interface MTU by hand; the agent sets it back on its next reconcile (a smaller MTU costs throughput, a larger one black-holes big packets)',
          ),
    );
  }

  checks.push(
    status.refusedRoutes.length === 0
      ? pass('dataplane.route-guard', 'route guard', 'no peer CIDR overlaps this host\'s addresses, connected subnets, gateways, NATS servers or any node\'s underlay address')
      : fail(
          'dataplane.route-guard',
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
          'peer.known',
          `${input.target}: known to this agent`,
          known ? 'in the view but not a remote node (same cluster: reached through the CNI, not Crosslink)' : 'not in the verified view',
          known ? 'Crosslink only connects clusters; same-cluster traffic is the CNI\'s job' : 'is it registered? `crosslink nodes` lists registered and refused records',
          input.target,
        ),
      );
    }
  }
  const livePeers = new Map((before.livePeers ?? []).map((p) => [p.publicKey, p]));
  const laterPeers = new Map((after?.livePeers ?? []).map((p) => [p.publicKey, p]));
  const liveRoutes = new Map((before.liveRoutes ?? []).map((r) => [r.dst, r]));
  const probeOf = new Map(status.peers.map((p) => [p.name, p.probe ?? null]));

  for (const r of remotes) {
    const n = r.node;
    const record = view?.nodes.get(n);
    checks.push(
      record
        ? pass('peer.record', `${n}: record verified`, `cluster ${record.cluster}, overlay ${record.overlayIp}`, n)
        : fail('peer.record', `${n}: record verified`, 'not in the verified view', 'expired or refused; `crosslink nodes` shows refused records', n),
    );
    if (r.path === 'none') {
      checks.push(fail('peer.path', `${n}: path`, remotePathText(r), 'no usable path: both behind NAT with no relay, or the cluster has no active gateway', n));
      continue;
    }
    checks.push(pass('peer.path', `${n}: path`, remotePathText(r), n));
    const peer = desired?.peers.find((p) => p.carries.includes(n));
    const expectedRoutes = record && desired ? desired.routes.filter((rt) => nodeCidrs(record).includes(rt.dst)) : [];

    if (r.path === 'local-gateway') {
      checks.push(skip('peer.configured', `${n}: WireGuard peer`, `reached over the VPC through ${r.via ?? 'the local gateway'}, no peer here`, n));
    } else if (desired === null) {
      checks.push(skip('peer.configured', `${n}: WireGuard peer`, 'no desired state without a view', n));
    } else if (!peer) {
      checks.push(fail('peer.configured', `${n}: WireGuard peer`, 'not in the desired state', 'the view changed since the status was taken; run diagnose again', n));
    } else {
      const live = livePeers.get(peer.publicKey);
      const probe = probeOf.get(peer.node) ?? null;
      const hop = hopText(peer.path, peer.via, peer.node);
      if (!live) {
        checks.push(fail('peer.configured', `${n}: WireGuard peer configured`, `peer ${peer.publicKey.slice(0, 8)}… (${peer.node}) missing from ${before.interface}`, 'the agent adds it on its next reconcile; if it stays missing, the last reconcile error says why', n));
      } else {
        const missingIps = peer.allowedIps.filter((c) => !live.allowedIps.includes(c));
        checks.push(
          missingIps.length === 0
            ? pass('peer.configured', `${n}: WireGuard peer configured`, `${peer.node}${peer.path === 'relay' ? ` via relay ${peer.via ?? '?'}` : ''}, endpoint ${live.endpoint ?? '(none yet)'}`, n)
            : fail('peer.configured', `${n}: WireGuard peer configured`, `allowed IPs lack ${missingIps.join(', ')}`, 'another peer may claim these CIDRs (overlapping pod CIDRs?); the agent fixes drift on its next reconcile', n),
        );
        const hs = handshakeState({ ...live, persistentKeepalive: peer.persistentKeepalive }, now);
        const probeUp = probe?.state === 'up';
        if (hs === 'up') checks.push(pass('peer.handshake', `${n}: handshake recent`, formatAge(live.latestHandshakeAt, now), n));
        else if (hs === 'idle' && probe === null) checks.push(skip('peer.handshake', `${n}: handshake recent`, 'idle: no keepalive and no traffic yet, WireGuard handshakes on the first packet (ping a pod behind it to test)', n));
        else if (probeUp) checks.push(pass('peer.handshake', `${n}: handshake recent`, `${formatAge(live.latestHandshakeAt, now)}, and probes are answered`, n));
        else
          checks.push(
            fail(
              'peer.handshake',
              `${n}: handshake recent`,
              hs === 'never' ? 'no handshake yet' : `last handshake ${formatAge(live.latestHandshakeAt, now)}`,
              peer.endpoint === null
                ? 'the peer is behind NAT and must reach us first: is it running, and can it reach our endpoint (UDP)? run diagnose on it too'
                : `can UDP reach ${peer.endpoint}? check firewalls/security groups for the WireGuard port on both sides, and run diagnose on ${peer.node}`,
              n,
            ),
          );
        if (peer.endpoint === null && peer.path === 'direct') {
          // A NATed peer: WireGuard learns its NAT mapping from its handshakes.
          checks.push(
            live.endpoint !== null
              ? pass('peer.nat-mapping', `${n}: NAT mapping learned`, `${peer.node} is behind NAT, seen at ${live.endpoint}`, n)
              : fail('peer.nat-mapping', `${n}: NAT mapping learned`, `${peer.node} is behind NAT and has not reached us yet`, `${peer.node} must send first (keepalive every ${peer.persistentKeepalive || 'n/a'} s from its side): is its agent running, and can it reach our endpoint over UDP? run diagnose on ${peer.node}`, n),
          );
        }
      }
      if (probe) {
        checks.push(
          probe.state === 'up'
            ? pass('peer.probe', `${n}: reachable (probes answered)`, `${probe.reason}, loss ${probe.lossPct}% over ${probe.window}`, n)
            : probe.state === 'pending'
              ? fail('peer.probe', `${n}: reachable (probes answered)`, `not known yet: ${probe.reason}`, 'probing has just started (new peer or agent restart); run diagnose again in a few seconds', n)
              : fail(
                  'peer.probe',
                  `${n}: reachable (probes answered)`,
                  `${probe.reason}; broken hop: ${hop}`,
                  `the round trip through ${hop} fails (a firewall dropping UDP to the WireGuard port on either side, a dead peer, an expired NAT mapping${peer.path === 'relay' ? ', or the relay is down' : ''}); run diagnose on ${peer.node} as well — it sees the same fault from its side`,
                  n,
                ),
        );
        const pm = input.pmtu?.get(peer.node);
        if (pm !== undefined && probe.state === 'up') {
          const size = liveMtu ?? status.dataplane.mtu;
          const verdict = pathMtuVerdict(pm);
          checks.push(
            verdict === 'passes'
              ? pass('peer.pmtu', `${n}: full-size packets pass`, `a ${size}-byte probe was answered`, n)
              : verdict === 'too-small'
                ? fail(
                    'peer.pmtu',
                    `${n}: full-size packets pass`,
                    `a small probe sent at the same moment was answered, the ${size}-byte probe was not`,
                    `the underlay path to ${peer.node} carries less than MTU + 80 bytes (WireGuard overhead): lower --mtu on both sides, or fix the path MTU; TCP is clamped, UDP and ICMP are not`,
                    n,
                  )
                : skip('peer.pmtu', `${n}: full-size packets pass`, `not judged: neither the ${size}-byte probe nor the small control probe was answered during this check (loss, not size; see ${n}: reachable)`, n),
          );
        }
      }
      if (live) {
        if (after === null) {
          checks.push(skip('peer.receiving', `${n}: receiving`, 'single sample (--interval 0)', n));
        } else {
          const later = laterPeers.get(peer.publicKey);
          const delta = later ? later.rxBytes - live.rxBytes : 0;
          if (delta > 0) checks.push(pass('peer.receiving', `${n}: receiving`, `+${delta} bytes in ${Math.round(input.intervalMs / 1000)}s`, n));
          else if (probe?.state === 'up') checks.push(pass('peer.receiving', `${n}: receiving`, 'probes are answered (no other traffic in the interval)', n));
          else if (probe)
            // The probe check above already names this fault; counting it twice adds nothing.
            checks.push(skip('peer.receiving', `${n}: receiving`, `no bytes received in ${Math.round(input.intervalMs / 1000)}s (see the probe check)`, n));
          else
            checks.push(
              fail(
                'peer.receiving',
                `${n}: receiving`,
                `no bytes received in ${Math.round(input.intervalMs / 1000)}s`,
                peer.persistentKeepalive > 0
                  ? 'even keepalives are not arriving: the path from the peer to us is broken (firewall, NAT mapping expired?)'
                  : 'idle peers are silent when keepalive is off: send traffic (ping its overlay IP) and run diagnose again',
                n,
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
      if (before.liveRoutesError !== null) checks.push(fail('peer.routes', `${n}: routes`, before.liveRoutesError, 'cannot read the route table', n));
      else if (expectedRoutes.length === 0) checks.push(skip('peer.routes', `${n}: routes`, 'no routes expected', n));
      else
        checks.push(
          missing.length === 0
            ? pass('peer.routes', `${n}: routes`, expectedRoutes.map((rt) => rt.dst).join(', '), n)
            : fail('peer.routes', `${n}: routes`, `missing ${missing.map((rt) => `${rt.dst}${rt.dev ? ` dev ${rt.dev}` : ''}${rt.via ? ` via ${rt.via}` : ''}`).join(', ')}`, 'the agent restores its routes on every resync; if they keep vanishing something else deletes them', n),
        );
    }
  }
  return { checks, ok: checks.every((c) => c.ok !== false) };
}

export function formatChecks(checks: readonly Pick<Check, 'ok' | 'label' | 'detail' | 'hint'>[]): string {
  return checks
    .map((c) => {
      const mark = c.ok === true ? '✓' : c.ok === false ? '✗' : '-';
      const line = `${mark} ${c.label}: ${c.detail}`;
      return c.ok === false && c.hint ? `${line}\n    hint: ${c.hint}` : line;
    })
    .join('\n');
}
