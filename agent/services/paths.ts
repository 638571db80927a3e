// Pure: what the agent knows of its path to each other cluster, for the DNS answer order. Today
// that is WireGuard health (a handshake within the last 180 s, WireGuard's reject-after time);
// measured RTTs (active probes) fill `rttMs` through the same map when they exist.
import type { ClusterPathInfo } from '../../protocol/service.ts';

/** WireGuard drops a session this long after its handshake (REJECT_AFTER_TIME). */
export const HANDSHAKE_FRESH_MS = 180_000;

export function clusterPathsFromPeers(
  peers: readonly { readonly cluster: string; readonly latestHandshakeAt: number | null }[],
  now: number,
  rttMs: ReadonlyMap<string, number> = new Map(),
): Map<string, ClusterPathInfo> {
  const out = new Map<string, ClusterPathInfo>();
  for (const p of peers) {
    const healthy = p.latestHandshakeAt !== null && now - p.latestHandshakeAt <= HANDSHAKE_FRESH_MS;
    const prev = out.get(p.cluster);
    out.set(p.cluster, { healthy: (prev?.healthy ?? false) || healthy, rttMs: rttMs.get(p.cluster) ?? null });
  }
  return out;
}
