// Talks to a running agent over its unix status socket (HTTP). Errors say what to check.
import { request } from 'node:http';
import type { z } from 'zod';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';
import { describeZodError } from '../protocol/messages.ts';

export class AgentUnreachableError extends CrosslinkError {
  override name = 'AgentUnreachableError';
}

export class AgentResponseError extends CrosslinkError {
  override name = 'AgentResponseError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** GETs `path` from the agent and parses it with `schema`. */
export function getFromAgent<S extends z.ZodType>(socketPath: string, path: string, schema: S, timeoutMs = 10_000): Promise<z.infer<S>> {
  return callAgent('GET', socketPath, path, schema, timeoutMs);
}

/** POSTs to `path` on the agent (a JSON body if given), e.g. /rotate-key, and parses the answer with `schema`. */
export function postToAgent<S extends z.ZodType>(socketPath: string, path: string, schema: S, timeoutMs = 30_000, payload?: unknown): Promise<z.infer<S>> {
  return callAgent('POST', socketPath, path, schema, timeoutMs, payload);
}

async function callAgent<S extends z.ZodType>(method: 'GET' | 'POST', socketPath: string, path: string, schema: S, timeoutMs: number, payload?: unknown): Promise<z.infer<S>> {
  const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const data = payload === undefined ? undefined : JSON.stringify(payload);
    const headers = data === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) };
    const req = request({ socketPath, path, method, timeout: timeoutMs, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      const hint =
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? ' (is crosslink-agent running? pass --socket or set CROSSLINK_STATUS_SOCKET if it uses another --status-socket)'
          : err.code === 'EACCES'
            ? ' (the socket is mode 0600: run as the agent\'s user, usually root)'
            : '';
      reject(new AgentUnreachableError(`cannot reach the agent at ${socketPath}: ${errorMessage(err)}${hint}`, { cause: err }));
    });
    req.end(data);
  });
  let json: unknown;
  try {
    json = JSON.parse(body) as unknown;
  } catch {
    throw new AgentResponseError(status, `agent answered ${path} with non-JSON (HTTP ${status}): ${body.slice(0, 120)}`);
  }
  if (status !== 200) {
    const msg = typeof json === 'object' && json !== null && 'error' in json ? String(json.error) : body.slice(0, 200);
    throw new AgentResponseError(status, `agent answered ${path} with HTTP ${status}: ${msg}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new AgentResponseError(status, `agent answered ${path} with an unexpected document (different version?): ${describeZodError(parsed.error, json).message}`);
  }
  return parsed.data;
}
