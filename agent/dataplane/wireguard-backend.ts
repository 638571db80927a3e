// WireGuard backends: the kernel module (`ip link add … type wireguard`) or a supervised userspace
// `wireguard-go -f <if>` child. Both are then configured the same way, with `wg` and `ip`.
//
// wireguard-go rules (a wireguard-go killed in the wrong order can spin in the kernel forever):
// foreground child only (`-f`; never WG_PROCESS_FOREGROUND, never daemon mode), stopped with SIGTERM
// and awaited; SIGKILL only after a generous timeout. Its tun device and UAPI socket
// (/var/run/wireguard/<if>.sock) vanish when it exits, so a restart yields an EMPTY interface:
// `generation` increments and onRestart listeners fire so the daemon re-applies everything.
import { stat, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Child, describeExit } from '../../lib/child-process.ts';
import { systemClock, type Clock } from '../../lib/clock.ts';
import { CommandError, CrosslinkError, errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { Runner } from '../../lib/runner.ts';
import { waitFor } from '../../lib/wait.ts';
import { backoffDelay, type BackoffPolicy } from '../../lib/backoff.ts';

export type WireguardMode = 'auto' | 'kernel' | 'userspace';
export type BackendKind = 'kernel' | 'userspace';

export const WIREGUARD_SOCKET_DIR = '/var/run/wireguard';

export class WireguardBackendError extends CrosslinkError {
  override name = 'WireguardBackendError';
}

export interface WireguardBackend {
  readonly kind: BackendKind;
  readonly interfaceName: string;
  /** 1 after the first creation; +1 every time the interface was recreated empty (wireguard-go restart, link deleted). */
  readonly generation: number;
  /** Called after the interface was recreated empty. Returns an unsubscribe function. */
  onRestart(listener: (generation: number) => void): () => void;
  /** Makes sure the link exists: kernel: re-creates a deleted link; userspace: (re)starts wireguard-go if it is down. */
  ensureLink(): Promise<void>;
  /** Stops supervising. Userspace: SIGTERM wireguard-go and wait (its link goes away with it). Kernel: the link stays. */
  stop(): Promise<void>;
  /** Removes the link for good (and stops wireguard-go). */
  destroy(): Promise<void>;
}

export interface WireguardBackendOptions {
  readonly runner: Runner;
  readonly logger: Logger;
  readonly interfaceName: string;
  readonly mode: WireguardMode;
  readonly clock?: Clock;
  /** Starts `wireguard-go -f <iface>` (injectable for tests). Default: spawn with `wireguardGoPrefix`. */
  readonly spawnWireguardGo?: (iface: string, options: { readonly onLine: (line: string) => void }) => Child;
  /** Prepended to the default wireguard-go argv, e.g. ['ip', 'netns', 'exec', ns]. */
  readonly wireguardGoPrefix?: readonly string[];
  /** Where wireguard-go's UAPI sockets are. Default /var/run/wireguard. */
  readonly socketDir?: string;
  /** How long wireguard-go gets to create its socket and link. Default 10 s. */
  readonly startTimeoutMs?: number;
  /** How long wireguard-go gets to exit after SIGTERM before SIGKILL. Default 20 s. */
  readonly stopTimeoutMs?: number;
  /** Restart backoff: first delay and cap (ms). Defaults 500 ms and 30 s. */
  readonly restartBackoffMs?: { readonly initial: number; readonly max: number };
}

const UNSUPPORTED = /Unknown device type|not supported|Operation not supported|No such device/i;

interface LinkInfo {
  readonly kind: string | null;
}

/** `ip -j -d link show dev X`: undefined when the link does not exist. */
export async function readLink(runner: Runner, iface: string): Promise<LinkInfo | undefined> {
  const r = await runner.run(['ip', '-j', '-d', 'link', 'show', 'dev', iface], { allowFailure: true });
  if (r.exitCode !== 0) {
    if (/does not exist|Cannot find device/i.test(r.stderr)) return undefined;
    throw new CommandError(['ip', '-j', '-d', 'link', 'show', 'dev', iface], r.exitCode, r.stderr, false);
  }
  if (r.stdout.trim() === '') return undefined;
  const links = JSON.parse(r.stdout) as { linkinfo?: { info_kind?: unknown } }[];
  const link = links[0];
  if (!link) return undefined;
  const kind = link.linkinfo?.info_kind;
  return { kind: typeof kind === 'string' ? kind : null };
}

/** Picks and starts the backend. `auto`: kernel if `ip link add … type wireguard` works, else userspace. */
export async function createWireguardBackend(options: WireguardBackendOptions): Promise<WireguardBackend> {
  const { runner, logger, interfaceName: iface, mode } = options;
  const existing = await readLink(runner, iface);
  if (existing) {
    if (existing.kind === 'wireguard') {
      if (mode === 'userspace') {
        throw new WireguardBackendError(`interface ${iface} already exists as a kernel WireGuard interface; delete it or use --wireguard kernel/auto`);
      }
      logger.info({ iface }, 'reusing existing kernel WireGuard interface');
      return new KernelBackend(runner, logger, iface);
    }
    if (existing.kind !== 'tun' || mode === 'kernel') {
      throw new WireguardBackendError(`interface ${iface} already exists and is a ${existing.kind ?? 'device of unknown kind'}, not a ${mode === 'kernel' ? 'kernel WireGuard interface' : 'WireGuard interface'}; remove it or choose another interface name`);
    }
    // A tun: most likely another wireguard-go still serving it; the userspace start below says so.
  }
  if (mode !== 'userspace' && !existing) {
    const add = await runner.run(['ip', 'link', 'add', iface, 'type', 'wireguard'], { allowFailure: true });
    if (add.exitCode === 0) {
      logger.info({ iface }, 'using kernel WireGuard');
      return new KernelBackend(runner, logger, iface);
    }
    if (!UNSUPPORTED.test(add.stderr) || mode === 'kernel') {
      const why = new CommandError(['ip', 'link', 'add', iface, 'type', 'wireguard'], add.exitCode, add.stderr, false);
      throw new WireguardBackendError(
        mode === 'kernel' ? `kernel WireGuard is not available (${why.message}); use --wireguard userspace or auto` : `cannot create ${iface}: ${why.message}`,
        { cause: why },
      );
    }
    logger.info({ iface, reason: add.stderr.trim() }, 'kernel WireGuard unavailable; using wireguard-go');
  }
  const backend = new UserspaceBackend(options);
  await backend.start();
  return backend;
}

abstract class BaseBackend {
  generation = 0;
  private readonly listeners = new Set<(generation: number) => void>();

  onRestart(listener: (generation: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  protected bumpGeneration(logger: Logger): void {
    this.generation++;
    if (this.generation === 1) return;
    for (const l of this.listeners) {
      try {
        l(this.generation);
      } catch (err) {
        logger.warn({ err: errorMessage(err) }, 'onRestart listener threw');
      }
    }
  }
}

class KernelBackend extends BaseBackend implements WireguardBackend {
  readonly kind = 'kernel' as const;

  constructor(
    private readonly runner: Runner,
    private readonly logger: Logger,
    readonly interfaceName: string,
  ) {
    super();
    this.generation = 1;
  }

  async ensureLink(): Promise<void> {
    if (await readLink(this.runner, this.interfaceName)) return;
    this.logger.warn({ iface: this.interfaceName }, 'WireGuard interface disappeared; re-creating it');
    await this.runner.run(['ip', 'link', 'add', this.interfaceName, 'type', 'wireguard']);
    this.bumpGeneration(this.logger);
  }

  stop(): Promise<void> {
    // The kernel interface (and its peers and routes) outlives the agent: traffic keeps flowing across restarts.
    return Promise.resolve();
  }

  async destroy(): Promise<void> {
    if (await readLink(this.runner, this.interfaceName)) await this.runner.run(['ip', 'link', 'del', 'dev', this.interfaceName]);
  }
}

/** Supervises one `wireguard-go -f <iface>` child; restarts it with backoff if it dies unexpectedly. */
class UserspaceBackend extends BaseBackend implements WireguardBackend {
  readonly kind = 'userspace' as const;
  readonly interfaceName: string;
  private readonly runner: Runner;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly socketPath: string;
  private readonly restartBackoff: BackoffPolicy;
  /** Consecutive restarts without a stable minute in between (sets the next delay). */
  private restartFailures = 0;
  private child: Child | undefined;
  private startedAt = 0;
  /** Set once the first start succeeded: from then on an unexpected exit means "restart". */
  private supervising = false;
  private stopping = false;
  private restarting: Promise<void> | undefined;
  private spawning: Promise<void> | undefined;
  private readonly stopSignal = new AbortController();

  constructor(private readonly options: WireguardBackendOptions) {
    super();
    this.interfaceName = options.interfaceName;
    this.runner = options.runner;
    this.logger = options.logger;
    this.clock = options.clock ?? systemClock;
    this.socketPath = join(options.socketDir ?? WIREGUARD_SOCKET_DIR, `${options.interfaceName}.sock`);
    this.restartBackoff = { initialMs: options.restartBackoffMs?.initial ?? 500, maxMs: options.restartBackoffMs?.max ?? 30_000 };
  }

  private get running(): boolean {
    return this.child?.running ?? false;
  }

  /** First start: clean a stale socket, spawn, wait until socket and link exist. */
  async start(): Promise<void> {
    await this.launch();
    this.supervising = true;
  }

  /** One start attempt (stale socket clean-up, spawn, wait for readiness); bumps the generation on success. */
  private async launch(): Promise<void> {
    this.spawning = (async () => {
      await this.removeStaleSocket();
      await this.spawnAndWait();
    })();
    try {
      await this.spawning;
    } finally {
      this.spawning = undefined;
    }
    this.bumpGeneration(this.logger);
  }

  private async removeStaleSocket(): Promise<void> {
    if (!(await exists(this.socketPath))) return;
    if (await socketAccepts(this.socketPath)) {
      throw new WireguardBackendError(
        `${this.socketPath} is served by another wireguard-go (the socket accepts connections); stop that process or choose another interface name`,
      );
    }
    this.logger.info({ socket: this.socketPath }, 'removing stale wireguard-go socket');
    try {
      await unlink(this.socketPath);
    } catch (err) {
      throw new WireguardBackendError(`cannot remove stale socket ${this.socketPath}: ${errorMessage(err)}`, { cause: err });
    }
  }

  private spawnChild(): Child {
    const onLine = (line: string): void => this.logger.debug({ iface: this.interfaceName }, `wireguard-go: ${line}`);
    if (this.options.spawnWireguardGo) return this.options.spawnWireguardGo(this.interfaceName, { onLine });
    const argv = [...(this.options.wireguardGoPrefix ?? []), 'wireguard-go', '-f', this.interfaceName];
    const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: this.logger.isLevelEnabled('debug') ? 'verbose' : 'error' };
    // Never let the daemon-mode hand-off variable leak in from our own environment.
    delete env['WG_PROCESS_FOREGROUND'];
    return Child.start(argv, { env, onLine, keepLines: 30 });
  }

  private output(): string {
    return this.child?.tail(5).join(' | ') ?? '';
  }

  private async spawnAndWait(): Promise<void> {
    const child = this.spawnChild();
    this.child = child;
    this.startedAt = this.clock.now();
    void child.exited.then((exit) => this.onChildExit(child, exit));
    this.logger.info({ iface: this.interfaceName, pid: child.pid }, 'started wireguard-go');
    let ready: 'ready' | 'exited';
    try {
      // waitFor treats a throwing probe as "not yet", so an early exit is a value, not an exception.
      ready = await waitFor(
        async () => (!child.running ? 'exited' : (await exists(this.socketPath)) && (await readLink(this.runner, this.interfaceName)) !== undefined && 'ready'),
        { timeoutMs: this.options.startTimeoutMs ?? 10_000, intervalMs: 50, what: `wireguard-go socket ${this.socketPath} and link ${this.interfaceName}` },
      );
    } catch (err) {
      await this.terminate();
      throw new WireguardBackendError(`wireguard-go for ${this.interfaceName} did not start: ${errorMessage(err)} ${this.output()}`.trim(), { cause: err });
    }
    if (ready === 'exited') {
      // `exited` resolves after the last output, which usually says why.
      const exit = await child.exited;
      if (exit.startError !== undefined) throw new WireguardBackendError(`cannot start wireguard-go: ${exit.startError}`);
      throw new WireguardBackendError(`wireguard-go exited (${describeExit(exit)}) during start-up: ${this.output()}`);
    }
  }

  private onChildExit(child: Child, exit: { readonly code: number | undefined; readonly signal: string | undefined }): void {
    if (child !== this.child || this.stopping || !this.supervising || this.spawning) return;
    this.logger.warn({ iface: this.interfaceName, code: exit.code, signal: exit.signal, output: child.tail(5) }, 'wireguard-go exited unexpectedly; restarting');
    // A child that ran stably for a minute earns a fresh backoff; a crash loop keeps doubling it.
    if (this.clock.now() - this.startedAt > 60_000) this.restartFailures = 0;
    this.restarting ??= this.restartLoop().finally(() => {
      this.restarting = undefined;
    });
  }

  /** Retries with exponential backoff until wireguard-go is back or we are stopped. Never rejects. */
  private async restartLoop(): Promise<void> {
    for (;;) {
      const delay = backoffDelay(this.restartBackoff, ++this.restartFailures);
      await this.clock.sleep(delay, this.stopSignal.signal);
      if (this.stopping) return;
      try {
        await this.launch();
        this.logger.info({ iface: this.interfaceName, generation: this.generation }, 'wireguard-go restarted; the interface is empty until the next apply');
        return;
      } catch (err) {
        this.logger.error({ iface: this.interfaceName, err: errorMessage(err), retryInMs: backoffDelay(this.restartBackoff, this.restartFailures + 1) }, 'wireguard-go restart failed');
        if (this.stopping) return;
      }
    }
  }

  async ensureLink(): Promise<void> {
    if (this.stopping) throw new WireguardBackendError(`wireguard-go for ${this.interfaceName} has been stopped`);
    // The restart loop owns recovery; onRestart tells the daemon when to re-apply.
    // (Once the new child runs, the onRestart listeners' re-apply may proceed while the loop winds down.)
    if (this.restarting && !this.running) throw new WireguardBackendError(`wireguard-go for ${this.interfaceName} is restarting`);
    if (!this.running) await this.launch();
  }

  /** SIGTERM, wait for exit; SIGKILL only after the (generous) stop timeout (lib/child-process.ts). */
  private async terminate(): Promise<void> {
    const child = this.child;
    if (!child) return;
    const timeoutMs = this.options.stopTimeoutMs ?? 20_000;
    await child.stop({
      graceMs: timeoutMs,
      onEscalate: () => this.logger.error({ iface: this.interfaceName, pid: child.pid, timeoutMs }, 'wireguard-go ignored SIGTERM; sending SIGKILL'),
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.stopSignal.abort();
    // A start in progress finishes (or fails) first, so its child is the one we terminate.
    await this.spawning?.catch(() => undefined);
    await this.terminate();
    this.logger.info({ iface: this.interfaceName }, 'wireguard-go stopped');
  }

  async destroy(): Promise<void> {
    await this.stop();
    // wireguard-go removes both on a clean exit; after a SIGKILL they may linger.
    if (await readLink(this.runner, this.interfaceName)) await this.runner.run(['ip', 'link', 'del', 'dev', this.interfaceName]);
    await unlink(this.socketPath).catch(() => undefined);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** True if something listens on the unix socket (a live wireguard-go), false if it is stale. */
function socketAccepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}
