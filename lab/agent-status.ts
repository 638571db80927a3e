// Reads an agent's status document (GET /status over its unix socket) through the CLI's client,
// validated with the shared schema; plus the one-line digest used in lab failure reports.
import { getFromAgent } from '../cli/client.ts';
import { formatAge } from '../lib/text-format.ts';
import { withFresh, type StatusReadOptions } from '../protocol/fresh-read.ts';
import { AgentStatus } from '../protocol/status.ts';

/** Short timeout: the lab polls every agent while waiting for convergence. `fresh`: the kernel now, not the agent's shared reading. */
export function fetchAgentStatus(socketPath: string, timeoutMs = 3000, read: StatusReadOptions = {}): Promise<AgentStatus> {
  return getFromAgent(socketPath, withFresh('/status', read.fresh), AgentStatus, timeoutMs);
}

/** One line per agent for failure reports: readiness, control plane, peers with path and handshake age. */
export function summarizeStatus(s: AgentStatus, now = Date.now()): string {
  const cp = s.controlPlane;
  const peers = s.peers
    .map((p) => {
      const hs = `hs ${formatAge(p.latestHandshakeAt, now)}`;
      return `${p.name}(${p.path}${p.via ? ` via ${p.via}` : ''}, ${p.endpoint ?? 'no endpoint'}, ${hs}, rx ${p.rxBytes} tx ${p.txBytes})`;
    })
    .join(' ');
  const remotes = s.remotes.map((r) => `${r.node}:${r.path}${r.via ? `@${r.via}` : ''}${r.reason ? `(${r.reason})` : ''}`).join(' ');
  const errs = [...s.errors, ...(cp.lastError ? [`control: ${cp.lastError}`] : []), ...(s.lastReconcile?.error ? [`reconcile: ${s.lastReconcile.error}`] : [])];
  return (
    `${s.node.name}: ready=${s.ready} registered=${cp.registered} connected=${cp.connected} known=${cp.knownNodes}` +
    ` gateway=${s.node.isGateway} relay=${s.node.isRelay} | peers: ${peers || '(none)'} | remotes: ${remotes || '(none)'}` +
    (errs.length ? ` | errors: ${errs.join('; ')}` : '')
  );
}
