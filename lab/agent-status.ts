// Reads an agent's status document (GET /status over its unix socket), validated with the shared schema.
import { request } from 'node:http';
import { AgentStatus } from '../protocol/status.ts';
import { describeZodError } from '../protocol/messages.ts';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';

export class StatusUnavailableError extends CrosslinkError {
  override name = 'StatusUnavailableError';
}

export function fetchAgentStatus(socketPath: string, timeoutMs = 3000): Promise<AgentStatus> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/status', method: 'GET', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => reject(new StatusUnavailableError(`${socketPath}: ${errorMessage(err)}`, { cause: err })));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) {
          reject(new StatusUnavailableError(`${socketPath}: GET /status answered ${res.statusCode ?? '?'}: ${body.slice(0, 200)}`));
          return;
        }
        let json: unknown;
        try {
          json = JSON.parse(body);
        } catch (err) {
          reject(new StatusUnavailableError(`${socketPath}: status is not JSON: ${body.slice(0, 200)}`, { cause: err }));
          return;
        }
        const parsed = AgentStatus.safeParse(json);
        if (!parsed.success) {
          reject(new StatusUnavailableError(`${socketPath}: status does not match the schema: ${describeZodError(parsed.error, json).message}`));
          return;
        }
        resolve(parsed.data);
      });
    });
    req.on('timeout', () => req.destroy(new StatusUnavailableError(`${socketPath}: no answer within ${timeoutMs} ms`)));
    req.on('error', (err) =>
      reject(err instanceof StatusUnavailableError ? err : new StatusUnavailableError(`${socketPath}: ${errorMessage(err)}`, { cause: err })),
    );
    req.end();
  });
}

/** One line per agent for failure reports: readiness, control plane, peers with path and handshake age. */
export function summarizeStatus(s: AgentStatus, now = Date.now()): string {
  const cp = s.controlPlane;
  const peers = s.peers
    .map((p) => {
      const hs = p.latestHandshakeAt === null ? 'no handshake' : `hs ${Math.round((now - p.latestHandshakeAt) / 1000)}s ago`;
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
