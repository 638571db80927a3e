// Pure: what the agent knows of its path to each other cluster, for the DNS answer order. The
// active peer probes (agent/health/prober.ts) are the source: a cluster is healthy when one of its
// peers answers probes, and its RTT is the lowest latest-probe RTT among those peers. Before the
// prober has an opinion (pending, or no probe yet) WireGuard health decides: a handshake within the
// last 180 s (WireGuard's reject-after time) counts as healthy, without a measured RTT.
import type { ClusterPathInfo } from '../../protocol/service.ts';

/** WireGuard drops a session this long after its handshake (REJECT_AFTER_TIME). */
export const HANDSHAKE_FRESH_MS = 180_000;

/** What one peer contributes: its cluster, WireGuard's last handshake and the prober's verdict. */
export interface PeerPathFacts {
  readonly cluster: string;
  readonly latestHandshakeAt: number | null;
  readonly probe?: { readonly state: 'up' | 'down' | 'pending'; readonly rttMs: number | null } | null | undefined;
}

function peerPath(p: PeerPathFacts, now: number): ClusterPathInfo {
  if (p.probe?.state === 'up') return { healthy: true, rttMs: p.probe.rttMs };
  if (p.probe?.state === 'down') return { healthy: false, rttMs: null };
  return { healthy: p.latestHandshakeAt !== null && now - p.latestHandshakeAt <= HANDSHAKE_FRESH_MS, rttMs: null };
}

/** Per cluster: healthy if any of its peers is; RTT the lowest measured among its healthy peers. */
export function clusterPathsFromPeers(peers: readonly PeerPathFacts[], now: number): Map<string, ClusterPathInfo> {
  const out = new Map<string, ClusterPathInfo>();
  for (const p of peers) {
    const mine = peerPath(p, now);
    const prev = out.get(p.cluster);
    if (!prev) {
      out.set(p.cluster, mine);
      continue;
    }
    const rtts = [prev.healthy ? prev.rttMs : null, mine.healthy ? mine.rttMs : null].filter((r): r is number => r !== null);
    out.set(p.cluster, { healthy: prev.healthy || mine.healthy, rttMs: rtts.length === 0 ? null : Math.min(...rtts) });
  }
  return out;
}
