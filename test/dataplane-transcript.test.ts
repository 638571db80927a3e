// Transcript tests: the Dataplane against a fake host that answers `wg`/`ip`/`sysctl`/`iptables`
// like the real tools and keeps state, so a second apply sees what the first one did.
import test from 'ava';
import { createHash } from 'node:crypto';
import { createDataplane, DataplaneApplyError, SET_PRIVATE_KEY_SCRIPT, type DataplaneTarget, type LinuxDataplaneHandle } from '../agent/dataplane/dataplane.ts';
import type { RelayPorts, RelayUpdateOptions } from '../agent/dataplane/api.ts';
import type { DataplaneConfig, DesiredInterface, DesiredPeer, DesiredRoute, RelayAssignment } from '../agent/plan/model.ts';
import type { WireguardBackend } from '../agent/dataplane/wireguard-backend.ts';
import { startingPoint, stateAfterApply } from '../agent/dataplane/applied-state.ts';
import { interfaceAfterEnsure } from '../agent/dataplane/interface-state.ts';
import type { LiveWireguard } from '../agent/dataplane/wg-dump.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { PartialFailureError } from '../lib/errors.ts';
import { silentLogger } from '../lib/logger.ts';
import type { Runner, RunOptions, RunResult } from '../lib/runner.ts';
import { RecordingRunner } from './helpers/recording-runner.ts';
import { generateWireguardKeyPair, wireguardPublicKeyOf } from '../protocol/signing.ts';

const key = (name: string): string => createHash('sha256').update(`wg:${name}`).digest('base64');
const IF = 'xl0';
/** The key every target carries; setup() makes the fake interface hold it already. */
const KEYS = await generateWireguardKeyPair();
const IFACE: DesiredInterface = { name: IF, listenPort: 51820, mtu: 1420, addresses: ['100.96.0.1/32'] };

interface KernelRoute {
  dst: string;
  dev?: string;
  via?: string;
  protocol: string;
  metric: number;
}

interface FakePeer {
  endpoint: string | null;
  allowedIps: string[];
  keepalive: number;
}

/** Just enough of wg, ip, sysctl and iptables to hold state between applies. */
class FakeHost {
  publicKey: string | null = null;
  listenPort = 0;
  mtu = 1420;
  up = false;
  addresses: string[] = [];
  peers = new Map<string, FakePeer>();
  /**
   * The main routing table, both families, everybody's routes in one list, as the kernel holds it:
   * `replace` overwrites the route with the same destination and metric whoever owns it; `del` removes
   * the first route matching every selector it names (an unqualified `del` hits a foreign route too);
   * `flush … proto P` only routes of that protocol. Starts with one foreign route.
   */
  table: KernelRoute[] = [{ dst: '10.0.0.0/8', dev: 'eth0', protocol: 'kernel', metric: 0 }];
  /** Ours (proto 149), by destination. A copy: change the table through the methods below. */
  get routes(): ReadonlyMap<string, { dev?: string; via?: string }> {
    return new Map(this.table.filter((r) => r.protocol === '149').map((r) => [r.dst, r.via !== undefined ? { via: r.via } : { dev: r.dev ?? '' }]));
  }
  /** Everybody else's routes, as `<dst> dev <dev> proto <p>[ metric <m>]` lines: must never be touched. */
  get foreignRoutes(): string[] {
    return this.table.filter((r) => r.protocol !== '149').map((r) => `${r.dst}${r.via !== undefined ? ` via ${r.via}` : ''} dev ${r.dev ?? 'eth0'} proto ${r.protocol}${r.metric !== 0 ? ` metric ${r.metric}` : ''}`);
  }
  /** Adds a route of another owner (or of ours, with protocol '149': one a previous version left). */
  addRoute(r: KernelRoute): void {
    this.table.push(r);
  }
  /** A route deleted by hand (`ip route del <dst>`: the first route with that destination). */
  deleteRoute(dst: string): void {
    const i = this.table.findIndex((r) => r.dst === dst);
    if (i >= 0) this.table.splice(i, 1);
  }
  ipForward = '0';
  mangle: string[] = [];
  failing: { prefix: string[]; stderr: string }[] = [];
  /** Answer these first (fault injection). */
  overrides: ((argv: readonly string[]) => RunResult | undefined)[] = [];
  /** Inputs of every `ip -force -batch -`. */
  batches: string[] = [];
  readonly runner = new RecordingRunner();

  constructor() {
    this.runner.respond((argv, input) => this.answer(argv, input));
  }

  private ok(stdout = ''): RunResult {
    return { stdout, stderr: '', exitCode: 0 };
  }

  private answer(argv: readonly string[], input?: string): RunResult | Error | undefined {
    const line = argv.join(' ');
    for (const o of this.overrides) {
      const r = o(argv);
      if (r) return r;
    }
    if (line === 'ip -force -batch -') return this.ipBatch(input ?? '');
    for (const f of this.failing) if (f.prefix.every((p, i) => argv[i] === p)) return { stdout: '', stderr: f.stderr, exitCode: 2 };
    if (line === `wg show ${IF} dump`) {
      const head = ['PRIVATEKEY', this.publicKey ?? '(none)', String(this.listenPort), 'off'].join('\t');
      const peers = [...this.peers].map(([k, p]) =>
        [k, '(none)', p.endpoint ?? '(none)', p.allowedIps.join(',') || '(none)', '0', '0', '0', p.keepalive ? String(p.keepalive) : 'off'].join('\t'),
      );
      return this.ok([head, ...peers].join('\n') + '\n');
    }
    if (argv[0] === 'wg' && argv[1] === 'set') return this.wgSet(argv.slice(3));
    if (argv[0] === 'sh' && argv[2]?.includes('private-key /dev/stdin')) return (this.publicKey = 'set-from-stdin'), this.ok();
    if (line === 'ip -j route show table main' || line === 'ip -j -6 route show table main') {
      const v6 = argv[2] === '-6';
      // `ip -j` prints host routes without their prefix length and an IPv4 metric only when it is not 0.
      const listed = this.table
        .filter((r) => r.dst.includes(':') === v6)
        .map((r) => ({ dst: r.dst.replace(/\/(32|128)$/, ''), ...(r.via !== undefined ? { gateway: r.via } : {}), dev: r.dev ?? 'eth0', protocol: r.protocol, ...(v6 || r.metric !== 0 ? { metric: r.metric } : {}), flags: [] }));
      return this.ok(JSON.stringify(listed));
    }
    if (argv[0] === 'ip' && argv[1] === 'route' && argv[2] === 'replace') {
      const [dst = '', ...rest] = argv.slice(3);
      const opt = (name: string): string | undefined => (rest.includes(name) ? (rest[rest.indexOf(name) + 1] ?? '') : undefined);
      const via = opt('via');
      const route: KernelRoute = { dst, ...(via !== undefined ? { via } : { dev: opt('dev') ?? '' }), protocol: opt('proto') ?? 'boot', metric: Number(opt('metric') ?? (dst.includes(':') ? 1024 : 0)) };
      // Like the kernel: `replace` overwrites the route with that destination and metric, whoever owned it.
      const i = this.table.findIndex((r) => r.dst === dst && r.metric === route.metric);
      if (i >= 0) this.table[i] = route;
      else this.table.push(route);
      return this.ok();
    }
    if (argv[0] === 'ip' && argv[1] === 'route' && argv[2] === 'del') {
      const [dst = '', ...rest] = argv.slice(3);
      const opt = (name: string): string | undefined => (rest.includes(name) ? rest[rest.indexOf(name) + 1] : undefined);
      const [proto, metric, dev] = [opt('proto'), opt('metric'), opt('dev')];
      // Like the kernel: the first route matching every selector given; one not given matches anything.
      const i = this.table.findIndex((r) => r.dst === dst && (proto === undefined || r.protocol === proto) && (metric === undefined || r.metric === Number(metric)) && (dev === undefined || r.dev === dev));
      if (i < 0) return { stdout: '', stderr: 'RTNETLINK answers: No such process', exitCode: 2 };
      this.table.splice(i, 1);
      return this.ok();
    }
    if (argv[0] === 'ip' && argv.includes('flush')) {
      const v6 = argv[1] === '-6';
      const proto = argv.includes('proto') ? argv[argv.indexOf('proto') + 1] : undefined;
      this.table = this.table.filter((r) => r.dst.includes(':') !== v6 || (proto !== undefined && r.protocol !== proto));
      return this.ok();
    }
    if (line === `ip -j addr show dev ${IF}`) {
      const addr_info = this.addresses.map((a) => ({ family: 'inet', local: a.split('/')[0], prefixlen: Number(a.split('/')[1]), scope: 'global' }));
      return this.ok(JSON.stringify([{ ifname: IF, mtu: this.mtu, flags: this.up ? ['POINTOPOINT', 'NOARP', 'UP', 'LOWER_UP'] : ['POINTOPOINT', 'NOARP'], addr_info }]));
    }
    if (line === `ip link set dev ${IF} up`) return (this.up = true), this.ok();
    if (line.startsWith(`ip link set dev ${IF} mtu `)) return (this.mtu = Number(argv[6])), this.ok();
    if (line.startsWith('ip address replace ')) return this.addresses.push(argv[3] ?? ''), this.ok();
    if (line.startsWith('ip address del ')) return (this.addresses = this.addresses.filter((a) => a !== argv[3])), this.ok();
    if (line === 'sysctl -n net.ipv4.ip_forward') return this.ok(`${this.ipForward}\n`);
    if (line === 'sysctl -w net.ipv4.ip_forward=1') return (this.ipForward = '1'), this.ok();
    if (argv[0] === 'iptables' || argv[0] === 'ip6tables') {
      const rule = `${argv[0]} ${argv.slice(4).join(' ')}`;
      if (argv[3] === '-C') return this.mangle.includes(rule) ? this.ok() : { stdout: '', stderr: `${argv[0]}: Bad rule`, exitCode: 1 };
      if (argv[3] === '-A') return this.mangle.push(rule), this.ok();
      if (argv[3] === '-D') return (this.mangle = this.mangle.filter((r) => r !== rule)), this.ok();
    }
    return undefined;
  }

  /** Like iproute2 with -force: every line attempted; each failure printed, then "Command failed -:<line>"; exit 1 if any failed. */
  private ipBatch(input: string): RunResult {
    this.batches.push(input);
    let stderr = '';
    input
      .split('\n')
      .filter((l) => l !== '')
      .forEach((l, i) => {
        const r = this.answer(['ip', ...l.split(' ')]);
        if (r instanceof Error || (r !== undefined && r.exitCode !== 0)) stderr += `${r instanceof Error ? r.message : r.stderr}\nCommand failed -:${i + 1}\n`;
      });
    return { stdout: '', stderr, exitCode: stderr === '' ? 0 : 1 };
  }

  /** `wg set <if> [listen-port N] [peer K (remove | endpoint E | persistent-keepalive P | allowed-ips A)…]…`, in order. */
  private wgSet(args: readonly string[]): RunResult {
    let p: FakePeer | undefined;
    for (let i = 0; i < args.length; i += 2) {
      const [k, v = ''] = [args[i], args[i + 1]];
      if (k === 'listen-port') this.listenPort = Number(v);
      else if (k === 'private-key') this.publicKey = 'set-from-stdin';
      else if (k === 'peer') {
        if (args[i + 2] === 'remove') {
          this.peers.delete(v);
          p = undefined;
          i++;
          continue;
        }
        p = this.peers.get(v) ?? { endpoint: null, allowedIps: [], keepalive: 0 };
        this.peers.set(v, p);
      } else if (p && k === 'endpoint') p.endpoint = v;
      else if (p && k === 'persistent-keepalive') p.keepalive = v === 'off' ? 0 : Number(v);
      else if (p && k === 'allowed-ips') p.allowedIps = v.split(',');
    }
    return this.ok();
  }

  /** Mutating commands only (reads filtered out), as shell-like lines; an ip batch as its lines (`ip route replace …`). */
  writes(): string[] {
    return this.runner.calls
      .flatMap((c) => (c.argv.join(' ') === 'ip -force -batch -' ? (c.input ?? '').split('\n').filter((l) => l !== '').map((l) => `ip ${l}`) : [c.argv.join(' ')]))
      .filter((l) => !/^(wg show|ip -j|sysctl -n|iptables -t mangle -C|ip6tables -t mangle -C)/.test(l));
  }

  /** Processes spawned, reads included. */
  spawns(): string[] {
    return this.runner.transcript();
  }
}

const fakeBackend = (): WireguardBackend => ({
  kind: 'kernel',
  interfaceName: IF,
  generation: 1,
  onRestart: () => () => undefined,
  ensureLink: () => Promise.resolve(),
  stop: () => Promise.resolve(),
  destroy: () => Promise.resolve(),
});

const config: DataplaneConfig = { interfaceName: IF, listenPort: 51820, mtu: 1420, natKeepaliveSec: 25, relayPortBase: 40000, relayPortSpan: 100 };

function peer(name: string, cidrs: string[], o: Partial<DesiredPeer> = {}): DesiredPeer {
  return { publicKey: key(name), endpoint: null, allowedIps: cidrs, persistentKeepalive: 0, node: name, cluster: 'west', path: 'direct', via: null, carries: [name], ...o };
}

/** The target of one reconcile: these peers, their routes (+ extra ones), relay assignments. */
function state(peers: DesiredPeer[], extraRoutes: DesiredRoute[] = [], relays: RelayAssignment[] = [], advertisedEndpoints: string[] = []): DataplaneTarget {
  const routes = [...peers.flatMap((p) => p.allowedIps.map((dst) => ({ dst, dev: IF }))), ...extraRoutes].sort((a, b) => (a.dst < b.dst ? -1 : 1));
  return {
    privateKey: KEYS.privateKey,
    interface: IFACE,
    desired: {
      interface: IFACE,
      peers: [...peers].sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1)),
      routes,
      relays,
      refused: [],
      remotes: [],
      isGateway: false,
    },
    advertisedEndpoints,
  };
}

/** Fail-static: the interface only. */
function interfaceOnly(iface: DesiredInterface, privateKey = KEYS.privateKey): DataplaneTarget {
  return { privateKey, interface: iface, desired: null, advertisedEndpoints: [] };
}

/** Records what the data plane asks of the relay. */
class FakeRelay implements RelayPorts {
  readonly updates: { assignments: readonly RelayAssignment[]; options: RelayUpdateOptions | undefined }[] = [];
  fail: string | undefined;
  closed = false;
  update(assignments: readonly RelayAssignment[], options?: RelayUpdateOptions): Promise<void> {
    this.updates.push({ assignments, options });
    return this.fail === undefined ? Promise.resolve() : Promise.reject(new Error(this.fail));
  }
  stats(): [] {
    return [];
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

const B = peer('b', ['10.2.0.0/24', '100.96.0.2/32'], { endpoint: '198.51.100.2:51820' });
const C = peer('c', ['10.3.0.0/24', '100.96.0.3/32']);

/**
 * Passes every command on to `inner` one macrotask later and records which commands were running
 * at the same time: a command started while others were still running is in their group.
 */
class OverlapRunner implements Runner {
  private readonly running = new Set<string>();
  /** For every command: the commands running when it finished (itself included). */
  readonly together: string[][] = [];
  constructor(private readonly inner: Runner) {}
  async run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    const line = argv.slice(0, 3).join(' ');
    this.running.add(line);
    try {
      await new Promise((r) => setImmediate(r));
      this.together.push([...this.running].sort());
      return await this.inner.run(argv, options);
    } finally {
      this.running.delete(line);
    }
  }
}

/** A data plane on a fake host whose interface already matches IFACE (so applies show peer/route work only). */
async function setup(clock = new ManualClock(), relay?: RelayPorts, wrap?: (inner: Runner) => Runner): Promise<{ host: FakeHost; dp: LinuxDataplaneHandle }> {
  const host = new FakeHost();
  host.listenPort = 51820;
  host.publicKey = KEYS.publicKey;
  host.addresses = ['100.96.0.1/32'];
  host.up = true;
  const dp = await createDataplane({
    runner: wrap ? wrap(host.runner) : host.runner,
    logger: silentLogger(),
    config,
    wireguardMode: 'kernel',
    backendOverride: fakeBackend(),
    clock,
    hostCheckIntervalMs: 20_000,
    ...(relay ? { relay } : {}),
  });
  return { host, dp };
}

test('first apply on empty live state: one wg set for all peers, one ip batch for all routes, forwarding, MSS clamp', async (t) => {
  const { host, dp } = await setup();
  const report = await dp.apply(state([B, C]));
  t.deepEqual(host.runner.transcript().slice(0, 4), [
    `wg show ${IF} dump`,
    `ip -j addr show dev ${IF}`,
    'ip -j route show table main',
    'ip -j -6 route show table main',
  ]);
  const [first, second] = [B, C].sort((x, y) => (x.publicKey < y.publicKey ? -1 : 1));
  const peerArgs = (p: DesiredPeer | undefined): string => `peer ${p?.publicKey} ${p?.endpoint ? `endpoint ${p.endpoint} ` : ''}allowed-ips ${p?.allowedIps.join(',')}`;
  t.deepEqual(host.writes(), [
    `wg set ${IF} ${peerArgs(first)} ${peerArgs(second)}`,
    `ip route replace 10.2.0.0/24 dev ${IF} proto 149`,
    `ip route replace 10.3.0.0/24 dev ${IF} proto 149`,
    `ip route replace 100.96.0.2/32 dev ${IF} proto 149`,
    `ip route replace 100.96.0.3/32 dev ${IF} proto 149`,
    'sysctl -w net.ipv4.ip_forward=1',
    `iptables -t mangle -A FORWARD -o ${IF} -p tcp --tcp-flags SYN,RST SYN -m comment --comment crosslink -j TCPMSS --clamp-mss-to-pmtu`,
  ]);
  t.is(report.changes, 8);
  t.is(report.commands.length, 8);
  t.deepEqual(report.failures, []);
});

test('re-apply of the same state is reads only', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B, C]));
  host.runner.clear();
  const report = await dp.apply(state([B, C]));
  t.deepEqual(host.writes(), []);
  t.is(report.changes, 0);
  t.deepEqual(report.commands, []);
});

test('one peer joins: exactly one wg set plus its routes', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B]));
  host.runner.clear();
  await dp.apply(state([B, C]));
  t.deepEqual(host.writes(), [
    `wg set ${IF} peer ${C.publicKey} allowed-ips 10.3.0.0/24,100.96.0.3/32`,
    `ip route replace 10.3.0.0/24 dev ${IF} proto 149`,
    `ip route replace 100.96.0.3/32 dev ${IF} proto 149`,
  ]);
});

test('peer leaves: routes deleted, then the peer removed', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B, C]));
  host.runner.clear();
  await dp.apply(state([B]));
  t.deepEqual(host.writes(), [
    'ip route del 10.3.0.0/24 proto 149 metric 0 dev xl0',
    'ip route del 100.96.0.3/32 proto 149 metric 0 dev xl0',
    `wg set ${IF} peer ${C.publicKey} remove`,
  ]);
});

test('key change: new key added before the old one is removed; routes unchanged', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B]));
  host.runner.clear();
  const rekeyed = { ...B, publicKey: key('b-new') };
  await dp.apply(state([rekeyed]));
  t.deepEqual(host.writes(), [
    `wg set ${IF} peer ${rekeyed.publicKey} endpoint 198.51.100.2:51820 allowed-ips 10.2.0.0/24,100.96.0.2/32`,
    `wg set ${IF} peer ${B.publicKey} remove`,
  ]);
});

test('endpoint change: only the endpoint is sent', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B]));
  host.runner.clear();
  await dp.apply(state([{ ...B, endpoint: '198.51.100.22:51820' }]));
  t.deepEqual(host.writes(), [`wg set ${IF} peer ${B.publicKey} endpoint 198.51.100.22:51820`]);
});

test('CIDR change: allowed-ips replaced, new route added, old one deleted', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B]));
  host.runner.clear();
  await dp.apply(state([{ ...B, allowedIps: ['10.20.0.0/24', '100.96.0.2/32'] }]));
  t.deepEqual(host.writes(), [
    `wg set ${IF} peer ${B.publicKey} allowed-ips 10.20.0.0/24,100.96.0.2/32`,
    `ip route replace 10.20.0.0/24 dev ${IF} proto 149`,
    'ip route del 10.2.0.0/24 proto 149 metric 0 dev xl0',
  ]);
});

test('an endpoint WireGuard learned from a NATed peer is left alone', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([C]));
  const live = host.peers.get(C.publicKey);
  if (live) live.endpoint = '192.0.2.99:40001'; // learned from C's handshakes
  host.runner.clear();
  await dp.apply(state([C]));
  t.deepEqual(host.writes(), []);
  t.is(host.peers.get(C.publicKey)?.endpoint, '192.0.2.99:40001');
});

test('route drift: a route deleted by hand is replaced', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B]));
  host.deleteRoute('10.2.0.0/24');
  host.runner.clear();
  const report = await dp.apply(state([B]));
  t.deepEqual(host.writes(), [`ip route replace 10.2.0.0/24 dev ${IF} proto 149`]);
  t.is(report.changes, 1);
});

test('routes of other owners are never replaced or deleted', async (t) => {
  const { host, dp } = await setup();
  // Beside ours, at another metric: a static route to the same destination as one of our stale ones.
  // An unqualified `ip route del 10.50.0.0/24` would take the static one (lower metric, first in the table).
  host.addRoute({ dst: '10.50.0.0/24', via: '10.0.0.7', dev: 'eth0', protocol: 'static', metric: 10 });
  host.addRoute({ dst: '10.50.0.0/24', via: '10.0.0.1', dev: 'eth0', protocol: '149', metric: 50 });
  const foreign = ['10.0.0.0/8 dev eth0 proto kernel', '10.50.0.0/24 via 10.0.0.7 dev eth0 proto static metric 10'];
  t.deepEqual(host.foreignRoutes, foreign);
  await dp.apply(state([B], [{ dst: '10.50.0.0/24', via: '10.0.0.1' }]));
  t.deepEqual(host.foreignRoutes, foreign);
  await dp.apply(state([]));
  t.deepEqual(host.foreignRoutes, foreign);
  for (const line of host.writes().filter((l) => l.startsWith('ip route'))) t.regex(line, / proto 149( |$)/);
  t.is(host.routes.size, 0);
  await dp.teardown();
  t.deepEqual(host.foreignRoutes, foreign, 'teardown flushes ours only');
});

test('a desired route whose destination holds a foreign route is blocked, not replaced (issue 8)', async (t) => {
  const { host, dp } = await setup();
  host.addRoute({ dst: '10.2.0.0/24', dev: 'eth0', protocol: 'kernel', metric: 0 });
  const report = await dp.apply(state([B]));
  t.deepEqual(host.foreignRoutes, ['10.0.0.0/8 dev eth0 proto kernel', '10.2.0.0/24 dev eth0 proto kernel']);
  t.false(host.writes().some((l) => l.startsWith('ip route replace 10.2.0.0/24')));
  t.deepEqual(report.blocked, ['10.2.0.0/24 already has a route Crosslink does not own (proto kernel, dev eth0)']);
  t.false(host.routes.has('10.2.0.0/24'));
});

test('partial failure: every change is attempted, then one error summarises them', async (t) => {
  const { host, dp } = await setup();
  host.failing.push({ prefix: ['ip', 'route', 'replace', '10.2.0.0/24'], stderr: 'Error: Nexthop has invalid gateway.' });
  host.failing.push({ prefix: ['ip', 'route', 'replace', '100.96.0.2/32'], stderr: 'Error: Nexthop has invalid gateway.' });
  const err = await t.throwsAsync(dp.apply(state([B, C])), { instanceOf: DataplaneApplyError });
  t.true(err instanceof PartialFailureError);
  t.regex(err.message, /^2 add route failures; first was: ip route replace 10\.2\.0\.0\/24 dev xl0 proto 149 exited 1: Error: Nexthop has invalid gateway\.$/);
  t.is(err.report.failures.length, 2);
  t.is(err.report.changes, err.report.commands.length - 2);
  // The other peer and its routes went in regardless, from the one batch (no retries needed: -force reports lines).
  t.true(host.routes.has('10.3.0.0/24'));
  t.true(host.peers.has(C.publicKey));
  t.is(host.batches.length, 1);
  t.false(host.spawns().some((l) => l.startsWith('ip route')), 'failures attributed from the batch output, not by re-running');
});

test('a failed ip batch that names no line is retried item by item: the failing route reported, the others in', async (t) => {
  const { host, dp } = await setup();
  host.failing.push({ prefix: ['ip', 'route', 'replace', '10.3.0.0/24'], stderr: 'Error: Invalid argument.' });
  // An iproute2 that stops without saying where: exit 1, no "Command failed" line.
  host.overrides.push((argv) => (argv.join(' ') === 'ip -force -batch -' ? { stdout: '', stderr: 'ip: something went wrong\n', exitCode: 1 } : undefined));
  const err = await t.throwsAsync(dp.apply(state([B, C])), { instanceOf: DataplaneApplyError });
  t.deepEqual(err.report.failures.map((f) => f.op), ['add route']);
  t.regex(err.message, /ip route replace 10\.3\.0\.0\/24 dev xl0 proto 149 exited 2: Error: Invalid argument\./);
  t.deepEqual([...host.routes.keys()].sort(), ['10.2.0.0/24', '100.96.0.2/32', '100.96.0.3/32']);
  t.is(host.spawns().filter((l) => l.startsWith('ip route replace')).length, 4, 'one by one after the batch failed');
});

test('a failed wg set batch is retried peer by peer: the bad peer reported, the others in', async (t) => {
  const { host, dp } = await setup();
  // wg refuses the whole command when one peer is bad (an unresolvable endpoint, say).
  const bad = peer('bad', ['10.9.0.0/24'], { endpoint: 'no-such-host.invalid:51820' });
  host.overrides.push((argv) => (argv[0] === 'wg' && argv[1] === 'set' && argv.includes('no-such-host.invalid:51820') ? { stdout: '', stderr: 'Name or service not known: `no-such-host.invalid:51820\'', exitCode: 1 } : undefined));
  const err = await t.throwsAsync(dp.apply(state([B, C, bad])), { instanceOf: DataplaneApplyError });
  t.deepEqual(err.report.failures.map((f) => f.op), ['add peer']);
  t.regex(err.message, new RegExp(`wg set xl0 peer ${bad.publicKey.replace(/[+/]/g, '\\$&')} endpoint no-such-host`));
  t.true(host.peers.has(B.publicKey));
  t.true(host.peers.has(C.publicKey));
  t.false(host.peers.has(bad.publicKey));
  t.true(host.routes.has('10.9.0.0/24'), 'routes are independent of the peer batch');
});

test('the interface (fail-static target): key via stdin, listen port, mtu, address, up; then only reads', async (t) => {
  const host = new FakeHost();
  const dp = await createDataplane({ runner: host.runner, logger: silentLogger(), config, wireguardMode: 'kernel', backendOverride: fakeBackend() });
  const { privateKey } = await generateWireguardKeyPair();
  const iface = { name: IF, listenPort: 51820, mtu: 1380, addresses: ['100.96.0.1/32'] };
  const report = await dp.apply(interfaceOnly(iface, privateKey));
  t.true(report.interfaceEnsured);
  t.deepEqual(host.writes(), [
    `wg set ${IF} listen-port 51820`,
    `sh -c ${SET_PRIVATE_KEY_SCRIPT} ${IF}`,
    `ip link set dev ${IF} mtu 1380`,
    `ip address replace 100.96.0.1/32 dev ${IF}`,
    `ip link set dev ${IF} up`,
  ]);
  const keyCall = host.runner.calls.find((c) => c.argv[0] === 'sh');
  t.is(keyCall?.input, `${privateKey}\n`);
  t.false(keyCall?.argv.includes(privateKey));
  // Make the fake report the real public key, as wg would.
  host.publicKey = await wireguardPublicKeyOf(privateKey);
  host.runner.clear();
  await dp.apply(interfaceOnly(iface, privateKey));
  t.deepEqual(host.writes(), []);
  t.deepEqual(host.runner.transcript(), [`wg show ${IF} dump`, `ip -j addr show dev ${IF}`], 'fail-static: no peer, route or host reads');
  // Overlay IP re-allocated: the old address goes.
  host.runner.clear();
  await dp.apply(interfaceOnly({ ...iface, addresses: ['100.96.0.9/32'] }, privateKey));
  t.deepEqual(host.writes(), [`ip address replace 100.96.0.9/32 dev ${IF}`, `ip address del 100.96.0.1/32 dev ${IF}`]);
});

test('fail-static target: peers and routes already there are left alone', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B, C]));
  host.runner.clear();
  await dp.apply(interfaceOnly(IFACE));
  t.deepEqual(host.writes(), []);
  t.is(host.peers.size, 2);
  t.is(host.routes.size, 4);
});

test('idle reconcile (one apply, nothing changed): the exact reads, WireGuard dumped once, 0 mutating calls', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B, C]));
  host.runner.clear();

  const report = await dp.apply(state([B, C]));
  t.deepEqual(report.commands, []);
  t.is(report.changes, 0);
  t.deepEqual(host.runner.transcript(), [
    `wg show ${IF} dump`,
    `ip -j addr show dev ${IF}`,
    'ip -j route show table main',
    'ip -j -6 route show table main',
  ]);
});

test('one join costs a constant number of commands whatever the mesh size: one wg set plus one route per CIDR', async (t) => {
  for (const size of [1, 10, 50]) {
    const { host, dp } = await setup();
    const mesh = Array.from({ length: size }, (_, i) => peer(`n${i}`, [`10.${i}.0.0/24`, `100.96.1.${i}/32`]));
    await dp.apply(state(mesh));
    host.runner.clear();
    const joiner = peer('joiner', ['10.200.0.0/24', '100.96.2.1/32']);
    const report = await dp.apply(state([...mesh, joiner]));
    t.is(report.commands.length, 3, `mesh of ${size}: one peer, two routes`);
    t.is(host.runner.transcript().length, 4 + 2, `mesh of ${size}: 4 reads + one wg set + one ip batch`);
  }
});

test('forwarding and MSS clamp: re-checked once the check interval passed, so drift is repaired at the resync', async (t) => {
  const clock = new ManualClock();
  const { host, dp } = await setup(clock);
  await dp.apply(state([B]));
  // Drift by hand: forwarding off, clamp rule deleted.
  host.ipForward = '0';
  host.mangle = [];
  clock.advance(19_000);
  host.runner.clear();
  await dp.apply(state([B]));
  t.deepEqual(host.writes(), [], 'a change-driven apply inside the interval trusts the last check');
  t.false(host.runner.transcript().some((l) => l.startsWith('sysctl') || l.startsWith('iptables')));
  clock.advance(1_000);
  host.runner.clear();
  const report = await dp.apply(state([B]));
  t.deepEqual(host.writes(), [
    'sysctl -w net.ipv4.ip_forward=1',
    `iptables -t mangle -A FORWARD -o ${IF} -p tcp --tcp-flags SYN,RST SYN -m comment --comment crosslink -j TCPMSS --clamp-mss-to-pmtu`,
  ]);
  t.is(report.changes, 2);
});

test('forwarding and MSS clamp: a new address family is checked at once', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B]));
  host.runner.clear();
  await dp.apply(state([B], [{ dst: 'fd00:2::/64', dev: IF }]));
  t.true(host.runner.transcript().includes('sysctl -n net.ipv6.conf.all.forwarding'));
});

test('peer drift between two applies is repaired: every apply reads WireGuard afresh', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B]));
  host.peers.delete(B.publicKey);
  host.runner.clear();
  await dp.apply(state([B]));
  t.is(host.runner.transcript()[0], `wg show ${IF} dump`);
  t.deepEqual(host.writes(), [`wg set ${IF} peer ${B.publicKey} endpoint 198.51.100.2:51820 allowed-ips 10.2.0.0/24,100.96.0.2/32`]);
});

const PAIR: RelayAssignment = { port: 40007, a: { node: 'x', publicKey: key('x') }, b: { node: 'y', publicKey: key('y') } };
const LOCAL_ADDRS = JSON.stringify([{ ifname: 'eth0', addr_info: [{ local: '172.16.0.5' }, { local: '198.51.100.7' }] }]);

test('relay ports are part of the one apply: hints from the same single WireGuard dump, bound to our advertised local address', async (t) => {
  const relay = new FakeRelay();
  const { host, dp } = await setup(new ManualClock(), relay);
  host.runner.on(['ip', '-j', '-4', 'addr', 'show'], LOCAL_ADDRS);
  // X is a NATed peer whose address our WireGuard learned from its handshakes.
  const X = peer('x', ['10.7.0.0/24', '100.96.0.7/32']);
  await dp.apply(state([X]));
  const live = host.peers.get(X.publicKey);
  if (live) live.endpoint = '203.0.113.50:4500';
  host.runner.clear();
  await dp.apply(state([X], [], [PAIR], ['198.51.100.7:51820']));
  t.deepEqual(relay.updates.at(-1)?.assignments, [PAIR]);
  t.is(relay.updates.at(-1)?.options?.bindAddress, '198.51.100.7');
  t.deepEqual([...(relay.updates.at(-1)?.options?.hints ?? new Map())], [[X.publicKey, '203.0.113.50']]);
  t.is(host.runner.transcript().filter((l) => l.startsWith('wg show')).length, 1, 'one wg show dump per apply, relay hints included');
  // The local addresses are read once per set of endpoints, not at every apply.
  host.runner.clear();
  await dp.apply(state([X], [], [PAIR], ['198.51.100.7:51820']));
  t.false(host.runner.transcript().includes('ip -j -4 addr show'));
  t.deepEqual(host.writes(), []);
});

test('relay: an advertised endpoint that is not local (1:1 NAT) binds any address; relays gone close the ports', async (t) => {
  const relay = new FakeRelay();
  const { host, dp } = await setup(new ManualClock(), relay);
  host.runner.on(['ip', '-j', '-4', 'addr', 'show'], LOCAL_ADDRS);
  await dp.apply(state([], [], [PAIR], ['203.0.113.9:51820']));
  t.is(relay.updates.at(-1)?.options?.bindAddress, undefined);
  await dp.apply(state([]));
  t.deepEqual(relay.updates.at(-1)?.assignments, []);
});

test('relay: unreadable local addresses (garbage from ip -j) bind any address instead of failing the apply', async (t) => {
  const relay = new FakeRelay();
  const { host, dp } = await setup(new ManualClock(), relay);
  host.runner.on(['ip', '-j', '-4', 'addr', 'show'], '[{"ifname": "eth0", "addr_info": [{"local": "198.51');
  const report = await dp.apply(state([], [], [PAIR], ['198.51.100.7:51820']));
  t.deepEqual(report.failures, []);
  t.deepEqual(relay.updates.at(-1)?.assignments, [PAIR]);
  t.is(relay.updates.at(-1)?.options?.bindAddress, undefined);
});

test('relay: a port that cannot bind is a failure of the apply; peers and routes still went in', async (t) => {
  const relay = new FakeRelay();
  relay.fail = 'relay forwarder could not bind 1 port(s): port 40007: EADDRINUSE';
  const { host, dp } = await setup(new ManualClock(), relay);
  const err = await t.throwsAsync(dp.apply(state([B], [], [PAIR])), { instanceOf: DataplaneApplyError });
  t.regex(err.message, /^1 relay failure; first was: relay forwarder could not bind/);
  t.true(err.report.interfaceEnsured);
  t.true(host.peers.has(B.publicKey));
  t.true(host.routes.has('10.2.0.0/24'));
});

test('teardown and close close the relay ports', async (t) => {
  for (const how of ['teardown', 'close'] as const) {
    const relay = new FakeRelay();
    const { dp } = await setup(new ManualClock(), relay);
    await dp.apply(state([], [], [PAIR]));
    await dp[how]();
    t.true(relay.closed, how);
  }
});

test('teardown: flush our routes (both families), remove the MSS rule, delete the interface', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B]));
  host.runner.clear();
  await dp.teardown();
  t.deepEqual(host.writes(), [
    'ip route flush table main proto 149',
    'ip -6 route flush table main proto 149',
    `iptables -t mangle -D FORWARD -o ${IF} -p tcp --tcp-flags SYN,RST SYN -m comment --comment crosslink -j TCPMSS --clamp-mss-to-pmtu`,
  ]);
  t.is(host.routes.size, 0);
  t.deepEqual(host.mangle, []);
});

test('one record of what was applied: nothing survives a teardown (a change-driven apply after it reads and re-installs)', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B, C]));
  const installed = host.routes.size;
  await dp.teardown();
  host.peers.clear();
  t.is(host.routes.size, 0);
  host.runner.clear();
  // The backend kept its generation (the fake's): only the teardown itself voids what was applied.
  await dp.apply({ ...state([B, C]), readLive: false });
  t.true(host.runner.transcript().includes(`wg show ${IF} dump`), 'read the kernel again');
  t.deepEqual([...host.peers.keys()].sort(), [B.publicKey, C.publicKey].sort());
  t.is(host.routes.size, installed);
});

test('startingPoint: a change-driven apply on the same generation starts from the mesh model or the interface-only reads; nothing else does', (t) => {
  const wireguard: LiveWireguard = { interface: { publicKey: KEYS.publicKey, listenPort: 51820, fwmark: 0 }, peers: [] };
  const iface = interfaceAfterEnsure(wireguard, {}, IFACE, KEYS.publicKey, 3);
  const desired = state([]).desired;
  if (desired === null) throw new Error('state() has a desired state');
  const mesh = stateAfterApply({ wireguard, routes: [] }, desired, KEYS.publicKey, new Set(), 3, iface.link);
  t.is(startingPoint(mesh, true, 3).model, mesh);
  t.is(startingPoint(mesh, true, 3).carried, undefined);
  t.is(startingPoint(iface, true, 3).carried, iface);
  t.is(startingPoint(iface, true, 3).model, undefined);
  for (const left of [mesh, iface]) {
    t.deepEqual(startingPoint(left, false, 3), {}, 'a reading apply starts from the kernel');
    t.deepEqual(startingPoint(left, true, 4), {}, 'a recreated interface voids it');
  }
  t.deepEqual(startingPoint(undefined, true, 3), {});
});

test('kernel backend through the runner: created with ip link add, deleted on teardown', async (t) => {
  const runner = new RecordingRunner();
  let exists = false;
  runner.respond((argv) => {
    const line = argv.join(' ');
    if (line === `ip -j -d link show dev ${IF}`) {
      return exists ? { stdout: '[{"ifname":"xl0","linkinfo":{"info_kind":"wireguard"}}]', stderr: '', exitCode: 0 } : { stdout: '', stderr: `Device "${IF}" does not exist.`, exitCode: 1 };
    }
    if (line === `ip link add ${IF} type wireguard`) {
      exists = true;
      return { stdout: '', stderr: '', exitCode: 0 };
    }
    return undefined;
  });
  const dp = await createDataplane({ runner, logger: silentLogger(), config, wireguardMode: 'auto' });
  t.is(dp.backend, 'kernel');
  t.is(dp.generation, 1);
  t.true(runner.transcript().includes(`ip link add ${IF} type wireguard`));
  runner.clear();
  await dp.teardown();
  t.true(runner.transcript().includes(`ip link del dev ${IF}`));
});

test('forced kernel mode fails clearly when the module is missing', async (t) => {
  const runner = new RecordingRunner()
    .fail(['ip', '-j', '-d', 'link', 'show'], `Device "${IF}" does not exist.`, 1)
    .fail(['ip', 'link', 'add'], 'Error: Unknown device type.');
  const err = await t.throwsAsync(createDataplane({ runner, logger: silentLogger(), config, wireguardMode: 'kernel' }));
  t.regex(err.message, /kernel WireGuard is not available .*Unknown device type.*use --wireguard userspace or auto/);
});

test('defaultMtu: underlay MTU minus 80 from the default route; 1420 when unknown; no traffic sent', async (t) => {
  const { defaultMtu } = await import('../agent/dataplane/mtu.ts');
  const runner = new RecordingRunner()
    .on(['ip', '-j', 'route', 'show', 'default'], '[{"dst":"default","gateway":"192.0.2.254","dev":"ens5","flags":[]}]')
    .on(['ip', '-j', 'link', 'show', 'dev', 'ens5'], '[{"ifname":"ens5","mtu":9001}]');
  t.is(await defaultMtu(runner), 8921);
  t.deepEqual(runner.transcript(), ['ip -j route show default', 'ip -j link show dev ens5']);

  const v6only = new RecordingRunner()
    .on(['ip', '-j', 'route', 'show', 'default'], '[]')
    .on(['ip', '-j', '-6', 'route', 'show', 'default'], '[{"dst":"default","nexthops":[{"gateway":"fe80::1","dev":"eth0"}]}]')
    .on(['ip', '-j', 'link', 'show', 'dev', 'eth0'], '[{"ifname":"eth0","mtu":1500}]');
  t.is(await defaultMtu(v6only), 1420);

  t.is(await defaultMtu(new RecordingRunner().on(['ip'], '[]')), 1420);
  t.is(await defaultMtu(new RecordingRunner().fail(['ip'], 'boom')), 1420);
  t.is(await defaultMtu(new RecordingRunner().on(['ip', '-j', 'route'], '[{"dev":"tiny"}]').on(['ip', '-j', 'link'], '[{"mtu":600}]')), 1280, 'clamped to the one bound (test/mtu-bounds.test.ts)');
});

/** A mesh of `n` peers with a pod CIDR and an overlay IP each (n ≤ 65,536). */
const mesh = (n: number, from = 0): DesiredPeer[] =>
  Array.from({ length: n }, (_, k) => {
    const i = from + k;
    return peer(`m${i}`, [`10.${100 + (i >> 8)}.${i & 255}.0/24`, `100.${97 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`], { endpoint: `198.51.100.${1 + (i % 250)}:51820` });
  });

test('first apply of 1,000 peers: a constant number of spawns (4 reads, one wg set, one ip batch, forwarding, clamp)', async (t) => {
  const { host, dp } = await setup();
  const peers = mesh(1000);
  const report = await dp.apply(state(peers));
  // (Forwarding and the clamp run beside the batches: the set of spawns is pinned, not their order.)
  t.deepEqual(
    host.spawns().map((l) => l.split(' ').slice(0, 3).join(' ')).sort(),
    [`wg show ${IF}`, 'ip -j addr', 'ip -j route', 'ip -j -6', `wg set ${IF}`, 'ip -force -batch', 'sysctl -n net.ipv4.ip_forward', 'sysctl -w net.ipv4.ip_forward=1', 'iptables -t mangle', 'iptables -t mangle'].sort(),
  );
  t.is(host.peers.size, 1000);
  t.is(host.routes.size, 2000);
  t.is(report.changes, 1000 + 2000 + 2);
  t.deepEqual(report.failures, []);
  // The whole mesh leaving: one ip batch of deletes, one wg set of removals.
  host.runner.clear();
  await dp.apply(state([]));
  t.deepEqual(host.spawns().filter((l) => !l.startsWith('ip -j') && !l.startsWith('wg show')).map((l) => l.split(' ').slice(0, 3).join(' ')), ['ip -force -batch', `wg set ${IF}`]);
  t.is(host.peers.size, 0);
  t.is(host.routes.size, 0);
});

test('start-up cost: an apply runs its reads side by side, and the peer batch beside the route batch', async (t) => {
  let overlap: OverlapRunner | undefined;
  const { host, dp } = await setup(new ManualClock(), undefined, (inner) => (overlap = new OverlapRunner(inner)));
  await dp.apply(state(mesh(50)));
  t.is(host.peers.size, 50);
  t.is(host.routes.size, 100);
  const groups = overlap?.together ?? [];
  // One round of reads: WireGuard, the interface's addresses, both route tables, all in flight at once.
  t.true(
    groups.some((g) => ['wg show xl0', 'ip -j addr', 'ip -j route', 'ip -j -6'].every((c) => g.includes(c))),
    `reads not side by side: ${JSON.stringify(groups)}`,
  );
  t.true(
    groups.some((g) => g.includes('wg set xl0') && g.includes('ip -force -batch')),
    `peer and route batches not side by side: ${JSON.stringify(groups)}`,
  );
  // Forwarding and the MSS clamp: no round of their own, they run beside the batches.
  t.true(
    groups.some((g) => g.includes('wg set xl0') && g.includes('sysctl -n net.ipv4.ip_forward') && g.includes('iptables -t mangle')),
    `forwarding and clamp checks not beside the batches: ${JSON.stringify(groups)}`,
  );
});

test('start-up cost: forwarding and the MSS clamp of both families are checked side by side', async (t) => {
  let overlap: OverlapRunner | undefined;
  const { host, dp } = await setup(new ManualClock(), undefined, (inner) => (overlap = new OverlapRunner(inner)));
  const dual = state([peer('b6', ['10.2.0.0/24', 'fd00::2/128'])]);
  await dp.apply(dual);
  t.true(host.writes().includes('sysctl -w net.ipv6.conf.all.forwarding=1'));
  const groups = overlap?.together ?? [];
  t.true(
    groups.some((g) => ['sysctl -n net.ipv4.ip_forward', 'sysctl -n net.ipv6.conf.all.forwarding', 'iptables -t mangle', 'ip6tables -t mangle'].every((c) => g.includes(c))),
    `host checks not side by side: ${JSON.stringify(groups)}`,
  );
});

test('start-up cost: the first full apply after an interface-only one starts from its reads (no second wg dump, no addr read)', async (t) => {
  const { host, dp } = await setup();
  // The start: interface only, with the cached overlay IP; a peer from before the restart is live.
  host.addresses = [];
  host.peers.set(key('stale'), { endpoint: null, allowedIps: ['10.66.0.0/24'], keepalive: 0 });
  await dp.apply(interfaceOnly({ ...IFACE, addresses: ['100.96.0.9/32'] }));
  t.deepEqual(host.addresses, ['100.96.0.9/32']);
  host.runner.clear();
  // The first view (change-driven: registration and snapshot arrived; the host read's routes handed over).
  const live = host.table.map((r) => ({ dst: r.dst, dev: r.dev ?? null, via: r.via ?? null, metric: r.metric, protocol: r.protocol, scope: null }));
  const report = await dp.apply({ ...state([B, C]), readLive: false, liveRoutes: live });
  t.deepEqual(host.runner.transcript().filter((l) => l.startsWith('ip -j') || l.startsWith('wg show')), [], 'no read at all');
  // Diffed against what the interface-only apply left: our new address in, the old one out, the stale peer removed after the adds.
  t.deepEqual(host.addresses, ['100.96.0.1/32']);
  t.deepEqual([...host.peers.keys()].sort(), [B.publicKey, C.publicKey].sort());
  t.true(report.commands.some((c) => c.join(' ') === `wg set ${IF} peer ${key('stale')} remove`));
  t.is(host.routes.size, 4);
});

test('the interface-only apply\'s reads are carried only into a change-driven apply on the same interface', async (t) => {
  const ifaceOnly = interfaceOnly(IFACE);
  const reads = (h: FakeHost): string[] => h.runner.transcript().filter((l) => l.startsWith('ip -j addr') || l.startsWith('wg show'));
  // A reading apply (the resync, readLive absent) reads.
  {
    const { host, dp } = await setup();
    await dp.apply(ifaceOnly);
    host.runner.clear();
    await dp.apply(state([B]));
    t.deepEqual(reads(host), [`wg show ${IF} dump`, `ip -j addr show dev ${IF}`]);
  }
  // A failed interface-only apply leaves nothing to carry.
  {
    const { host, dp } = await setup();
    host.failing.push({ prefix: ['ip', 'link', 'set'], stderr: 'RTNETLINK answers: Operation not permitted' });
    host.up = false;
    await t.throwsAsync(dp.apply(ifaceOnly));
    host.failing.length = 0;
    host.runner.clear();
    await dp.apply({ ...state([B]), readLive: false });
    t.deepEqual(reads(host), [`wg show ${IF} dump`, `ip -j addr show dev ${IF}`]);
  }
  // Drift after the carried apply is repaired by the next reading apply: a peer removed by hand comes back.
  {
    const { host, dp } = await setup();
    await dp.apply(ifaceOnly);
    await dp.apply({ ...state([B]), readLive: false });
    host.peers.clear();
    await dp.apply(state([B]));
    t.true(host.peers.has(B.publicKey));
  }
});

test('routes read by the reconcile\'s host read (target.liveRoutes) are not read again, and the diff uses them', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B, C]));
  host.addRoute({ dst: '10.77.0.0/24', dev: IF, protocol: '149', metric: 0 });
  host.runner.clear();
  // The route read handed over says a route of C is missing (the kernel has it: only a diff against
  // the read handed over replaces it) and holds the stale route of ours.
  const read = host.table.filter((r) => r.dst !== '10.3.0.0/24').map((r) => ({ dst: r.dst, dev: r.dev ?? null, via: r.via ?? null, metric: r.metric, protocol: r.protocol, scope: null }));
  const report = await dp.apply({ ...state([B, C]), liveRoutes: read });
  t.deepEqual(host.runner.transcript().filter((l) => l.startsWith('ip -j') || l.startsWith('wg show')), [`wg show ${IF} dump`, `ip -j addr show dev ${IF}`], 'no second route read');
  t.deepEqual(
    report.commands.map((c) => c.join(' ')),
    [`ip route replace 10.3.0.0/24 dev ${IF} proto 149`, `ip route del 10.77.0.0/24 proto 149 metric 0 dev ${IF}`],
    'diffed against the routes handed over',
  );
  t.false(host.routes.has('10.77.0.0/24'));
});

test('a wg set too long for one argv is split, in order; every peer still goes in', async (t) => {
  const { runWgSetBatch } = await import('../agent/dataplane/batch.ts');
  const runner = new RecordingRunner();
  const items = mesh(10).map((p) => ({ op: 'add peer', argv: ['wg', 'set', IF, 'peer', p.publicKey, 'allowed-ips', p.allowedIps.join(',')] }));
  const out = await runWgSetBatch(runner, IF, items, 400);
  t.is(out.succeeded.length, 10);
  t.true(runner.calls.length > 1 && runner.calls.length < 10);
  t.true(runner.calls.every((c) => c.argv.join(' ').length <= 400 + 20));
  t.deepEqual(runner.calls.flatMap((c) => c.argv.filter((a) => items.some((i) => i.argv[4] === a))), items.map((i) => i.argv[4]));
});

test('ip batch lines: tokens that would split or comment a line are refused; iproute2 errors attributed to their lines', async (t) => {
  const { ipBatchLine, parseIpBatchErrors, BatchItemError } = await import('../agent/dataplane/batch.ts');
  t.is(ipBatchLine({ op: 'add route', argv: ['ip', 'route', 'replace', '10.1.0.0/24', 'dev', IF, 'proto', '149'] }), `route replace 10.1.0.0/24 dev ${IF} proto 149`);
  for (const bad of ['10.1.0.0/24 dev eth0', '10.1.0.0/24\nroute del default', '#x', '']) {
    t.throws(() => ipBatchLine({ op: 'add route', argv: ['ip', 'route', 'replace', bad] }), { instanceOf: BatchItemError });
  }
  t.throws(() => ipBatchLine({ op: 'x', argv: ['wg', 'set'] }), { instanceOf: BatchItemError });
  const errors = parseIpBatchErrors('Error: Nexthop has invalid gateway.\nCommand failed -:2\nRTNETLINK answers: No such process\nCommand failed -:3\n');
  t.deepEqual([...errors], [[2, 'Error: Nexthop has invalid gateway.'], [3, 'RTNETLINK answers: No such process']]);
});

test('change-driven apply (readLive false): no wg dump, no route read, no interface read; a join costs the same on 1 and 1,000 peers', async (t) => {
  const spawnsPerJoin: number[] = [];
  for (const size of [1, 1000]) {
    const { host, dp } = await setup();
    const peers = mesh(size);
    await dp.apply(state(peers));
    host.runner.clear();
    const joiner = peer('joiner', ['10.250.0.0/24', '100.96.250.1/32']);
    const report = await dp.apply({ ...state([...peers, joiner]), readLive: false });
    t.deepEqual(host.spawns().map((l) => l.split(' ').slice(0, 3).join(' ')), [`wg set ${IF}`, 'ip -force -batch']);
    t.is(report.commands.length, 3);
    t.true(host.peers.has(joiner.publicKey));
    t.true(host.routes.has('10.250.0.0/24'));
    spawnsPerJoin.push(host.spawns().length);
    // …and a leave against the state the join left: exactly the joiner's routes and peer go.
    host.runner.clear();
    await dp.apply({ ...state(peers), readLive: false });
    t.deepEqual(host.writes(), [
      'ip route del 10.250.0.0/24 proto 149 metric 0 dev xl0',
      'ip route del 100.96.250.1/32 proto 149 metric 0 dev xl0',
      `wg set ${IF} peer ${joiner.publicKey} remove`,
    ]);
  }
  t.is(spawnsPerJoin[0], spawnsPerJoin[1]);
});

test('readLive false with another interface (MTU, address) than the last apply ensured reads the interface and fixes it', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B]));
  host.runner.clear();
  const target = state([B]);
  await dp.apply({ ...target, interface: { ...target.interface, mtu: 1380 }, readLive: false });
  t.deepEqual(host.spawns().filter((l) => l.startsWith('ip -j addr')), [`ip -j addr show dev ${IF}`]);
  t.deepEqual(host.writes(), [`ip link set dev ${IF} mtu 1380`]);
});

test('readLive false trusts the last apply; readLive true (the resync) reads the kernel and repairs drift', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B]));
  host.deleteRoute('10.2.0.0/24');
  host.peers.delete(B.publicKey);
  host.runner.clear();
  await dp.apply({ ...state([B]), readLive: false });
  t.deepEqual(host.writes(), [], 'drift behind our back is the resync’s job');
  await dp.apply({ ...state([B]), readLive: true });
  t.deepEqual(host.writes(), [
    `wg set ${IF} peer ${B.publicKey} endpoint 198.51.100.2:51820 allowed-ips 10.2.0.0/24,100.96.0.2/32`,
    `ip route replace 10.2.0.0/24 dev ${IF} proto 149`,
  ]);
});

test('after a failed apply the next change-driven apply reads the kernel again (no stale model)', async (t) => {
  const { host, dp } = await setup();
  host.failing.push({ prefix: ['ip', 'route', 'replace', '10.3.0.0/24'], stderr: 'Error: Nexthop has invalid gateway.' });
  await t.throwsAsync(dp.apply(state([B, C])), { instanceOf: DataplaneApplyError });
  host.failing.length = 0;
  host.runner.clear();
  await dp.apply({ ...state([B, C]), readLive: false });
  t.is(host.spawns()[0], `wg show ${IF} dump`);
  t.deepEqual(host.writes(), [`ip route replace 10.3.0.0/24 dev ${IF} proto 149`]);
});

test('readLive false on a recreated interface (new generation) reads the kernel', async (t) => {
  const host = new FakeHost();
  Object.assign(host, { listenPort: 51820, publicKey: KEYS.publicKey, addresses: ['100.96.0.1/32'], up: true });
  let generation = 1;
  const backend: WireguardBackend = { ...fakeBackend(), get generation() { return generation; } };
  const dp = await createDataplane({ runner: host.runner, logger: silentLogger(), config, wireguardMode: 'kernel', backendOverride: backend, clock: new ManualClock() });
  await dp.apply(state([B]));
  host.peers.clear(); // wireguard-go restarted: an empty interface
  generation = 2;
  host.runner.clear();
  await dp.apply({ ...state([B]), readLive: false });
  t.is(host.spawns()[0], `wg show ${IF} dump`);
  t.true(host.peers.has(B.publicKey));
});

test('interface back empty (wireguard-go restarted): a NATed peer is re-added at the endpoint it was last seen at, so we can start the handshake', async (t) => {
  const { host, dp } = await setup();
  await dp.apply(state([B, C]));
  const live = host.peers.get(C.publicKey);
  if (live) live.endpoint = '192.0.2.99:40001'; // learned from C's handshakes (C is behind NAT: no endpoint in its record)
  await dp.apply(state([B, C])); // the apply's one dump sees it
  host.peers.clear(); // the restart: an empty interface
  host.runner.clear();
  await dp.apply(state([B, C]));
  t.true(host.writes().some((w) => w.startsWith(`wg set ${IF} `) && w.includes(`peer ${C.publicKey} endpoint 192.0.2.99:40001 allowed-ips 10.3.0.0/24,100.96.0.3/32`)), host.writes().join('\n'));
  t.is(host.peers.get(C.publicKey)?.endpoint, '192.0.2.99:40001');
  // From then on the endpoint is WireGuard's again: an idle apply writes nothing.
  host.runner.clear();
  await dp.apply(state([B, C]));
  t.deepEqual(host.writes(), []);
  // A peer no longer desired is forgotten: re-added later it has no endpoint to start from.
  await dp.apply(state([B]));
  host.peers.clear();
  await dp.apply(state([B, C]));
  t.is(host.peers.get(C.publicKey)?.endpoint, null);
});

test('change-driven applies diff only what changed (desired delta): on random joins, leaves and changes the kernel always ends equal to the desired state', async (t) => {
  const { host, dp } = await setup();
  // Desired states built the way the incremental planner builds them: unchanged peers and routes keep their objects.
  let seed = 7;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const entries = new Map<string, { peer: DesiredPeer; routes: DesiredRoute[] }>();
  const make = (i: number, gen: number): { peer: DesiredPeer; routes: DesiredRoute[] } => {
    const cidrs = [`10.${(i >> 8) + 1}.${i & 255}.0/24`, `100.${96 + gen}.${i >> 8}.${i & 255}/32`].sort();
    return { peer: peer(`n${i}`, cidrs, { endpoint: `198.51.100.${(i % 250) + 1}:${51820 + gen}` }), routes: cidrs.map((dst) => ({ dst, dev: IF })) };
  };
  for (let i = 0; i < 200; i++) entries.set(`n${i}`, make(i, 0));
  const target = (): DataplaneTarget => {
    const all = [...entries.values()];
    return {
      privateKey: KEYS.privateKey,
      interface: IFACE,
      desired: {
        interface: IFACE,
        peers: all.map((e) => e.peer).sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1)),
        routes: all.flatMap((e) => e.routes).sort((a, b) => (a.dst < b.dst ? -1 : 1)),
        relays: [],
        refused: [],
        remotes: [],
        isGateway: false,
      },
      advertisedEndpoints: [],
    };
  };
  await dp.apply(target());
  let next = 200;
  for (let step = 0; step < 120; step++) {
    const names = [...entries.keys()];
    // Often one of a few nodes, changed back and forth (a stale model would show on the way back).
    const victim = names[Math.floor(rnd() * (rnd() < 0.5 ? Math.min(3, names.length) : names.length))] ?? 'n0';
    const r = rnd();
    let touched: string;
    if (r < 0.4) entries.set((touched = `n${next}`), make(next++, 0));
    else if (r < 0.7) entries.delete((touched = victim));
    else entries.set((touched = victim), make(Number(victim.slice(1)), rnd() < 0.5 ? 0 : 1 + step));
    host.runner.clear();
    const tgt = target();
    await dp.apply({ ...tgt, readLive: false });
    // Only the touched node's peer and routes were written.
    t.true(host.writes().every((w) => w.includes(key(touched)) || entries.get(touched)?.routes.some((x) => w.includes(x.dst)) || / (10|100)\.\d+\.\d+\.\d+\/\d+ /.test(w)), host.writes().join('\n'));
    t.true(host.writes().length <= 6, `step ${step}: ${host.writes().length} writes`);
    const desired = tgt.desired;
    if (desired === null) throw new Error('no desired state');
    const kernelPeers = [...host.peers.entries()].map(([k, p]) => `${k} ${p.allowedIps.slice().sort().join(',')}`).sort();
    const wantPeers = desired.peers.map((p) => `${p.publicKey} ${[...p.allowedIps].sort().join(',')}`).sort();
    if (JSON.stringify(kernelPeers) !== JSON.stringify(wantPeers)) {
      t.deepEqual(kernelPeers, wantPeers, `step ${step}: peers`);
      return;
    }
    t.deepEqual([...host.routes.keys()].sort(), desired.routes.map((x) => x.dst).sort(), `step ${step}: routes`);
  }
  // The resync (full read) finds nothing to repair: the model the deltas kept was the kernel's state.
  host.runner.clear();
  await dp.apply(target());
  t.deepEqual(host.writes(), []);
});
