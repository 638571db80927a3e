// Backend selection and wireguard-go supervision. Part 1 uses a fake wireguard-go (a tiny node
// process that creates the socket file) so restart/backoff/stop paths run fast; part 2 runs the real
// wireguard-go inside a throw-away network namespace.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Child } from '../lib/child-process.ts';
import { createWireguardBackend, WIREGUARD_SOCKET_DIR, type WireguardBackend } from '../agent/dataplane/wireguard-backend.ts';
import { silentLogger } from '../lib/logger.ts';
import { ProcessRunner } from '../lib/runner.ts';
import { RecordingRunner } from './helpers/recording-runner.ts';
import { waitFor } from '../lib/wait.ts';

const IF = 'xlfake0';

/** A stand-in for `wireguard-go -f`: creates the socket file, removes it on SIGTERM (unless told to ignore SIGTERM). */
function fakeWireguardGo(socketPath: string, options: { ignoreTerm?: boolean; crash?: boolean } = {}, onLine?: (line: string) => void): Child {
  const script = options.crash
    ? "console.error('ERROR: UAPI listen error: boom'); setTimeout(() => process.exit(1), 50);"
    : `
    const fs = require('node:fs');
    const sock = process.argv[1];
    // The handler before the socket: the backend sees the socket as "ready" and may stop us at once.
    process.on('SIGTERM', () => { ${options.ignoreTerm ? '' : "fs.rmSync(sock, { force: true }); process.exit(0);"} });
    fs.writeFileSync(sock, '');
    setInterval(() => {}, 1000);
  `;
  return Child.start([process.execPath, '-e', script, socketPath], onLine ? { onLine } : {});
}

/** ip answers: the link exists while the socket file does (as with wireguard-go's tun). */
function linkFollowsSocket(socketPath: string): RecordingRunner {
  return new RecordingRunner()
    .respond((argv) =>
      argv.join(' ') === `ip -j -d link show dev ${IF}`
        ? existsSync(socketPath)
          ? { stdout: `[{"ifname":"${IF}","linkinfo":{"info_kind":"tun"}}]`, stderr: '', exitCode: 0 }
          : { stdout: '', stderr: `Device "${IF}" does not exist.`, exitCode: 1 }
        : undefined,
    )
    .fail(['ip', 'link', 'add'], 'Error: Unknown device type.');
}

async function fakeSetup(t: { teardown(fn: () => Promise<void>): void }, spawnOptions: Parameters<typeof fakeWireguardGo>[1] = {}) {
  const socketDir = await mkdtemp(join(tmpdir(), 'xl-wgsock-'));
  const socketPath = join(socketDir, `${IF}.sock`);
  const children: Child[] = [];
  const runner = linkFollowsSocket(socketPath);
  let backend: WireguardBackend | undefined;
  t.teardown(async () => {
    await backend?.stop();
    for (const c of children) c.kill('SIGKILL');
    await rm(socketDir, { recursive: true, force: true });
  });
  const create = async (mode: 'auto' | 'userspace' = 'auto', first: Parameters<typeof fakeWireguardGo>[1] = spawnOptions) => {
    backend = await createWireguardBackend({
      runner,
      logger: silentLogger(),
      interfaceName: IF,
      mode,
      socketDir,
      startTimeoutMs: 5000,
      stopTimeoutMs: 500,
      restartBackoffMs: { initial: 50, max: 200 },
      spawnWireguardGo: (_iface, { onLine }) => {
        const c = fakeWireguardGo(socketPath, children.length === 0 ? first : {}, onLine);
        children.push(c);
        return c;
      },
    });
    return backend;
  };
  return { socketDir, socketPath, children, runner, create };
}

test('auto falls back to userspace when the kernel has no WireGuard; stop sends SIGTERM and waits', async (t) => {
  const { socketPath, children, runner, create } = await fakeSetup(t);
  const backend = await create('auto');
  t.is(backend.kind, 'userspace');
  t.is(backend.generation, 1);
  t.true(runner.transcript().includes(`ip link add ${IF} type wireguard`));
  t.true(existsSync(socketPath));
  await backend.stop();
  t.is(children[0]?.exit?.code, 0); // exited by itself on SIGTERM, no SIGKILL needed
  t.false(existsSync(socketPath));
});

test('a stale socket without a process is removed before start', async (t) => {
  const { socketPath, create } = await fakeSetup(t);
  await writeFile(socketPath, '');
  const backend = await create('userspace');
  t.is(backend.generation, 1);
});

test('a socket served by a live process is not stolen', async (t) => {
  const { socketPath, create } = await fakeSetup(t);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const err = await t.throwsAsync(create('userspace'));
  t.regex(err.message, /is served by another wireguard-go/);
});

test('wireguard-go dying unexpectedly is restarted with a new generation and onRestart fires', async (t) => {
  const { children, create } = await fakeSetup(t);
  const backend = await create('userspace');
  const seen: number[] = [];
  backend.onRestart((g) => seen.push(g));
  children[0]?.kill('SIGKILL');
  await waitFor(() => seen.length > 0, { timeoutMs: 10_000, intervalMs: 20, what: 'restart' });
  t.deepEqual(seen, [2]);
  t.is(backend.generation, 2);
  t.is(children.length, 2);
  await backend.ensureLink(); // running again: nothing to do
  t.is(children.length, 2);
});

test('a child crashing during start-up fails the start with its output', async (t) => {
  const { create } = await fakeSetup(t, { crash: true });
  const err = await t.throwsAsync(create('userspace'));
  t.regex(err.message, /wireguard-go exited \(1\) during start-up: ERROR: UAPI listen error: boom/);
});

test('SIGKILL only after the stop timeout when SIGTERM is ignored', async (t) => {
  const { children, create } = await fakeSetup(t, { ignoreTerm: true });
  const backend = await create('userspace');
  await backend.stop();
  t.is(children[0]?.exit?.signal, 'SIGKILL');
});

// --- real wireguard-go in a namespace ---------------------------------------------------------

const run = (argv: string[]) => new ProcessRunner().run(argv, { allowFailure: true });

test('real wireguard-go: auto → userspace in a namespace, restart after an unexpected exit, clean stop', async (t) => {
  const id = randomBytes(3).toString('hex');
  const ns = `xlwb${id}`;
  const iface = `xlwb${id}`;
  const prefix = ['ip', 'netns', 'exec', ns];
  const children: Child[] = [];
  const holder: { backend?: WireguardBackend } = {};
  await run(['ip', 'netns', 'add', ns]);
  t.teardown(async () => {
    // wireguard-go must be gone BEFORE the namespace is deleted.
    await holder.backend?.stop();
    for (const c of children) await c.stop({ graceMs: 20_000 }).catch(() => undefined);
    await run(['ip', 'netns', 'del', ns]);
  });
  const backend = await createWireguardBackend({
    runner: new ProcessRunner(prefix),
    logger: silentLogger(),
    interfaceName: iface,
    mode: 'auto',
    restartBackoffMs: { initial: 100, max: 500 },
    spawnWireguardGo: (name, { onLine }) => {
      const c = Child.start([...prefix, 'wireguard-go', '-f', name], { onLine });
      children.push(c);
      return c;
    },
  });
  holder.backend = backend;
  t.is(backend.kind, 'userspace');
  const socket = join(WIREGUARD_SOCKET_DIR, `${iface}.sock`);
  t.true(existsSync(socket));
  t.is((await run([...prefix, 'wg', 'show', iface, 'listen-port'])).exitCode, 0);

  let restartedAs: number | undefined;
  backend.onRestart((generation) => (restartedAs = generation));
  children[0]?.kill('SIGTERM'); // an exit we did not ask for
  t.is(await waitFor(() => restartedAs, { timeoutMs: 15_000, intervalMs: 50, what: 'wireguard-go restarted by the supervisor' }), 2);
  t.is((await run([...prefix, 'ip', 'link', 'show', 'dev', iface])).exitCode, 0);

  await backend.stop();
  t.true(children.every((c) => !c.running));
  t.false(existsSync(socket));
  t.not((await run([...prefix, 'ip', 'link', 'show', 'dev', iface])).exitCode, 0);
});
