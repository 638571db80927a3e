// Pure: one status snapshot (protocol/status.ts) → the per-peer figures the agent exports. Labels are
// the peer's node name and cluster only (bounded by the mesh size; never addresses or keys).
import type { AgentStatus } from '../../protocol/status.ts';

export interface PeerSample {
  readonly peer: string;
  readonly cluster: string;
  /** 1 when the latest probes were answered, 0 when down or not concluded (pending). */
  readonly up: number;
  /** Seconds since the latest WireGuard handshake; null when there was none. */
  readonly handshakeAgeSec: number | null;
  readonly rxBytes: number;
  readonly txBytes: number;
  /** RTT of the latest answered probe in seconds; null before the first answer. */
  readonly probeRttSec: number | null;
  /** Lost share of the recent probes, 0–1; null when the peer is not probed. */
  readonly probeLossRatio: number | null;
}

export function peerSamples(status: Pick<AgentStatus, 'peers'>, now: number): PeerSample[] {
  return status.peers.map((p) => ({
    peer: p.name,
    cluster: p.cluster,
    up: p.probe?.state === 'up' ? 1 : 0,
    handshakeAgeSec: p.latestHandshakeAt === null ? null : Math.max(0, (now - p.latestHandshakeAt) / 1000),
    rxBytes: p.rxBytes,
    txBytes: p.txBytes,
    probeRttSec: p.probe?.rttMs == null ? null : p.probe.rttMs / 1000,
    probeLossRatio: p.probe == null ? null : p.probe.lossPct / 100,
  }));
}

/** Policy drop counters keyed by rule label: "1", "2", … in document order, or "default". */
export function policyDropSamples(status: Pick<AgentStatus, 'policy'>): { readonly rule: string; readonly packets: number; readonly bytes: number }[] {
  return (status.policy?.drops ?? []).map((d) => ({ rule: String(d.rule), packets: d.packets, bytes: d.bytes }));
}
