// WireGuard key rotation on a running agent, against a real nats-server and a real Coordinator with
// a fake data plane: POST /rotate-key re-registers the new key, peers swap it in, the state dir
// holds it across a restart; a rotation the coordinator does not take leaves the old key everywhere.
// Plus the status server's rules for the endpoint and `crosslink rotate-key`.
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { loadOrCreateWireguardKey, stageWireguardKey, WIREGUARD_KEY_FILE, WIREGUARD_KEY_NEXT_FILE } from '../agent/control/keys.ts';
import type { DesiredState, PublishedState } from '../agent/plan/model.ts';
import { createStaticNodeSource } from '../agent/control/static-source.ts';
import { RotateKeyError } from '../agent/control/key-rotation.ts';
import { startStatusServer, type StatusProvider } from '../agent/status-server.ts';
import { RotateKeyResponse } from '../protocol/status-api.ts';
import { runCli } from '../cli/main.ts';
import { silentLogger } from '../lib/logger.ts';
import { freeLoopbackPort } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { wireguardPublicKeyOf } from '../protocol/signing.ts';
import { subjects } from '../protocol/subjects.ts';
import type { FakeDataplane } from './agent-helpers.ts';
import { agentRequest, agentStatus } from './helpers/agent-http.ts';
import { expectNodeRecord, startMesh, startStaticAgent, type Mesh, type MeshAddress, type RunningAgent } from './helpers/agent-mesh.ts';
import { captureIo } from './helpers/cli-io.ts';
import { tempDir as makeTempDir } from './helpers/temp-dir.ts';

const WAIT = { timeoutMs: 20_000, intervalMs: 100 } as const;
const BIN = join(import.meta.dirname, '..', 'bin', 'crosslink');

const startRotateMesh = (t: ExecutionContext): Promise<Mesh> => startMesh(t, { label: 'xl-rotate', nodeTtl: '3s' });

/** A static-mode agent that never deregisters, and records everything it published to its node source
 *  (Kubernetes: the Node annotations). */
async function startAgent(
  t: ExecutionContext,
  mesh: MeshAddress,
  o: { name: string; cluster: string; podCidr: string; stateDir: string; healthPort?: number },
): Promise<RunningAgent & { published: PublishedState[] }> {
  const published: PublishedState[] = [];
  const running = await startStaticAgent(t, mesh, {
    ...o,
    extra: ['--no-cleanup', ...(o.healthPort === undefined ? [] : ['--health-addr', `127.0.0.1:${o.healthPort}`])],
    nodeSource: (deps) => {
      const source = createStaticNodeSource(deps);
      return {
        start: (signal) => source.start(signal),
        onChange: (l) => source.onChange(l),
        publish: (state) => {
          published.push(state);
          return source.publish(state);
        },
        stop: () => source.stop(),
      };
    },
  });
  return { ...running, published };
}

const stateDir = (t: ExecutionContext, name: string): Promise<string> => makeTempDir(t, `xl-rotate-${name}-`);

const keyOf = (d: DesiredState | undefined, node: string): string | undefined => d?.peers.find((p) => p.node === node)?.publicKey;
const lastInterfaceKey = async (d: FakeDataplane): Promise<string | undefined> => {
  const k = d.privateKeys.at(-1);
  return k === undefined ? undefined : wireguardPublicKeyOf(k);
};

test.serial('rotate: new key registered, swapped in by the peer, saved 0600, kept across a restart; CLI and serialised requests', async (t) => {
  const mesh = await startRotateMesh(t);
  const aDir = await stateDir(t, 'a');
  const a = await startAgent(t, mesh, { name: 'node-a', cluster: 'c1', podCidr: '10.244.1.0/24', stateDir: aDir, healthPort: await freeLoopbackPort() });
  const b = await startAgent(t, mesh, { name: 'node-b', cluster: 'c2', podCidr: '10.245.1.0/24', stateDir: await stateDir(t, 'b') });
  const oldKey = a.agent.publicKey;
  await waitFor(() => keyOf(b.dataplane.last(), 'node-a') === oldKey && a.agent.readiness().ready, { ...WAIT, what: 'b peers with a' });
  const before = await expectNodeRecord(mesh, 'node-a');

  // Never on the health port; only POST on the socket.
  t.is((await agentRequest({ port: a.healthPort! }, '/rotate-key', 'POST')).status, 404);
  t.is((await agentRequest({ socketPath: a.socket }, '/rotate-key', 'GET')).status, 405);

  const res = await agentRequest({ socketPath: a.socket }, '/rotate-key', 'POST');
  t.is(res.status, 200, res.body);
  const r = RotateKeyResponse.parse(JSON.parse(res.body));
  t.is(r.node, 'node-a');
  t.is(r.oldPublicKey, oldKey);
  t.not(r.newPublicKey, oldKey);
  t.true(r.interfaceUpdated);
  t.is(a.agent.publicKey, r.newPublicKey);

  // The coordinator's record: new key, higher generation.
  const after = await expectNodeRecord(mesh, 'node-a');
  t.is(after.publicKey, r.newPublicKey);
  t.is(after.generation, r.generation);
  t.true(after.generation > before.generation);

  // The peer's desired state swaps the key: the new one in, the old one gone.
  await waitFor(() => keyOf(b.dataplane.last(), 'node-a') === r.newPublicKey, { ...WAIT, what: 'b sees the new key of a' });
  t.false(b.dataplane.last()?.peers.some((p) => p.publicKey === oldKey));

  // On disk: the new private key in `wg genkey` format, 0600, no staging file left; the interface has it.
  const file = join(aDir, WIREGUARD_KEY_FILE);
  const saved = await readFile(file, 'utf8');
  t.regex(saved, /^[A-Za-z0-9+/]{43}=\n$/);
  t.is(await wireguardPublicKeyOf(saved.trim()), r.newPublicKey);
  t.is((await stat(file)).mode & 0o777, 0o600);
  t.false((await readdir(aDir)).includes(WIREGUARD_KEY_NEXT_FILE));
  t.is(await lastInterfaceKey(a.dataplane), r.newPublicKey);
  t.false(res.body.includes(saved.trim()), 'the answer holds no private key');
  t.is((await agentStatus(a.socket)).node.publicKey, r.newPublicKey);
  t.is(a.published.at(-1)?.publicKey, r.newPublicKey, 'the node source (Kubernetes annotations) follows');

  // Two requests at once run one after the other: the second rotates the first one's key.
  const [x, y] = await Promise.all([agentRequest({ socketPath: a.socket }, '/rotate-key', 'POST'), agentRequest({ socketPath: a.socket }, '/rotate-key', 'POST')]);
  t.is(x.status, 200, x.body);
  t.is(y.status, 200, y.body);
  const [rx, ry] = [RotateKeyResponse.parse(JSON.parse(x.body)), RotateKeyResponse.parse(JSON.parse(y.body))];
  const [first, second] = rx.generation < ry.generation ? [rx, ry] : [ry, rx];
  t.is(first.oldPublicKey, r.newPublicKey);
  t.is(second.oldPublicKey, first.newPublicKey);

  // The CLI, in-process (--json) and the real binary (text).
  const io = captureIo();
  t.is(await runCli(['rotate-key', '--json', '--socket', a.socket], io), 0, io.err());
  const viaCli = RotateKeyResponse.parse(JSON.parse(io.out()));
  t.is(viaCli.oldPublicKey, second.newPublicKey);
  const bin = await execa(BIN, ['rotate-key', '--socket', a.socket], { reject: false, timeout: 60_000 });
  t.is(bin.exitCode, 0, bin.stderr);
  t.regex(bin.stdout, new RegExp(`node-a: WireGuard key rotated \\(record generation \\d+\\)\\n  old public key: ${viaCli.newPublicKey.replace(/[+/=]/g, '\\$&')}\\n  new public key: \\S+`));
  const latest = a.agent.publicKey;
  t.not(latest, viaCli.newPublicKey);
  await waitFor(() => keyOf(b.dataplane.last(), 'node-a') === latest, { ...WAIT, what: 'b sees the latest key of a' });

  // Restarted from the same state dir: the latest key, on the interface and in the registration.
  await a.stop();
  const a2 = await startAgent(t, mesh, { name: 'node-a', cluster: 'c1', podCidr: '10.244.1.0/24', stateDir: aDir });
  t.is(a2.agent.publicKey, latest);
  await waitFor(() => a2.agent.readiness().ready, { ...WAIT, what: 'restarted a ready' });
  t.is(await lastInterfaceKey(a2.dataplane), latest);
  t.is((await expectNodeRecord(mesh, 'node-a')).publicKey, latest);
  t.is(keyOf(b.dataplane.last(), 'node-a'), latest);
});

test.serial('a rotation the coordinator does not take keeps the old key in the file, on the interface and in the registration', async (t) => {
  const mesh = await startRotateMesh(t);
  const aDir = await stateDir(t, 'a');
  const a = await startAgent(t, mesh, { name: 'node-a', cluster: 'c1', podCidr: '10.244.1.0/24', stateDir: aDir });
  const oldKey = a.agent.publicKey;
  await waitFor(() => a.agent.readiness().ready, { ...WAIT, what: 'a ready' });
  const file = join(aDir, WIREGUARD_KEY_FILE);
  const savedBefore = await readFile(file, 'utf8');
  const generation = (await expectNodeRecord(mesh, 'node-a')).generation;

  const assertOldKeyEverywhere = async (when: string): Promise<void> => {
    t.is(await readFile(file, 'utf8'), savedBefore, `${when}: key file unchanged`);
    t.false((await readdir(aDir)).includes(WIREGUARD_KEY_NEXT_FILE), `${when}: no staging file left`);
    t.is(a.agent.publicKey, oldKey, when);
    t.is((await agentStatus(a.socket)).node.publicKey, oldKey, `${when}: status`);
    for (const k of a.dataplane.privateKeys) t.is(await wireguardPublicKeyOf(k), oldKey, `${when}: interface`);
    t.true(a.published.every((p) => p.publicKey === oldKey), `${when}: node source`);
  };

  // A coordinator that refuses (here a stand-in answering "conflict"): 409, exit 1, nothing changed.
  await mesh.stopCoordinator();
  const sub = mesh.nc.subscribe(subjects().register, {
    callback: (_err, msg) => {
      msg.respond(JSON.stringify({ ok: false, error: { code: 'conflict', field: 'publicKey', message: 'test refuses every key' } }));
    },
  });
  const refused = await agentRequest({ socketPath: a.socket }, '/rotate-key', 'POST');
  t.is(refused.status, 409, refused.body);
  t.regex(refused.body, /conflict \(publicKey\): test refuses every key.*the old key is kept/);
  await assertOldKeyEverywhere('refused');
  const io = captureIo();
  t.is(await runCli(['rotate-key', '--socket', a.socket], io), 1);
  t.regex(io.err(), /crosslink: key rotation failed: .*HTTP 409: .*the old key is kept/);
  await sub.drain();

  // NATS down: 503, and the CLI says why (exit 1, the agent answered).
  await mesh.server.stopProcess();
  const down = await agentRequest({ socketPath: a.socket }, '/rotate-key', 'POST');
  t.is(down.status, 503, down.body);
  t.regex(down.body, /"error": ".*old key is kept/);
  await assertOldKeyEverywhere('NATS down');
  const cliDown = captureIo();
  t.is(await runCli(['rotate-key', '--socket', a.socket], cliDown), 1);
  t.regex(cliDown.err(), /HTTP 503/);

  // Everything back: still registered with the old key (never the refused ones).
  await mesh.server.restart();
  await waitFor(() => mesh.startCoordinator().then(() => true), { ...WAIT, intervalMs: 500, what: 'coordinator restarted' });
  await waitFor(async () => (await agentStatus(a.socket)).controlPlane.connected && a.agent.readiness().ready, { ...WAIT, what: 'a healthy again' });
  const rec = await expectNodeRecord(mesh, 'node-a');
  t.is(rec.publicKey, oldKey);
  t.true(rec.generation >= generation);
  await assertOldKeyEverywhere('after the outage');

  // An unreachable agent: exit 2.
  const gone = await execa(BIN, ['rotate-key', '--socket', join(aDir, 'nope.sock')], { reject: false, timeout: 60_000 });
  t.is(gone.exitCode, 2);
  t.regex(gone.stderr, /cannot reach the agent/);
});

test('status server: /rotate-key maps RotateKeyError to 503/409/500 and exists only with a provider that rotates', async (t) => {
  const dir = await makeTempDir(t, 'xl-rotate-srv-');
  const failures: (RotateKeyError | null)[] = [null, new RotateKeyError('unavailable', 'no NATS'), new RotateKeyError('refused', 'no'), new RotateKeyError('failed', 'disk')];
  const key = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
  const base: StatusProvider = {
    status: () => Promise.reject(new Error('unused')),
    readiness: () => ({ ready: true, reason: 'ok' }),
    view: () => null,
    diagnostics: () => Promise.reject(new Error('unused')),
  };
  const socketPath = join(dir, 'a.sock');
  const server = await startStatusServer({
    socketPath,
    healthAddr: null,
    logger: silentLogger(),
    provider: {
      ...base,
      rotateKey: () => {
        const f = failures.shift();
        return f ? Promise.reject(f) : Promise.resolve({ node: 'n', oldPublicKey: key, newPublicKey: key, generation: 2, interfaceUpdated: true });
      },
    },
  });
  t.teardown(() => server.close());
  const rows: [number, RegExp][] = [
    [200, /"generation": 2/],
    [503, /"error": "no NATS"/],
    [409, /"failure": "refused"/],
    [500, /"error": "disk"/],
  ];
  for (const [code, body] of rows) {
    const r = await agentRequest({ socketPath }, '/rotate-key', 'POST');
    t.is(r.status, code);
    t.regex(r.body, body);
  }
  const plainPath = join(dir, 'b.sock');
  const plain = await startStatusServer({ socketPath: plainPath, healthAddr: null, logger: silentLogger(), provider: base });
  t.teardown(() => plain.close());
  t.is((await agentRequest({ socketPath: plainPath }, '/rotate-key', 'POST')).status, 404);
});

test('stageWireguardKey: written 0600 beside the key, replaces it only on commit, discard leaves the old key', async (t) => {
  const dir = await makeTempDir(t, 'xl-rotate-keys-');
  const file = join(dir, WIREGUARD_KEY_FILE);
  const current = await loadOrCreateWireguardKey(file);

  const dropped = await stageWireguardKey(dir);
  t.is((await stat(join(dir, WIREGUARD_KEY_NEXT_FILE))).mode & 0o777, 0o600);
  t.is((await readFile(join(dir, WIREGUARD_KEY_NEXT_FILE), 'utf8')).trim(), dropped.keys.privateKey);
  t.is((await readFile(file, 'utf8')).trim(), current.privateKey, 'not in force before commit');
  await dropped.discard();
  t.deepEqual((await readdir(dir)).sort(), [WIREGUARD_KEY_FILE]);
  t.deepEqual(await loadOrCreateWireguardKey(file), current);

  const kept = await stageWireguardKey(dir);
  await kept.commit();
  t.deepEqual((await readdir(dir)).sort(), [WIREGUARD_KEY_FILE]);
  t.is((await stat(file)).mode & 0o777, 0o600);
  t.deepEqual(await loadOrCreateWireguardKey(file), kept.keys);
  t.is(await wireguardPublicKeyOf(kept.keys.privateKey), kept.keys.publicKey);
});
