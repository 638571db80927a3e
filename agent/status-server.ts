// The agent's local HTTP API: on the unix status socket (mode 0600) for the CLI, and optionally on
// --health-addr for probes and scrapers. Never serves private keys.
//   GET /status       AgentStatus (protocol/status.ts)          socket (+ health port with --health-status)
//                     ?fresh=1 (also on /metrics): read the kernel now, not the shared reading (protocol/fresh-read.ts)
//   GET /healthz      200 while the process serves              socket + health port
//   GET /readyz       200 once registered and reconciled, else 503 with the reason
//   GET /view         the verified MeshView + data plane config  socket only (for `crosslink showconf`)
//   GET /diagnostics  live WireGuard peers and owned routes      socket only (for `crosslink diagnose`)
//   GET /ping         probe a node / overlay IP / pod IP         socket only (for `crosslink ping`)
//   POST /rotate-key  new WireGuard key, re-registered           socket only (for `crosslink rotate-key`)
//   GET /policy       access policy, live nftables table, counters socket only (for `crosslink policy explain`)
//   GET /metrics      Prometheus text format (docs/metrics.md)   socket + health port
// The documents are in protocol/status.ts and protocol/status-api.ts.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { MetricsScrape } from '../lib/metrics.ts';
import type { PolicyDocumentResponse } from '../protocol/policy/status.ts';
import type { PingReply } from '../protocol/health.ts';
import type { AgentStatus } from '../protocol/status.ts';
import { parseFreshQuery, type StatusReadOptions } from '../protocol/fresh-read.ts';
import type { DiagnosticsDocument, Readiness, RotateKeyErrorBody, RotateKeyFailure, RotateKeyResponse, ViewDocument } from '../protocol/status-api.ts';
import { parsePingQuery, type PingQuery } from './health/ping.ts';
import type { HostPort } from './config.ts';
import { RotateKeyError } from './control/key-rotation.ts';

export class StatusServerError extends CrosslinkError {
  override name = 'StatusServerError';
}

const ROTATE_HTTP_STATUS: Readonly<Record<RotateKeyFailure, number>> = { unavailable: 503, refused: 409, failed: 500 };

export interface StatusProvider {
  /** `fresh`: read the kernel now instead of the reading shared among requests (GET /status?fresh=1). */
  status(options?: StatusReadOptions): Promise<AgentStatus>;
  readiness(): Readiness;
  /** null until there is a view (not registered or no KV snapshot yet). */
  view(): ViewDocument | null;
  diagnostics(): Promise<DiagnosticsDocument>;
  /** POST /rotate-key (socket only; absent: the endpoint does not exist). Rejects with RotateKeyError. */
  rotateKey?(): Promise<RotateKeyResponse>;
  /** GET /policy (socket only): the access policy, its live nftables table and counters. */
  policy?(): Promise<PolicyDocumentResponse>;
  /** GET /ping (socket only): probes a node / overlay IP / pod IP (`crosslink ping`). */
  ping?(q: PingQuery): Promise<PingReply>;
  /** GET /metrics (socket + health port): the Prometheus scrape (agent/metrics/). */
  metrics?(options?: StatusReadOptions): Promise<MetricsScrape>;
}

/** A route added by another module (e.g. services), served on the socket only; POST bodies are parsed JSON. */
export interface ExtraRoute {
  readonly path: string;
  readonly method: 'GET' | 'POST';
  readonly handle: (body: unknown) => Promise<{ readonly status: number; readonly body: unknown }>;
}

export interface StatusServerOptions {
  readonly socketPath: string | null;
  readonly extraRoutes?: readonly ExtraRoute[];
  readonly healthAddr: HostPort | null;
  /** Serve /status on the health port too (the mesh topology, unauthenticated); default false. */
  readonly healthStatus?: boolean;
  readonly provider: StatusProvider;
  readonly logger: Logger;
}

export interface StatusServer {
  /** Bound health port (useful with port 0 in tests); null when off. */
  readonly healthPort: number | null;
  close(): Promise<void>;
}

type Route = { readonly method: 'GET' | 'POST'; readonly serve: (req: IncomingMessage, res: ServerResponse) => Promise<void> };

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(text);
}

function routes(p: StatusProvider, local: boolean, status = local): Map<string, Route> {
  const m = new Map<string, Route>();
  const get = (path: string, serve: Route['serve']): void => void m.set(path, { method: 'GET', serve });
  get('/healthz', () => Promise.resolve());
  /**
   * Passes the request's ?fresh=… on, or answers 400 naming a bad value. Fresh reads only on the
   * 0600 socket: on the unauthenticated health port every request could otherwise spawn wg/nft/ip.
   */
  const readFresh = (serve: (o: StatusReadOptions, res: ServerResponse) => Promise<void>): Route['serve'] => (req, res) => {
    const o = parseFreshQuery(req.url ?? '/');
    if ('error' in o || (o.fresh === true && !local)) {
      sendJson(res, 400, 'error' in o ? o : { error: 'fresh: only on the status socket; the health port serves the reading shared among requests' });
      return Promise.resolve();
    }
    return serve(o, res);
  };
  if (status) get('/status', readFresh(async (o, res) => sendJson(res, 200, await p.status(o))));
  get('/readyz', (_req, res) => {
    const r = p.readiness();
    sendJson(res, r.ready ? 200 : 503, r);
    return Promise.resolve();
  });
  const metrics = p.metrics?.bind(p);
  if (metrics) {
    get('/metrics', readFresh(async (o, res) => {
      const m = await metrics(o);
      res.writeHead(200, { 'content-type': m.contentType, 'cache-control': 'no-store' });
      res.end(m.body);
    }));
  }
  if (local) {
    get('/view', (_req, res) => {
      const v = p.view();
      if (v === null) sendJson(res, 503, { error: 'no view yet: not registered or the KV snapshot is not loaded' });
      else sendJson(res, 200, v);
      return Promise.resolve();
    });
    get('/diagnostics', async (_req, res) => sendJson(res, 200, await p.diagnostics()));
    const policy = p.policy?.bind(p);
    if (policy) get('/policy', async (_req, res) => sendJson(res, 200, await policy()));
    const ping = p.ping?.bind(p);
    if (ping) {
      get('/ping', async (req, res) => {
        const q = parsePingQuery(req.url ?? '/');
        if ('error' in q) sendJson(res, 400, q);
        else sendJson(res, 200, await ping(q));
      });
    }
    // Changes state, so only on the 0600 socket (root), never on the health port.
    const rotate = p.rotateKey?.bind(p);
    if (rotate) {
      m.set('/rotate-key', {
        method: 'POST',
        serve: async (_req, res) => {
          try {
            sendJson(res, 200, await rotate());
          } catch (err) {
            if (!(err instanceof RotateKeyError)) throw err;
            const body: RotateKeyErrorBody = { error: err.message, failure: err.failure };
            sendJson(res, ROTATE_HTTP_STATUS[err.failure], body);
          }
        },
      });
    }
  }
  return m;
}

function handler(table: Map<string, Route>, logger: Logger) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const route = table.get(path);
    if (!route) {
      sendJson(res, 404, { error: `no such endpoint ${path}; try ${[...table.keys()].join(', ')}` });
      return;
    }
    const allowed = route.method === 'GET' ? ['GET', 'HEAD'] : [route.method];
    if (!allowed.includes(req.method ?? '')) {
      res.setHeader('allow', allowed.join(', '));
      sendJson(res, 405, { error: `only ${route.method}` });
      return;
    }
    route
      .serve(req, res)
      .then(() => {
        if (!res.headersSent) {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('ok\n');
        }
      })
      .catch((err: unknown) => {
        logger.warn({ path, err: errorMessage(err) }, 'status request failed');
        if (!res.headersSent) sendJson(res, 500, { error: errorMessage(err) });
        else res.destroy();
      });
  };
}

const MAX_BODY = 256 * 1024;

async function serveExtra(r: ExtraRoute, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let body: unknown;
  if (r.method === 'POST') {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > MAX_BODY) {
        sendJson(res, 413, { error: `request body over ${MAX_BODY} bytes` });
        return;
      }
      chunks.push(c);
    }
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null') as unknown;
    } catch {
      sendJson(res, 400, { error: 'request body is not JSON' });
      return;
    }
  }
  const out = await r.handle(body);
  sendJson(res, out.status, out.body);
}

/** Removes a socket file left by a dead agent; refuses if a live one still answers on it. */
async function removeStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new StatusServerError(`${path} exists and is not a socket; refusing to replace it`);
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    // A listener too busy to accept is still alive: never replace it, never wait forever.
    s.setTimeout(2000, () => {
      s.destroy();
      resolve(true);
    });
  });
  if (alive) throw new StatusServerError(`another process is serving ${path} (is an agent already running with this --state-dir?)`);
  await unlink(path);
}

function listen(server: Server, target: { path: string } | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(target, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** 127.0.0.0/8, ::1 and ::ffff:127.x: only this host can connect. */
export function isLoopback(host: string): boolean {
  return /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::1' || /^::ffff:127\./i.test(host) || host === 'localhost';
}

export async function startStatusServer(o: StatusServerOptions): Promise<StatusServer> {
  const servers: Server[] = [];
  let healthPort: number | null = null;
  try {
    if (o.socketPath !== null) {
      await mkdir(dirname(o.socketPath), { recursive: true, mode: 0o700 });
      await removeStaleSocket(o.socketPath);
      const table = routes(o.provider, true);
      for (const r of o.extraRoutes ?? []) table.set(r.path, { method: r.method, serve: (req, res) => serveExtra(r, req, res) });
      const s = createServer(handler(table, o.logger));
      await listen(s, { path: o.socketPath });
      servers.push(s);
      await chmod(o.socketPath, 0o600);
    }
    if (o.healthAddr !== null) {
      const s = createServer(handler(routes(o.provider, false, o.healthStatus === true), o.logger));
      await listen(s, { host: o.healthAddr.host, port: o.healthAddr.port });
      servers.push(s);
      const addr = s.address();
      healthPort = typeof addr === 'object' && addr ? addr.port : o.healthAddr.port;
    }
  } catch (err) {
    await Promise.all(servers.map(closeServer));
    throw new StatusServerError(`cannot start the status server: ${errorMessage(err)}`, { cause: err });
  }
  o.logger.info({ socket: o.socketPath, health: o.healthAddr === null ? null : `${o.healthAddr.host}:${healthPort}`, healthStatus: o.healthStatus === true }, 'status server listening');
  if (o.healthAddr !== null && !isLoopback(o.healthAddr.host)) {
    o.logger.warn(
      { health: `${o.healthAddr.host}:${healthPort}`, servesStatus: o.healthStatus === true },
      o.healthStatus === true
        ? 'the health listener is reachable off this host and serves /status (the mesh topology) without authentication'
        : 'the health listener is reachable off this host (unauthenticated /healthz, /readyz and /metrics); bind it to 127.0.0.1 unless probes or scrapes come from elsewhere',
    );
  }
  return {
    healthPort,
    async close(): Promise<void> {
      await Promise.all(servers.map(closeServer));
      if (o.socketPath !== null) await unlink(o.socketPath).catch(() => undefined);
    },
  };
}
