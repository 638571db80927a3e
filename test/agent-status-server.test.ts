// Status server: socket mode 0600, stale socket replaced, live socket refused, endpoints and codes,
// health port without the local-only endpoints.
import test, { type ExecutionContext } from 'ava';
import { link, lstat, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { RotateKeyError } from '../agent/control/key-rotation.ts';
import { isLoopback, startStatusServer, StatusServerError, type StatusProvider } from '../agent/status-server.ts';
import { pino } from 'pino';
import type { Readiness } from '../protocol/status-api.ts';
import { silentLogger } from '../lib/logger.ts';
import type { AgentStatus } from '../protocol/status.ts';
import { agentRequest } from './helpers/agent-http.ts';
import { tempDir as makeTempDir } from './helpers/temp-dir.ts';

const tempDir = (t: ExecutionContext): Promise<string> => makeTempDir(t, 'xl-status-');

function provider(readiness: Readiness): StatusProvider {
  return {
    status: () => Promise.resolve({ version: 'test' } as unknown as AgentStatus),
    readiness: () => readiness,
    view: () => null,
    diagnostics: () => Promise.reject(new Error('wg show failed')),
  };
}

test('serves the endpoints on a 0600 socket and the health port', async (t) => {
  const dir = await tempDir(t);
  const socketPath = join(dir, 'agent.sock');
  const server = await startStatusServer({ socketPath, healthAddr: { host: '127.0.0.1', port: 0 }, provider: provider({ ready: false, reason: 'not registered yet' }), logger: silentLogger() });
  t.teardown(() => server.close());
  t.is((await stat(socketPath)).mode & 0o777, 0o600);
  const sock = { socketPath };
  const rows: [string, number, RegExp][] = [
    ['/healthz', 200, /ok/],
    ['/readyz', 503, /not registered yet/],
    ['/status', 200, /"version": "test"/],
    ['/view', 503, /no view yet/],
    ['/diagnostics', 500, /wg show failed/],
    ['/nope', 404, /no such endpoint \/nope/],
  ];
  for (const [path, code, body] of rows) {
    const r = await agentRequest(sock, path);
    t.is(r.status, code, path);
    t.regex(r.body, body, path);
  }
  t.is((await agentRequest(sock, '/status', 'POST')).status, 405);

  const port = server.healthPort;
  t.truthy(port);
  t.is((await agentRequest({ port: port! }, '/healthz')).status, 200);
  t.is((await agentRequest({ port: port! }, '/status')).status, 404, 'the topology is not on the health port unless --health-status');
  t.is((await agentRequest({ port: port! }, '/readyz')).status, 503);
  t.is((await agentRequest({ port: port! }, '/view')).status, 404, 'the view stays on the local socket');

  await server.close();
  await t.throwsAsync(stat(socketPath), { code: 'ENOENT' });
});

test('replaces a stale socket but refuses one a live process serves', async (t) => {
  const dir = await tempDir(t);
  const socketPath = join(dir, 'agent.sock');
  // A live listener on the path: another agent.
  const other = createServer();
  await new Promise<void>((r) => other.listen(socketPath, r));
  await t.throwsAsync(startStatusServer({ socketPath, healthAddr: null, provider: provider({ ready: true, reason: 'ok' }), logger: silentLogger() }), {
    instanceOf: StatusServerError,
    message: /another process is serving/,
  });
  await new Promise<void>((r) => other.close(() => r()));

  // Stale: a socket file nobody listens on (what a crashed agent leaves). A hard link to a
  // listening socket outlives the listener's own unlink on close.
  const tmp = createServer();
  await new Promise<void>((r) => tmp.listen(join(dir, 'tmp.sock'), r));
  await link(join(dir, 'tmp.sock'), socketPath);
  await new Promise<void>((r) => tmp.close(() => r()));
  t.true((await lstat(socketPath)).isSocket());
  const server = await startStatusServer({ socketPath, healthAddr: null, provider: provider({ ready: true, reason: 'ok' }), logger: silentLogger() });
  t.is((await agentRequest({ socketPath }, '/readyz')).status, 200);
  await server.close();
});

test('refuses to replace a regular file at the socket path', async (t) => {
  const dir = await tempDir(t);
  const socketPath = join(dir, 'agent.sock');
  await writeFile(socketPath, 'not a socket');
  await t.throwsAsync(startStatusServer({ socketPath, healthAddr: null, provider: provider({ ready: true, reason: 'ok' }), logger: silentLogger() }), {
    instanceOf: StatusServerError,
    message: /not a socket/,
  });
});

test('POST /rotate-key is served on the socket only; a refusal maps to 409', async (t) => {
  const dir = await tempDir(t);
  const socketPath = join(dir, 'agent.sock');
  const rotating: StatusProvider = {
    ...provider({ ready: true, reason: 'ok' }),
    rotateKey: () => Promise.reject(new RotateKeyError('refused', 'the coordinator did not accept the new key')),
  };
  const server = await startStatusServer({ socketPath, healthAddr: { host: '127.0.0.1', port: 0 }, provider: rotating, logger: silentLogger() });
  t.teardown(() => server.close());
  const r = await agentRequest({ socketPath }, '/rotate-key', 'POST');
  t.is(r.status, 409);
  t.regex(r.body, /"failure": "refused"/);
  t.is((await agentRequest({ socketPath }, '/rotate-key')).status, 405, 'GET must not rotate');
  t.is((await agentRequest({ port: server.healthPort! }, '/rotate-key', 'POST')).status, 404, 'never on the health port');
});

test('finding 9: --health-status opts /status in on the health port; an off-loopback health listener warns', async (t) => {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  const opted = await startStatusServer({ socketPath: null, healthAddr: { host: '127.0.0.1', port: 0 }, healthStatus: true, provider: provider({ ready: true, reason: 'ok' }), logger });
  t.teardown(() => opted.close());
  t.is((await agentRequest({ port: opted.healthPort! }, '/status')).status, 200);
  t.false(lines.some((l) => l.includes('reachable off this host')), 'loopback: no warning');

  const open = await startStatusServer({ socketPath: null, healthAddr: { host: '0.0.0.0', port: 0 }, provider: provider({ ready: true, reason: 'ok' }), logger });
  t.teardown(() => open.close());
  t.true(lines.some((l) => l.includes('"level":40') && l.includes('reachable off this host')), 'off loopback: a warning');
  t.is((await agentRequest({ port: open.healthPort! }, '/status')).status, 404);
  t.is((await agentRequest({ port: open.healthPort! }, '/healthz')).status, 200);
  for (const [host, loop] of [['127.0.0.1', true], ['127.8.9.10', true], ['::1', true], ['0.0.0.0', false], ['::', false], ['10.0.0.1', false]] as const) {
    t.is(isLoopback(host), loop, host);
  }
});
