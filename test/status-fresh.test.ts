// `?fresh=1` on GET /status and /metrics (protocol/fresh-read.ts): the status server hands it to the
// agent, a bad value is refused naming it, and `crosslink status|peers --fresh` ask for it (the
// agent side, a fresh read past the shared one, is in lib-recent-read and agent-integration).
import test, { type ExecutionContext } from 'ava';
import { join } from 'node:path';
import { startStatusServer, type StatusProvider } from '../agent/status-server.ts';
import { runCli } from '../cli/main.ts';
import { silentLogger } from '../lib/logger.ts';
import { parseFreshQuery, withFresh, type StatusReadOptions } from '../protocol/fresh-read.ts';
import type { AgentStatus } from '../protocol/status.ts';
import { agentRequest } from './helpers/agent-http.ts';
import { captureIo } from './helpers/cli-io.ts';
import { tempDir } from './helpers/temp-dir.ts';

test('parseFreshQuery: absent or 0/false is shared, 1/true/empty is fresh, anything else names the value', (t) => {
  t.deepEqual(parseFreshQuery('/status'), { fresh: false });
  t.deepEqual(parseFreshQuery('/status?fresh=0'), { fresh: false });
  t.deepEqual(parseFreshQuery('/status?fresh=false'), { fresh: false });
  t.deepEqual(parseFreshQuery('/status?fresh=1'), { fresh: true });
  t.deepEqual(parseFreshQuery('/status?fresh=true'), { fresh: true });
  t.deepEqual(parseFreshQuery('/status?fresh'), { fresh: true });
  const bad = parseFreshQuery('/status?fresh=yes');
  t.true('error' in bad && /fresh: "yes" is not allowed; use 1 or true/.test(bad.error), JSON.stringify(bad));
  const twice = parseFreshQuery('/status?fresh=1&fresh=0');
  t.true('error' in twice && /given 2 times/.test(twice.error), JSON.stringify(twice));
  t.is(withFresh('/status', true), '/status?fresh=1');
  t.is(withFresh('/status', undefined), '/status');
});

async function recordingServer(t: ExecutionContext): Promise<{ socketPath: string; healthPort: number; asked: { path: string; read: StatusReadOptions | undefined }[] }> {
  const asked: { path: string; read: StatusReadOptions | undefined }[] = [];
  const provider: StatusProvider = {
    status: (read) => {
      asked.push({ path: '/status', read });
      return Promise.resolve({ version: 'test' } as unknown as AgentStatus);
    },
    metrics: (read) => {
      asked.push({ path: '/metrics', read });
      return Promise.resolve({ contentType: 'text/plain', body: '' });
    },
    readiness: () => ({ ready: true, reason: 'ok' }),
    view: () => null,
    diagnostics: () => Promise.reject(new Error('not here')),
  };
  const socketPath = join(await tempDir(t, 'xl-fresh-'), 'agent.sock');
  const server = await startStatusServer({ socketPath, healthAddr: { host: '127.0.0.1', port: 0 }, healthStatus: true, provider, logger: silentLogger() });
  t.teardown(() => server.close());
  return { socketPath, healthPort: server.healthPort ?? 0, asked };
}

test('the status server passes ?fresh on to /status and /metrics, and refuses a bad value with 400', async (t) => {
  const { socketPath, asked } = await recordingServer(t);
  for (const path of ['/status', '/status?fresh=1', '/metrics', '/metrics?fresh=1']) t.is((await agentRequest({ socketPath }, path)).status, 200, path);
  t.deepEqual(
    asked.map((a) => `${a.path} ${a.read?.fresh}`),
    ['/status false', '/status true', '/metrics false', '/metrics true'],
  );
  const bad = await agentRequest({ socketPath }, '/status?fresh=maybe');
  t.is(bad.status, 400);
  t.regex(bad.body, /fresh: \\"maybe\\" is not allowed/);
  t.is(asked.length, 4, 'a refused request never reaches the agent');
});

test('the health port (unauthenticated) refuses a fresh read: each request there could spawn wg, nft and ip', async (t) => {
  const { healthPort, asked } = await recordingServer(t);
  for (const path of ['/status?fresh=1', '/metrics?fresh=1']) {
    const r = await agentRequest({ port: healthPort }, path);
    t.is(r.status, 400, path);
    t.regex(r.body, /fresh: only on the status socket/, path);
  }
  t.is(asked.length, 0, 'never reached the agent');
  t.is((await agentRequest({ port: healthPort }, '/metrics')).status, 200, 'the shared reading is served there');
  t.is((await agentRequest({ port: healthPort }, '/status?fresh=0')).status, 200);
  t.deepEqual(asked.map((a) => a.read?.fresh), [false, false]);
});

test('crosslink status --fresh and peers --fresh ask for a fresh read; without the flag they do not', async (t) => {
  const { socketPath, asked } = await recordingServer(t);
  // The recorded document is not a full status: the CLI refuses it afterwards (exit 2); what it asked for is recorded.
  for (const args of [['status'], ['status', '--fresh'], ['peers'], ['peers', '--fresh'], ['status', '--fresh', '--json']]) {
    const io = captureIo();
    await runCli([...args, '--socket', socketPath], io);
  }
  t.deepEqual(asked.map((a) => a.read?.fresh), [false, true, false, true, true]);
});
