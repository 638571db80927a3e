// The live probes `crosslink diagnose` asks the agent for: per reachable WireGuard peer, one probe
// padded to the interface's live MTU (a full-size packet must cross the tunnel) and, at the same
// moment, one small control probe. Only "the small one came back, the full one did not" says
// path MTU; both lost is loss (a loaded host, a flapping path), which `peer.probe` judges, not this.
// At most PMTU_PEERS_AT_ONCE peers are probed at a time (lib/pool.ts), so at most twice that many
// probes are in flight: a node with hundreds of peers does not fire hundreds of pings at once.
import { mapLimit } from '../lib/pool.ts';
import { PingReply } from '../protocol/health.ts';
import type { AgentStatus } from '../protocol/status.ts';
import { getFromAgent } from './client.ts';
import type { PathMtuProbe } from './diagnose.ts';

/** IPv4 + UDP headers: a probe of MTU − 28 bytes fills the tunnel's MTU exactly. */
const IP_UDP_HEADERS = 28;

/** Peers probed side by side; each has its full and its small probe in flight together. */
export const PMTU_PEERS_AT_ONCE = 4;

/** One probe of `target` (`bytes`: padded to that size); null when the agent could not be asked. */
export type PathMtuProber = (target: string, bytes?: number) => Promise<PingReply | null>;

/** The agent's GET /ping, three tries each: one lost datagram is not a path-MTU problem. */
export function agentProber(socket: string): PathMtuProber {
  return async (target, bytes) => {
    const q = new URLSearchParams({ target, count: '3', timeout: '1500', ...(bytes === undefined ? {} : { bytes: String(bytes) }) });
    try {
      return await getFromAgent(socket, `/ping?${q.toString()}`, PingReply, 15_000);
    } catch {
      return null;
    }
  };
}

export async function pathMtuProbes(probe: PathMtuProber, status: AgentStatus, only?: string, peersAtOnce = PMTU_PEERS_AT_ONCE): Promise<Map<string, PathMtuProbe>> {
  const mtu = status.dataplane.liveMtu;
  if (mtu === undefined || mtu === null) return new Map();
  const peers = status.peers.filter((p) => p.probe?.state === 'up' && (only === undefined || p.carries.includes(only)));
  const results = await mapLimit(peers, peersAtOnce, async (p) => {
    const [full, small] = await Promise.all([probe(p.name, mtu - IP_UDP_HEADERS), probe(p.name)]);
    return [p.name, { full, small }] as const;
  });
  return new Map(results);
}
