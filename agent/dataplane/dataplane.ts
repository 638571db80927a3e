// The data plane: turns a DataplaneTarget (agent/dataplane/api.ts) into the WireGuard interface,
// its peers, routes, relay ports, an MSS clamp and forwarding sysctls. An apply reads live state
// once (one `wg show dump`, one `ip -j addr`, the routes of both families), diffs it against the
// target and runs only the changes that close the gap (all through the Runner), batched: one
// `wg set` for every peer added or updated, one `ip -force -batch -` for every route, one `wg set`
// for the peers removed (agent/dataplane/batch.ts), so a first apply of 1,000 peers spawns as few
// processes as one of 2. Every change is attempted even if some fail; failures are reported per
// item. A change-driven apply (target.readLive false) diffs against the state the previous
// successful apply left (agent/dataplane/applied-state.ts) instead of re-reading WireGuard and the
// route tables. The sysctls and iptables are re-read only every hostCheckIntervalMs (the periodic
// resync repairs their drift).
import { systemClock, type Clock } from '../../lib/clock.ts';
import { PartialFailureError, errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { Runner } from '../../lib/runner.ts';
import { formatIp, parseCidr, parseIp } from '../../protocol/cidr.ts';
import { wireguardPublicKeyOf } from '../../protocol/signing.ts';
import type { DataplaneConfig, DesiredInterface, DesiredState } from '../plan/model.ts';
import { DataplaneApplyError, type ApplyReport, type Dataplane, type DataplaneTarget, type LivePeer, type RelayPorts, type RelayStats } from './api.ts';
import { parseIpJson } from './ip-json.ts';
import { MssClamp } from './mss-clamp.ts';
import { relayBindAddress } from './relay-bind.ts';
import { relayHintsFrom } from './relay-forwarder.ts';
import { ROUTE_PROTO, diffRoutes, isOwnedRoute, readMainRoutes, routeCommands, type LiveRoute } from './route-diff.ts';
import { createWireguardBackend, type WireguardBackend, type WireguardBackendOptions, type WireguardMode } from './wireguard-backend.ts';
import { diffWireguard, wireguardCommands, type PlannedCommand } from './wg-diff.ts';
import { startingPoint, stateAfterApply, stateAfterDelta, type LeftState } from './applied-state.ts';
import { desiredDelta, type DesiredDelta } from './desired-delta.ts';
import { interfaceAfterEnsure, type LinkJson } from './interface-state.ts';
import { runIpBatch, runWgSetBatch, type BatchOutcome } from './batch.ts';
import { InterfaceEcho, OwnRouteChanges } from './own-changes.ts';
import { EndpointMemory } from './endpoint-memory.ts';
import { LinkMonitor } from './link-monitor.ts';
import { parseWgDump, type LiveWireguard } from './wg-dump.ts';

export { DataplaneApplyError, type ApplyReport, type Dataplane, type DataplaneTarget } from './api.ts';

/** Options handed to the WireGuard backend unchanged (documented on WireguardBackendOptions). */
type BackendPassThrough = Pick<WireguardBackendOptions, 'runner' | 'logger' | 'clock' | 'spawnWireguardGo' | 'wireguardGoPrefix' | 'socketDir'>;

export interface DataplaneOptions extends BackendPassThrough {
  readonly config: DataplaneConfig;
  readonly wireguardMode: WireguardMode;
  /** The UDP relay for NATed pairs (RelayForwarder); without it this node opens no relay ports. */
  readonly relay?: RelayPorts;
  /** Use this backend instead of selecting one (tests). */
  readonly backendOverride?: WireguardBackend;
  /** How long a passed forwarding/MSS check is trusted before apply re-reads it (drift repair). Default 20 s, below the 30 s resync. */
  readonly hostCheckIntervalMs?: number;
  /** Watch netlink (`ip monitor`, run with this argv prefix; [] in the agent's own namespace) and report drift through onDrift. Default: off. */
  readonly monitorPrefix?: readonly string[];
}

/** The Linux data plane, with its backend's restart counter (tests, supervision). */
export interface LinuxDataplaneHandle extends Dataplane {
  /** Increments whenever the interface was recreated empty (e.g. wireguard-go restarted). */
  readonly generation: number;
  onRestart(listener: (generation: number) => void): () => void;
  onDrift(listener: (reason: string) => void): () => void;
}

export async function createDataplane(options: DataplaneOptions): Promise<LinuxDataplaneHandle> {
  const { config, wireguardMode, backendOverride, relay, hostCheckIntervalMs, monitorPrefix, ...passThrough } = options;
  const backend = backendOverride ?? (await createWireguardBackend({ ...passThrough, interfaceName: config.interfaceName, mode: wireguardMode }));
  const dp = new LinuxDataplane(options.runner, options.logger, config.interfaceName, backend, relay ?? null, options.clock ?? systemClock, hostCheckIntervalMs ?? 20_000);
  if (monitorPrefix) dp.watchDrift(monitorPrefix);
  return dp;
}

/** `sh -c` with a fixed script; the interface name is a positional argument, never interpolated. */
export const SET_PRIVATE_KEY_SCRIPT = 'cat | wg set "$0" private-key /dev/stdin';

const familyOf = (cidr: string): 4 | 6 | undefined => parseCidr(cidr, { allowHostBits: true })?.family;

/** The report while it is being filled. */
interface Report {
  interfaceEnsured: boolean;
  changes: number;
  commands: string[][];
  failures: { op: string; error: Error }[];
  blocked: string[];
}

class LinuxDataplane implements LinuxDataplaneHandle {
  private readonly mss: MssClamp;
  /** apply/teardown/close never interleave: each reads live state then acts on it. */
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * Forwarding and MSS clamp were ensured for `key` (families and generation) at `at`: change-driven applies skip the
   * sysctl/iptables reads until the interval passes, so the periodic resync still repairs drift.
   */
  private hostChecked: { key: string; at: number } | undefined;
  /**
   * The one record of what this data plane applied (agent/dataplane/applied-state.ts): the mesh as
   * the last fully successful apply left it (a change-driven apply diffs against it), or the
   * interface as a successful interface-only apply left it (the first full apply of a start starts
   * from its reads). Taken by every apply and teardown; set again only by a success.
   */
  private left: LeftState | undefined;
  /** Routes our batches change, so the netlink monitor can tell their echo from drift. */
  private readonly ownRoutes = new OwnRouteChanges();
  /** Link/address lines that report the interface as last ensured are not drift (the echo of our own changes). */
  private readonly interfaceEcho: InterfaceEcho;
  /** The relay bind address found for these advertised endpoints (read once per endpoint set). */
  private relayBind: { endpoints: string; address: string | undefined } | undefined;
  /** Endpoints learned from NATed peers, re-used when the interface came back empty. */
  private readonly endpoints = new EndpointMemory();
  private readonly driftListeners = new Set<(reason: string) => void>();
  private monitor: LinkMonitor | undefined;

  constructor(
    private readonly runner: Runner,
    private readonly logger: Logger,
    private readonly iface: string,
    private readonly wg: WireguardBackend,
    private readonly relay: RelayPorts | null,
    private readonly clock: Clock,
    private readonly hostCheckIntervalMs: number,
  ) {
    this.mss = new MssClamp(runner, logger, iface);
    this.interfaceEcho = new InterfaceEcho(iface);
  }

  get backend(): 'kernel' | 'userspace' {
    return this.wg.kind;
  }

  get generation(): number {
    return this.wg.generation;
  }

  onRestart(listener: (generation: number) => void): () => void {
    return this.wg.onRestart(listener);
  }

  onDrift(listener: (reason: string) => void): () => void {
    this.driftListeners.add(listener);
    return () => this.driftListeners.delete(listener);
  }

  /** Starts the netlink monitor (agent/dataplane/link-monitor.ts); its events go to onDrift listeners. */
  watchDrift(prefix: readonly string[]): void {
    this.monitor ??= new LinkMonitor({ interfaceName: this.iface, clock: this.clock, logger: this.logger, prefix, onChange: (reason) => {
      for (const l of this.driftListeners) l(reason);
    }, isEcho: (line, about) => (about.startsWith('route ') ? this.ownRoutes.isEcho(line, this.clock.now()) : this.interfaceEcho.isEcho(line, about)) });
    this.monitor.start();
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  apply(target: DataplaneTarget): Promise<ApplyReport> {
    return this.serialize(() => this.applyNow(target));
  }

  private async applyNow(target: DataplaneTarget): Promise<ApplyReport> {
    const report: Report = { interfaceEnsured: false, changes: 0, commands: [], failures: [], blocked: [] };
    const left = this.left;
    this.left = undefined;
    await this.wg.ensureLink();
    const desired = target.desired;
    // Relay hints need the endpoints WireGuard learned since: a relay node reads the dump.
    const needsDump = this.relay !== null && desired !== null && desired.relays.length > 0;
    // The model of the last full apply, or (no model yet) the reads the interface-only apply before
    // this one left (agent/dataplane/interface-state.ts): the first full apply of a start reads neither again.
    const { model, carried } = startingPoint(left, target.readLive === false && !needsDump, this.wg.generation);
    // The reads of this apply, side by side (one round of spawns, not four in a row): the one
    // WireGuard read (the interface check, the peer diff and the relay hints all use it; setting the
    // key or port below does not change the peers it lists), the interface's addresses, and the
    // route tables unless known (the previous apply's model, or this reconcile's host read).
    const addrArgv = ['ip', '-j', 'addr', 'show', 'dev', this.iface];
    const knownRoutes = model?.routes ?? target.liveRoutes;
    // A change-driven apply for the interface the last apply ensured trusts that too (drift is the
    // resync's and the link monitor's job): a join is then the peer and route batches only.
    const knownLink = model !== undefined && sameInterface(model.desired.interface, target.interface) ? model.link : carried?.link;
    const [dump, link, routes] = await Promise.all([
      model?.wireguard ?? carried?.wireguard ?? this.runner.run(['wg', 'show', this.iface, 'dump']).then((r) => parseWgDump(r.stdout)),
      knownLink ?? this.runner.run(addrArgv).then((r) => (parseIpJson(r.stdout, addrArgv)[0] ?? {}) as LinkJson),
      desired === null || knownRoutes !== undefined ? knownRoutes : readMainRoutes(this.runner).catch((err: unknown) => asError(err)),
    ]);
    if (model === undefined && carried === undefined) this.endpoints.observe(dump.peers);
    const publicKey = await this.ensureInterface(target.privateKey, target.interface, dump, link, report);
    report.interfaceEnsured = true;
    if (desired === null) this.left = interfaceAfterEnsure(dump, link, target.interface, publicKey, this.wg.generation);
    if (desired !== null) {
      // Change-driven: diff only what changed since the desired state the model was built from.
      const delta = model !== undefined ? desiredDelta(model.desired, desired) : undefined;
      // Forwarding and the MSS clamp (reads, and writes only where off) beside the batches: they
      // only add, so they need not wait for the peers, and they cost no round of their own.
      const [live] = await Promise.all([this.applyPeersAndRoutes(desired, dump, routes, report, delta), this.ensureHost(familiesOf(desired), report)]);
      await this.applyRelays(desired, target.advertisedEndpoints, dump, report);
      if (live !== undefined && report.failures.length === 0) {
        const blocked = new Set(live.blocked);
        const ensured = interfaceAfterEnsure(dump, link, target.interface, publicKey, this.wg.generation).link;
        this.left =
          model !== undefined && delta !== undefined
            ? stateAfterDelta(model, desired, delta, publicKey, blocked, ensured)
            : stateAfterApply({ wireguard: dump, routes: live.routes }, desired, publicKey, blocked, this.wg.generation, ensured);
      }
    }
    if (report.commands.length > 0) {
      this.logger.info({ iface: this.iface, changes: report.changes, failures: report.failures.length }, 'dataplane applied');
    }
    if (report.failures.length > 0) throw new DataplaneApplyError(report);
    return report;
  }

  /**
   * Key, listen port, MTU, addresses, link up; returns the public key it ensured. Throws on the first
   * failure (nothing else makes sense on a broken interface).
   */
  private async ensureInterface(privateKey: string, iface: DesiredInterface, dump: LiveWireguard, info: LinkJson, report: Report): Promise<string> {
    const name = this.iface;
    // The netlink echo of what follows (and any line reporting the interface as ensured) is not drift.
    this.interfaceEcho.set(iface);
    if (dump.interface.listenPort !== iface.listenPort) {
      await this.runner.run(['wg', 'set', name, 'listen-port', String(iface.listenPort)]);
    }
    const publicKey = await wireguardPublicKeyOf(privateKey);
    if (dump.interface.publicKey !== publicKey) {
      // The key goes through stdin, never argv or disk. Node hands a child's stdin over as a unix
      // socket, which `wg` cannot fopen("/dev/stdin") (ENXIO), so `cat` turns it into a real pipe.
      await this.runner.run(['sh', '-c', SET_PRIVATE_KEY_SCRIPT, name], { input: `${privateKey}\n` });
      this.logger.info({ iface: name }, 'WireGuard private key set');
    }

    if (info.mtu !== iface.mtu) {
      // Listed (a changed MTU put back is a repair event, agent/events/repairs.ts).
      const argv = ['ip', 'link', 'set', 'dev', name, 'mtu', String(iface.mtu)];
      report.commands.push(argv);
      await this.runner.run(argv);
      report.changes++;
    }

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
    return publicKey;
  }

  /**
   * Peers and routes: keyed diffs against the live state (the routes as read for this apply, or as
   * the previous apply left them), add before delete, every change attempted, in three batches:
   * peers added or updated and routes (replaced, then deleted) side by side — a route on our
   * interface without its peer yet drops packets, it never sends them elsewhere — then peers
   * removed. Returns the routes it diffed against and the destinations it blocked; undefined if
   * the routes could not be read.
   */
  private async applyPeersAndRoutes(
    desired: DesiredState,
    liveWg: LiveWireguard,
    allLiveRoutes: readonly LiveRoute[] | Error | undefined,
    report: Report,
    delta?: DesiredDelta,
  ): Promise<{ routes: readonly LiveRoute[]; blocked: string[] } | undefined> {
    if (allLiveRoutes === undefined || allLiveRoutes instanceof Error) {
      report.failures.push({ op: 'read routes', error: allLiveRoutes ?? new Error('the route tables were not read') });
      return undefined;
    }
    // With a delta both sides are narrowed to the changed keys (a keyed diff of the rest is empty).
    const wantPeers = delta?.peers ?? desired.peers;
    const livePeers = delta === undefined ? liveWg.peers : liveWg.peers.filter((p) => delta.peerKeys.has(p.publicKey));
    const liveRoutes = delta === undefined ? allLiveRoutes : allLiveRoutes.filter((r) => delta.routeDsts.has(r.dst));
    const peers = this.endpoints.fill(wantPeers, livePeers, delta?.peerKeys);
    const wg = wireguardCommands(this.iface, diffWireguard({ listenPort: desired.interface.listenPort, peers }, { interface: liveWg.interface, peers: livePeers }));
    const routeDiff = diffRoutes(delta?.routes ?? desired.routes, liveRoutes);
    const routes = routeCommands(routeDiff, new Set(liveRoutes.filter(isOwnedRoute).map((r) => r.dst)));
    report.blocked.push(...routeDiff.blocked.map((b) => b.reason));
    // Never replace what is not ours. The planner's route guard refuses these first; this is the last line.
    for (const reason of report.blocked) this.logger.warn({ iface: this.iface, reason }, 'route not installed');
    const record = (items: readonly PlannedCommand[], outcome: BatchOutcome): void => {
      for (const c of items) report.commands.push([...c.argv]);
      report.changes += outcome.succeeded.length;
      for (const f of outcome.failures) report.failures.push({ op: f.item.op, error: f.error });
    };
    // Add before delete: new peers and routes are in place before stale peers go. The peer batch
    // and the route batch run at the same time (two processes, not one after the other).
    const routeItems = [...routes.upserts, ...routes.removals];
    // Their netlink echo is not drift (agent/dataplane/own-changes.ts).
    this.ownRoutes.expect('add', routeDiff.upsert.map((r) => r.dst), this.clock.now());
    this.ownRoutes.expect('del', routeDiff.remove.map((r) => r.dst), this.clock.now());
    const [peerOutcome, routeOutcome] = await Promise.all([runWgSetBatch(this.runner, this.iface, wg.upserts), runIpBatch(this.runner, routeItems)]);
    record(wg.upserts, peerOutcome);
    record(routeItems, routeOutcome);
    record(wg.removals, await runWgSetBatch(this.runner, this.iface, wg.removals));
    return { routes: allLiveRoutes, blocked: routeDiff.blocked.map((b) => b.route.dst) };
  }

  /**
   * Relay ports for NATed pairs. Hints: the addresses our WireGuard learned from the (NATed) peers'
   * handshakes tell the forwarder which side of a pair a datagram came from. Bind address: our
   * advertised endpoint's IP when it is a local address (read once per set of endpoints).
   */
  private async applyRelays(desired: DesiredState, endpoints: readonly string[], dump: LiveWireguard, report: Report): Promise<void> {
    if (this.relay === null) return;
    try {
      if (desired.relays.length === 0) {
        await this.relay.update([]);
        return;
      }
      const bindAddress = await this.relayBindAddress(endpoints);
      await this.relay.update(desired.relays, { hints: relayHintsFrom(dump.peers), bindAddress });
    } catch (err) {
      report.failures.push({ op: 'relay', error: asError(err) });
    }
  }

  private async relayBindAddress(endpoints: readonly string[]): Promise<string | undefined> {
    const key = endpoints.join(',');
    if (this.relayBind?.endpoints === key) return this.relayBind.address;
    const address = await relayBindAddress(this.runner, endpoints, this.logger);
    this.relayBind = { endpoints: key, address };
    if (address === undefined && endpoints.length > 0) {
      this.logger.info({ endpoints }, 'no advertised endpoint is a local address (1:1 NAT?); relay ports bind any address');
    }
    return address;
  }

  /** Forwarding sysctls and the MSS clamp; skipped while the last check (same families, same generation) is recent. */
  private async ensureHost(families: readonly (4 | 6)[], report: Report): Promise<void> {
    // A recreated interface (new generation) is re-checked at once.
    const key = `${families.join(',')}@${this.wg.generation}`;
    const now = this.clock.now();
    const last = this.hostChecked;
    if (last?.key === key && now - last.at < this.hostCheckIntervalMs) return;
    this.hostChecked = undefined;
    // Forwarding and the clamp side by side (sysctl and iptables, each family at once).
    const [forwarding, mss] = await Promise.all([this.ensureForwarding(families), this.mss.ensure(families)]);
    report.failures.push(...forwarding.failures);
    for (const added of [...forwarding.written, ...mss]) {
      report.commands.push(added.argv);
      if (added.ok) report.changes++;
    }
    // A failed write is retried at the next apply. (A node without iptables is re-probed only after the interval.)
    if (forwarding.failures.length === 0) this.hostChecked = { key, at: now };
  }

  /** Nodes forward pod traffic into and out of the tunnel. Reads first; writes only when off. Both families side by side. */
  private async ensureForwarding(families: readonly (4 | 6)[]): Promise<{ written: { argv: string[]; ok: boolean }[]; failures: { op: string; error: Error }[] }> {
    const written: { argv: string[]; ok: boolean }[] = [];
    const failures: { op: string; error: Error }[] = [];
    await Promise.all(
      families.map(async (f) => {
        const key = f === 4 ? 'net.ipv4.ip_forward' : 'net.ipv6.conf.all.forwarding';
        const argv = ['sysctl', '-w', `${key}=1`];
        try {
          if ((await this.runner.run(['sysctl', '-n', key])).stdout.trim() === '1') return;
          const write = { argv, ok: false };
          written.push(write);
          await this.runner.run(argv);
          write.ok = true;
        } catch (err) {
          failures.push({ op: 'enable forwarding', error: asError(err) });
        }
      }),
    );
    return { written, failures };
  }

  async livePeers(): Promise<readonly LivePeer[]> {
    const peers = parseWgDump((await this.runner.run(['wg', 'show', this.iface, 'dump'])).stdout).peers;
    this.endpoints.observe(peers);
    return peers;
  }

  relayStats(): readonly RelayStats[] {
    return this.relay?.stats() ?? [];
  }

  teardown(): Promise<void> {
    this.hostChecked = undefined;
    const monitor = this.monitor?.stop();
    return this.serialize(async () => {
      // After the applies queued before it: nothing applied survives a teardown.
      this.left = undefined;
      const failures: { op: string; error: Error }[] = [];
      const attempt = async (op: string, fn: () => Promise<unknown>): Promise<void> => {
        try {
          await fn();
        } catch (err) {
          failures.push({ op, error: asError(err) });
        }
      };
      await attempt('stop ip monitor', () => monitor ?? Promise.resolve());
      await attempt('close relay ports', () => this.relay?.close() ?? Promise.resolve());
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
    const monitor = this.monitor?.stop();
    return this.serialize(async () => {
      try {
        await monitor;
        await this.relay?.close();
      } finally {
        await this.wg.stop();
      }
    });
  }
}

/** IP families the target uses (interface addresses and routes): forwarding and the clamp follow them. */
function familiesOf(desired: DesiredState): (4 | 6)[] {
  const families = new Set<4 | 6>();
  for (const c of desired.interface.addresses) {
    const f = familyOf(c);
    if (f) families.add(f);
  }
  // Desired routes are canonical CIDRs: the family is in the text (no parse of thousands per apply).
  for (const r of desired.routes) {
    families.add(r.dst.includes(':') ? 6 : 4);
    if (families.size === 2) break;
  }
  return [...families].sort();
}

/** Same interface settings (name, port, MTU, addresses in order). */
function sameInterface(a: DesiredInterface, b: DesiredInterface): boolean {
  return a.name === b.name && a.listenPort === b.listenPort && a.mtu === b.mtu && a.addresses.length === b.addresses.length && a.addresses.every((x, i) => x === b.addresses[i]);
}

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(errorMessage(err)));

/** "100.96.0.5/32", "fd00::5/128": canonical address text so `ip addr` output and desired compare equal. */
function addressKey(host: string, prefixLen: number | undefined): string {
  const ip = parseIp(host);
  if (!ip) return `${host}/${prefixLen ?? ''}`;
  return `${formatIp(ip.family, ip.value)}/${prefixLen ?? (ip.family === 4 ? 32 : 128)}`;
}
