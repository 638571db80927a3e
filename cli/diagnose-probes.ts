// The live probes `crosslink diagnose` asks the agent for: per reachable WireGuard peer, one probe
// padded to the interface's live MTU (a full-size packet must cross the tunnel) and, at the same
// moment, one small control probe. Only "the small one came back, the full one did not" says
// path MTU; both lost is loss (a loaded host, a flapping path), which `peer.probe` judges, not this.
import { PingReply } from '../protocol/health.ts';
import type { AgentStatus } from '../protocol/status.ts';
import { getFromAgent } from './client.ts';
import type { PathMtuProbe } from './diagnose.ts';

/** IPv4 + UDP headers: a probe of MTU − 28 bytes fills the tunnel's MTU exactly. */
const IP_UDP_HEADERS = 28;

export async function pathMtuProbes(socket: string, status: AgentStatus, only?: string): Promise<Map<string, PathMtuProbe>> {
  const out = new Map<string, PathMtuProbe>();
  const mtu = status.dataplane.liveMtu;
  if (mtu === undefined || mtu === null) return out;
  const peers = status.peers.filter((p) => p.probe?.state === 'up' && (only === undefined || p.carries.includes(only)));
  const ping = async (target: string, bytes?: number): Promise<PingReply | null> => {
    // Three tries each: one lost datagram is not a path-MTU problem.
    const q = new URLSearchParams({ target, count: '3', timeout: '1500', ...(bytes === undefined ? {} : { bytes: String(bytes) }) });
    try {
      return await getFromAgent(socket, `/ping?${q.toString()}`, PingReply, 15_000);
    } catch {
      return null;
    }
  };
  await Promise.all(
    peers.map(async (p) => {
      const [full, small] = await Promise.all([ping(p.name, mtu - IP_UDP_HEADERS), ping(p.name)]);
      out.set(p.name, { full, small });
    }),
  );
  return out;
}
