// The coordinator's HTTP listener (--health-addr, off by default): for kubelet probes and Prometheus.
//   GET /healthz  200 while the process serves
//   GET /readyz   200 once the bucket is open (leader or standby), else 503 with the reason
//   GET /metrics  Prometheus text format (coordinator/metrics.ts, docs/metrics.md)
// Read-only; serves no records and no keys.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { MetricsScrape } from '../lib/metrics.ts';
import type { HostPort } from '../protocol/listen-addr.ts';

export class HealthServerError extends CrosslinkError {
  override name = 'HealthServerError';
}

export interface CoordinatorReadiness {
  readonly ready: boolean;
  readonly leader: boolean;
  readonly reason: string;
}

export interface HealthProvider {
  readiness(): CoordinatorReadiness;
  metrics(): Promise<MetricsScrape>;
}

export interface HealthServer {
  /** Bound port (useful with port 0 in tests). */
  readonly port: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, code: number, contentType: string, body: string): void {
  res.writeHead(code, { 'content-type': contentType, 'cache-control': 'no-store' });
  res.end(body);
}

async function serve(p: HealthProvider, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    send(res, 405, 'application/json', '{"error":"only GET"}\n');
    return;
  }
  switch (path) {
    case '/healthz':
      send(res, 200, 'text/plain', 'ok\n');
      return;
    case '/readyz': {
      const r = p.readiness();
      send(res, r.ready ? 200 : 503, 'application/json', `${JSON.stringify(r)}\n`);
      return;
    }
    case '/metrics': {
      const m = await p.metrics();
      send(res, 200, m.contentType, m.body);
      return;
    }
    default:
      send(res, 404, 'application/json', `${JSON.stringify({ error: `no such endpoint ${path}; try /healthz, /readyz, /metrics` })}\n`);
  }
}

export async function startHealthServer(addr: HostPort, provider: HealthProvider, logger: Logger): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    serve(provider, req, res).catch((err: unknown) => {
      logger.warn({ path: req.url, err: errorMessage(err) }, 'health request failed');
      if (!res.headersSent) send(res, 500, 'application/json', `${JSON.stringify({ error: errorMessage(err) })}\n`);
      else res.destroy();
    });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: addr.host, port: addr.port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    throw new HealthServerError(`cannot listen on ${addr.host}:${addr.port} (--health-addr): ${errorMessage(err)}`, { cause: err });
  }
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : addr.port;
  logger.info({ addr: `${addr.host}:${port}` }, 'health listener ready (/healthz /readyz /metrics)');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
