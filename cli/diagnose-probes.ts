// The live probes `crosslink diagnose` asks the agent for: one probe padded to the interface's live
// MTU per reachable WireGuard peer (path-MTU: a full-size packet must cross the tunnel), in parallel.
import { PingReply } from '../protocol/health.ts';
import type { AgentStatus } from '../protocol/status.ts';
import { getFromAgent } from './client.ts';

/** IPv4 + UDP headers: a probe of MTU − 28 bytes fills the tunnel's MTU exactly. */
const IP_UDP_HEADERS = 28;

export async function pathMtuProbes(socket: string, status: AgentStatus, only?: string): Promise<Map<string, PingReply | null>> {
  const out = new Map<string, PingReply | null>();
  const mtu = status.dataplane.liveMtu;
  if (mtu === undefined || mtu === null) return out;
  const peers = status.peers.filter((p) => p.probe?.state === 'up' && (only === undefined || p.carries.includes(only)));
  await Promise.all(
    peers.map(async (p) => {
      const q = new URLSearchParams({ target: p.name, count: '2', timeout: '1500', bytes: String(mtu - IP_UDP_HEADERS) });
      try {
        // Two tries: one lost datagram is not a path-MTU problem.
        out.set(p.name, await getFromAgent(socket, `/ping?${q.toString()}`, PingReply, 15_000));
      } catch {
        out.set(p.name, null);
      }
    }),
  );
  return out;
}
