// The data plane: turns a DesiredState into WireGuard peers, routes, an MSS clamp and forwarding
// sysctls. Each apply reads live state once, diffs it against the desired state and runs only the
// commands that close the gap (all through the Runner). Every change is attempted even if some fail.
// Hot path: an idle reconcile dumps WireGuard once (ensureInterface hands its dump to apply) and
// re-reads the sysctls and iptables only every hostCheckIntervalMs (the resync repairs their drift).
import { systemClock, type Clock } from '../../lib/clock.ts';
import { PartialFailureError, errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { Runner } from '../../lib/runner.ts';
import { formatIp, parseCidr, parseIp } from '../../protocol/cidr.ts';
import { wireguardPublicKeyOf } from '../../protocol/signing.ts';
import type { DataplaneConfig, DesiredInterface, DesiredState } from '../plan/model.ts';
import { MssClamp } from './mss-clamp.ts';
import { ROUTE_PROTO, diffRoutes, isOwnedRoute, parseIpRoutes, readRoutesArgv, routeCommands } from './route-diff.ts';
import { createWireguardBackend, type BackendKind, type WireguardBackend, type WireguardBackendOptions, type WireguardMode } from './wireguard-backend.ts';
import { diffWireguard, wireguardCommands, type PlannedCommand } from './wg-diff.ts';
import { parseWgDump, type LivePeer, type LiveWireguard } from './wg-dump.ts';

export type { LivePeer } from './wg-dump.ts';

export interface ApplyReport {
  /** Mutating commands that succeeded. */
  changes: number;
  /** Every mutating command attempted, in order (reads are not listed). */
  commands: string[][];
  failures: { op: string; error: Error }[];
  /** Desired routes not installed because their destination holds a route Crosslink does not own (why, per route). */
  blocked: string[];
}

/** Thrown by apply() when some changes failed; the others were applied. Carries the full report. */
export class DataplaneApplyError extends PartialFailureError {
  constructor(readonly report: ApplyReport) {
    super(report.failures);
  }
}

export interface Dataplane {
  readonly backend: BackendKind;
  /** Increments whenever the interface was recreated empty (e.g. wireguard-go restarted). */
  readonly generation: number;
  /** Called after the interface was recreated empty: run ensureInterface + apply again. Returns unsubscribe. */
  onRestart(listener: (generation: number) => void): () => void;
  /** Creates the interface if missing; private key (via stdin), listen port, MTU, addresses, link up. Idempotent; only reads when nothing differs. */
  ensureInterface(privateKey: string, iface: DesiredInterface): Promise<void>;
  /** Reads live state once, diffs, applies. Throws DataplaneApplyError (a PartialFailureError) if any change failed. */
  apply(desired: DesiredState): Promise<ApplyReport>;
  livePeers(): Promise<readonly LivePeer[]>;
  /** `--cleanup`: deletes our routes (proto 149), our iptables rules and the interface; stops wireguard-go. Nothing else. */
  teardown(): Promise<void>;
  /** Stops supervising, leaves routes. Kernel: interface, peers and routes stay. Userspace: wireguard-go is stopped, so the interface (and routes through it) go away. */
  close(): Promise<void>;
}

/** Options handed to the WireGuard backend unchanged (documented on WireguardBackendOptions). */
type BackendPassThrough = Pick<WireguardBackendOptions, 'runner' | 'logger' | 'clock' | 'spawnWireguardGo' | 'wireguardGoPrefix' | 'socketDir'>;

export interface DataplaneOptions extends BackendPassThrough {
  readonly config: DataplaneConfig;
  readonly wireguardMode: WireguardMode;
  /** Use this backend instead of selecting one (tests). */
  readonly backendOverride?: WireguardBackend;
  /** How long a passed forwarding/MSS check is trusted before apply re-reads it (drift repair). Default 20 s, below the 30 s resync. */
  readonly hostCheckIntervalMs?: number;
}

export async function createDataplane(options: DataplaneOptions): Promise<Dataplane> {
  const { config, wireguardMode, backendOverride, ...passThrough } = options;
  const backend = backendOverride ?? (await createWireguardBackend({ ...passThrough, interfaceName: config.interfaceName, mode: wireguardMode }));
  return new LinuxDataplane(options.runner, options.logger, config.interfaceName, backend, options.clock ?? systemClock, options.hostCheckIntervalMs ?? 20_000);
}

/** `sh -c` with a fixed script; the interface name is a positional argument, never interpolated. */
export const SET_PRIVATE_KEY_SCRIPT = 'cat | wg set "$0" private-key /dev/stdin';

const familyOf = (cidr: string): 4 | 6 | undefined => parseCidr(cidr, { allowHostBits: true })?.family;

interface IpJsonLink {
  mtu?: unknown;
  flags?: unknown;
  addr_info?: { family?: unknown; local?: unknown; prefixlen?: unknown; scope?: unknown }[];
}

class LinuxDataplane implements Dataplane {
  private readonly mss: MssClamp;
  /** apply/ensureInterface/teardown never interleave: each reads live state then acts on it. */
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * The dump an unchanged ensureInterface just read, handed to the apply that follows it (the
   * reconciler calls them back to back) so an idle reconcile runs `wg show dump` once, not twice.
   * One-shot, same generation only, and dropped at the next macrotask so it is never stale.
   */
  private handoff: { dump: LiveWireguard; generation: number } | undefined;
  /**
   * Forwarding and MSS clamp were ensured for `key` (families and generation) at `at`: change-driven applies skip the
   * sysctl/iptables reads until the interval passes, so the periodic resync still repairs drift.
   */
  private hostChecked: { key: string; at: number } | undefined;

  constructor(
    private readonly runner: Runner,
    private readonly logger: Logger,
    private readonly iface: string,
    private readonly wg: WireguardBackend,
    private readonly clock: Clock,
    private readonly hostCheckIntervalMs: number,
  ) {
    this.mss = new MssClamp(runner, logger, iface);
  }

  get backend(): BackendKind {
    return this.wg.kind;
  }

  get generation(): number {
    return this.wg.generation;
  }

  onRestart(listener: (generation: number) => void): () => void {
    return this.wg.onRestart(listener);
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  ensureInterface(privateKey: string, iface: DesiredInterface): Promise<void> {
    return this.serialize(async () => {
      await this.wg.ensureLink();
      const name = this.iface;

      this.handoff = undefined;
      const dump = parseWgDump((await this.runner.run(['wg', 'show', name, 'dump'])).stdout);
      const wantKey = await wireguardPublicKeyOf(privateKey);
      const portOk = dump.interface.listenPort === iface.listenPort;
      const keyOk = dump.interface.publicKey === wantKey;
      if (!portOk) {
        await this.runner.run(['wg', 'set', name, 'listen-port', String(iface.listenPort)]);
      }
      if (!keyOk) {
        // The key goes through stdin, never argv or disk. Node hands a child's stdin over as a unix
        // socket, which `wg` cannot fopen("/dev/stdin") (ENXIO), so `cat` turns it into a real pipe.
        await this.runner.run(['sh', '-c', SET_PRIVATE_KEY_SCRIPT, name], { input: `${privateKey}\n` });
        this.logger.info({ iface: name }, 'WireGuard private key set');
      }

      const link = JSON.parse((await this.runner.run(['ip', '-j', 'addr', 'show', 'dev', name])).stdout || '[]') as IpJsonLink[];
      const info = link[0] ?? {};
      if (info.mtu !== iface.mtu) await this.runner.run(['ip', 'link', 'set', 'dev', name, 'mtu', String(iface.mtu)]);

      const have = new Set<string>();
      for (const a of info.addr_info ?? []) {
        // Link-local addresses are the kernel's, not ours.
        if (typeof a.local !== 'string' || typeof a.prefixlen !== 'number' || a.scope === 'link') continue;
        have.add(addressKey(a.local, a.prefixlen));
      }
      const want = iface.addresses.map((a) => {
        const [host = a, len] = a.split('/');
        return addressKey(host, len === undefined ? undefined : Number(len));
      });
      for (const a of want) if (!have.has(a)) await this.runner.run(['ip', 'address', 'replace', a, 'dev', name]);
      // An overlay IP we no longer hold (re-allocated) must go, or we would answer for someone else.
      for (const a of have) if (!want.includes(a)) await this.runner.run(['ip', 'address', 'del', a, 'dev', name]);

      const flags = Array.isArray(info.flags) ? (info.flags as unknown[]) : [];
      if (!flags.includes('UP')) await this.runner.run(['ip', 'link', 'set', 'dev', name, 'up']);
      // Handed off last (the timer starts now). After a `wg set` the dump is outdated: apply reads its own.
      if (portOk && keyOk) this.handOff(dump);
    });
  }

  private handOff(dump: LiveWireguard): void {
    const entry = { dump, generation: this.wg.generation };
    this.handoff = entry;
    setImmediate(() => {
      if (this.handoff === entry) this.handoff = undefined;
    });
  }

  apply(desired: DesiredState): Promise<ApplyReport> {
    return this.serialize(() => this.applyNow(desired));
  }

  private async applyNow(desired: DesiredState): Promise<ApplyReport> {
    const name = this.iface;
    const handoff = this.handoff;
    this.handoff = undefined;
    const fresh = handoff?.generation === this.wg.generation ? handoff.dump : undefined;
    // Reads: once per apply (the WireGuard dump only if ensureInterface did not just read it).
    const [liveWg, v4, v6] = await Promise.all([
      fresh ?? this.runner.run(['wg', 'show', name, 'dump']).then((r) => parseWgDump(r.stdout)),
      this.runner.run(readRoutesArgv(4)),
      this.runner.run(readRoutesArgv(6), { allowFailure: true }),
    ]);
    const liveRoutes = [...parseIpRoutes(v4.stdout, 4), ...(v6.exitCode === 0 ? parseIpRoutes(v6.stdout, 6) : [])];

    const wg = wireguardCommands(name, diffWireguard({ listenPort: desired.interface.listenPort, peers: desired.peers }, liveWg));
    const routeDiff = diffRoutes(desired.routes, liveRoutes);
    const routes = routeCommands(routeDiff, new Set(liveRoutes.filter(isOwnedRoute).map((r) => r.dst)));

    const report: ApplyReport = { changes: 0, commands: [], failures: [], blocked: routeDiff.blocked.map((b) => b.reason) };
    // Never replace what is not ours. The planner's route guard refuses these first; this is the last line.
    for (const reason of report.blocked) this.logger.warn({ iface: name, reason }, 'route not installed');
    const run = async (c: PlannedCommand): Promise<void> => {
      report.commands.push([...c.argv]);
      try {
        await this.runner.run(c.argv);
        report.changes++;
      } catch (err) {
        report.failures.push({ op: c.op, error: asError(err) });
      }
    };
    // Add before delete: new peers and routes are in place before stale ones go.
    for (const c of [...wg.upserts, ...routes.upserts, ...routes.removals, ...wg.removals]) await run(c);

    const families = new Set<4 | 6>();
    for (const c of [...desired.interface.addresses, ...desired.routes.map((r) => r.dst)]) {
      const f = familyOf(c);
      if (f) families.add(f);
    }
    await this.ensureHost([...families].sort(), report);

    if (report.commands.length > 0) {
      this.logger.info({ iface: name, changes: report.changes, failures: report.failures.length }, 'dataplane applied');
    }
    if (report.failures.length > 0) throw new DataplaneApplyError(report);
    return report;
  }

  /** Forwarding sysctls and the MSS clamp; skipped while the last check (same families, same generation) is recent. */
  private async ensureHost(families: readonly (4 | 6)[], report: ApplyReport): Promise<void> {
    // A recreated interface (new generation) is re-checked at once.
    const key = `${families.join(',')}@${this.wg.generation}`;
    const now = this.clock.now();
    const last = this.hostChecked;
    if (last?.key === key && now - last.at < this.hostCheckIntervalMs) return;
    this.hostChecked = undefined;
    const failuresBefore = report.failures.length;
    await this.ensureForwarding(families, report);
    const mss = await this.mss.ensure(families);
    for (const added of mss) {
      report.commands.push(added.argv);
      if (added.ok) report.changes++;
    }
    // A failed write is retried at the next apply. (A node without iptables is re-probed only after the interval.)
    if (report.failures.length === failuresBefore) this.hostChecked = { key, at: now };
  }

  /** Nodes forward pod traffic into and out of the tunnel. Reads first; writes only when off. */
  private async ensureForwarding(families: readonly (4 | 6)[], report: ApplyReport): Promise<void> {
    for (const f of families) {
      const key = f === 4 ? 'net.ipv4.ip_forward' : 'net.ipv6.conf.all.forwarding';
      const argv = ['sysctl', '-w', `${key}=1`];
      try {
        if ((await this.runner.run(['sysctl', '-n', key])).stdout.trim() === '1') continue;
        report.commands.push(argv);
        await this.runner.run(argv);
        report.changes++;
      } catch (err) {
        report.failures.push({ op: 'enable forwarding', error: asError(err) });
      }
    }
  }

  async livePeers(): Promise<readonly LivePeer[]> {
    return parseWgDump((await this.runner.run(['wg', 'show', this.iface, 'dump'])).stdout).peers;
  }

  teardown(): Promise<void> {
    this.handoff = undefined;
    this.hostChecked = undefined;
    return this.serialize(async () => {
      const failures: { op: string; error: Error }[] = [];
      const attempt = async (op: string, fn: () => Promise<unknown>): Promise<void> => {
        try {
          await fn();
        } catch (err) {
          failures.push({ op, error: asError(err) });
        }
      };
      // Our routes only: everything marked with our protocol number, both families.
      await attempt('flush routes', () => this.runner.run(['ip', 'route', 'flush', 'table', 'main', 'proto', String(ROUTE_PROTO)]));
      await attempt('flush routes', () => this.runner.run(['ip', '-6', 'route', 'flush', 'table', 'main', 'proto', String(ROUTE_PROTO)]));
      await attempt('remove MSS clamp', () => this.mss.remove());
      await attempt('delete interface', () => this.wg.destroy());
      this.logger.info({ iface: this.iface, failures: failures.length }, 'dataplane torn down');
      if (failures.length > 0) throw new PartialFailureError(failures);
    });
  }

  close(): Promise<void> {
    return this.serialize(() => this.wg.stop());
  }
}

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(errorMessage(err)));

/** "100.96.0.5/32", "fd00::5/128": canonical address text so `ip addr` output and desired compare equal. */
function addressKey(host: string, prefixLen: number | undefined): string {
  const ip = parseIp(host);
  if (!ip) return `${host}/${prefixLen ?? ''}`;
  return `${formatIp(ip.family, ip.value)}/${prefixLen ?? (ip.family === 4 ? 32 : 128)}`;
}
