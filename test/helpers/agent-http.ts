// HTTP to an agent's status server: its unix socket, or the health port on 127.0.0.1.
import { request } from 'node:http';
import { AgentStatus } from '../../protocol/status.ts';

export type StatusServerTarget = { readonly socketPath: string } | { readonly port: number };

export interface HttpAnswer {
  readonly status: number;
  readonly body: string;
}

/** One request; any status code resolves (the tests assert on it), only a transport error rejects. */
export function agentRequest(target: StatusServerTarget, path: string, method = 'GET'): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({ ...target, ...('port' in target ? { host: '127.0.0.1' } : {}), path, method }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** GET /status on the socket, validated against the published schema. */
export async function agentStatus(socketPath: string): Promise<AgentStatus> {
  return AgentStatus.parse(JSON.parse((await agentRequest({ socketPath }, '/status')).body));
}
