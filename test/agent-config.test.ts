// Flag/env parsing for crosslink-agent: defaults, precedence, and rejections that name the flag,
// the value and what is allowed.
import test from 'ava';
import { parseAgentConfig, type AgentConfig, type ParseContext } from '../agent/config.ts';
import { ValidationError } from '../lib/errors.ts';

const KEY = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
const BASE = ['--nats-url', 'nats://127.0.0.1:4222', '--cluster', 'c1', '--location', 'lab', '--pod-cidr', '10.244.1.0/24', '--coordinator-key', KEY];
const ctx = (env: Record<string, string> = {}): ParseContext => ({ env, hostname: 'Node-A', fileExists: () => false });

test('defaults', (t) => {
  const c = parseAgentConfig(BASE, ctx());
  t.true(Object.isFrozen(c));
  t.like(c, {
    natsServers: ['nats://127.0.0.1:4222'],
    nodeName: 'node-a',
    mode: 'standalone',
    cluster: 'c1',
    location: 'lab',
    zone: null,
    podCidrs: ['10.244.1.0/24'],
    endpoints: [],
    privateAddresses: [],
    listenPort: 51820,
    interfaceName: 'crosslink0',
    stateDir: '/var/lib/crosslink',
    wireguard: 'auto',
    coordinatorKey: KEY,
    coordinatorKeyFile: null,
    statusSocket: '/var/lib/crosslink/agent.sock',
    healthAddr: null,
    topology: 'mesh',
    gatewayEligible: null,
    persistentKeepalive: null,
    natKeepaliveSec: 25,
    mtu: 'auto',
    resyncIntervalMs: 30_000,
    relayPortBase: 52000,
    relayPortSpan: 1000,
    cleanup: true,
    policyEnforcement: 'best-effort',
    nftCommand: 'nft',
    logLevel: 'info',
    bucket: 'crosslink',
  } satisfies Partial<AgentConfig>);
});

const accepted: { name: string; args?: string[]; env?: Record<string, string>; expect: Partial<AgentConfig> }[] = [
  { name: 'several NATS URLs', args: ['--nats-url', 'nats://a:4222, tls://10.0.0.2:4222'], expect: { natsServers: ['nats://a:4222', 'tls://10.0.0.2:4222'] } },
  { name: 'repeatable and comma lists', args: ['--pod-cidr', '10.1.0.0/24,fd00:1::/64', '--pod-cidr', '10.2.0.0/24'], expect: { podCidrs: ['10.244.1.0/24', '10.1.0.0/24', 'fd00:1::/64', '10.2.0.0/24'] } },
  { name: 'endpoints canonicalised', args: ['--endpoint', '192.0.2.1:51820', '--endpoint', '[2001:db8:0::1]:51820'], expect: { endpoints: ['192.0.2.1:51820', '[2001:db8::1]:51820'] } },
  { name: 'private address', args: ['--private-address', '10.0.0.5'], expect: { privateAddresses: ['10.0.0.5'] } },
  { name: 'state dir moves the socket', args: ['--state-dir', '/tmp/xl-state/'], expect: { stateDir: '/tmp/xl-state', statusSocket: '/tmp/xl-state/agent.sock' } },
  { name: 'explicit socket', args: ['--status-socket', '/run/xl.sock'], expect: { statusSocket: '/run/xl.sock' } },
  { name: 'health addr', args: ['--health-addr', ':9471'], expect: { healthAddr: { host: '0.0.0.0', port: 9471 } } },
  { name: 'health status opt-in', args: ['--health-addr', '127.0.0.1:9471', '--health-status'], expect: { healthStatus: true } },
  { name: 'health addr v6', args: ['--health-addr', '[::1]:9000'], expect: { healthAddr: { host: '::1', port: 9000 } } },
  { name: 'no cleanup', args: ['--no-cleanup'], expect: { cleanup: false } },
  { name: 'gateway eligibility', args: ['--no-gateway-eligible'], expect: { gatewayEligible: false } },
  { name: 'keepalives', args: ['--persistent-keepalive', '15s', '--nat-keepalive', '10'], expect: { persistentKeepalive: 15, natKeepaliveSec: 10 } },
  { name: 'mtu number', args: ['--mtu', '1380'], expect: { mtu: 1380 } },
  { name: 'resync', args: ['--resync-interval', '2m'], expect: { resyncIntervalMs: 120_000 } },
  { name: 'resync in ms', args: ['--resync-interval', '1500ms'], expect: { resyncIntervalMs: 1500 } },
  { name: 'relay range', args: ['--relay-port-range', '40000-40009'], expect: { relayPortBase: 40000, relayPortSpan: 10 } },
  { name: 'topology and backend', args: ['--topology', 'gateway', '--wireguard', 'userspace'], expect: { topology: 'gateway', wireguard: 'userspace' } },
  { name: 'env stands in for flags', env: { CROSSLINK_LISTEN_PORT: '51999', CROSSLINK_ENDPOINT: '198.51.100.7:51999', CROSSLINK_CLEANUP: 'false', CROSSLINK_ZONE: 'a' }, expect: { listenPort: 51999, endpoints: ['198.51.100.7:51999'], cleanup: false, zone: 'a' } },
  { name: 'flag beats env', args: ['--listen-port', '51821'], env: { CROSSLINK_LISTEN_PORT: '51999' }, expect: { listenPort: 51821 } },
  { name: 'NODE_NAME', env: { NODE_NAME: 'worker-7' }, expect: { nodeName: 'worker-7' } },
  { name: 'CROSSLINK_NODE_NAME beats NODE_NAME', env: { NODE_NAME: 'worker-7', CROSSLINK_NODE_NAME: 'n1' }, expect: { nodeName: 'n1' } },
  { name: 'kubernetes forced: no location/pod CIDR needed, health on', args: ['--kubernetes'], expect: { mode: 'kubernetes', healthAddr: { host: '127.0.0.1', port: 9471 } } },
];

for (const row of accepted) {
  test(`accepts: ${row.name}`, (t) => {
    const c = parseAgentConfig([...BASE, ...(row.args ?? [])], ctx(row.env));
    t.like(c, row.expect);
  });
}

test('kubernetes mode without pod CIDRs or location', (t) => {
  const c = parseAgentConfig(['--nats-url', 'n:4222', '--cluster', 'c1', '--coordinator-key', KEY], {
    env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', NODE_NAME: 'k8s-node' },
    hostname: 'x',
    fileExists: () => true,
  });
  t.like(c, { mode: 'kubernetes', nodeName: 'k8s-node', location: null, podCidrs: [] });
});

test('coordinator key from a file', (t) => {
  const args = BASE.filter((a) => a !== '--coordinator-key' && a !== KEY);
  const c = parseAgentConfig([...args, '--coordinator-key-file', '/etc/crosslink/coordinator.pub'], ctx());
  t.is(c.coordinatorKey, null);
  t.is(c.coordinatorKeyFile, '/etc/crosslink/coordinator.pub');
});

const without = (...flags: string[]): string[] => {
  const out: string[] = [];
  for (let i = 0; i < BASE.length; i += 2) if (!flags.includes(BASE[i]!)) out.push(BASE[i]!, BASE[i + 1]!);
  return out;
};

const rejected: { name: string; args: string[]; env?: Record<string, string>; field: RegExp; value: unknown; allowed: RegExp }[] = [
  { name: 'missing nats url', args: without('--nats-url'), field: /^--nats-url$/, value: undefined, allowed: /required/ },
  { name: 'bad nats url', args: [...BASE, '--nats-url', 'nats://bad host'], field: /^--nats-url$/, value: 'nats://bad host', allowed: /NATS URL/ },
  { name: 'missing cluster', args: without('--cluster'), field: /^--cluster$/, value: undefined, allowed: /required/ },
  { name: 'bad cluster', args: [...BASE, '--cluster', 'Prod_1'], field: /^--cluster$/, value: 'Prod_1', allowed: /DNS label/ },
  { name: 'missing location standalone', args: without('--location'), field: /^--location$/, value: undefined, allowed: /standalone/ },
  { name: 'missing pod cidr standalone', args: without('--pod-cidr'), field: /^--pod-cidr$/, value: undefined, allowed: /standalone/ },
  { name: 'pod cidr host bits', args: [...BASE, '--pod-cidr', '10.1.0.1/24'], field: /^--pod-cidr$/, value: '10.1.0.1/24', allowed: /host bits zero/ },
  { name: 'hostname endpoint', args: [...BASE, '--endpoint', 'node.example.com:51820'], field: /^--endpoint$/, value: 'node.example.com:51820', allowed: /IP literal/ },
  { name: 'endpoint port', args: [...BASE, '--endpoint', '192.0.2.1:70000'], field: /^--endpoint$/, value: '192.0.2.1:70000', allowed: /port 1-65535/ },
  { name: 'private address', args: [...BASE, '--private-address', '10.0.0'], field: /^--private-address$/, value: '10.0.0', allowed: /IPv4 or IPv6/ },
  { name: 'listen port', args: [...BASE, '--listen-port', '0'], field: /^--listen-port$/, value: '0', allowed: /1-65535/ },
  { name: 'listen port text', args: [...BASE, '--listen-port', 'abc'], field: /^--listen-port$/, value: 'abc', allowed: /number/ },
  { name: 'long interface', args: [...BASE, '--interface', 'crosslink-too-long0'], field: /^--interface$/, value: 'crosslink-too-long0', allowed: /1-15 characters/ },
  { name: 'interface slash', args: [...BASE, '--interface', 'wg/0'], field: /^--interface$/, value: 'wg/0', allowed: /1-15 characters/ },
  { name: 'relative state dir', args: [...BASE, '--state-dir', 'state'], field: /^--state-dir$/, value: 'state', allowed: /absolute/ },
  { name: 'wireguard mode', args: [...BASE, '--wireguard', 'boringtun'], field: /^--wireguard$/, value: 'boringtun', allowed: /auto, kernel, userspace/ },
  { name: 'no coordinator key', args: without('--coordinator-key'), field: /^--coordinator-key$/, value: undefined, allowed: /required/ },
  { name: 'bad coordinator key', args: [...without('--coordinator-key'), '--coordinator-key', 'abc'], field: /^--coordinator-key$/, value: 'abc', allowed: /32-byte key/ },
  { name: 'both coordinator key forms', args: [...BASE, '--coordinator-key-file', '/k'], field: /^--coordinator-key-file$/, value: '/k', allowed: /not both/ },
  { name: 'long socket path', args: [...BASE, '--status-socket', `/${'s'.repeat(120)}`], field: /^--status-socket$/, value: `/${'s'.repeat(120)}`, allowed: /107 bytes/ },
  { name: 'health addr name', args: [...BASE, '--health-addr', 'example.com:80'], field: /^--health-addr$/, value: 'example.com:80', allowed: /IP literal/ },
  { name: 'topology', args: [...BASE, '--topology', 'star'], field: /^--topology$/, value: 'star', allowed: /mesh, gateway/ },
  { name: 'keepalive too big', args: [...BASE, '--persistent-keepalive', '2h'], field: /^--persistent-keepalive$/, value: '2h', allowed: /0-3600/ },
  { name: 'nat keepalive fraction', args: [...BASE, '--nat-keepalive', '1500ms'], field: /^--nat-keepalive$/, value: '1500ms', allowed: /whole seconds/ },
  { name: 'mtu small', args: [...BASE, '--mtu', '1000'], field: /^--mtu$/, value: '1000', allowed: /"auto" or a whole number 1280-9000/ },
  { name: 'resync too short', args: [...BASE, '--resync-interval', '100ms'], field: /^--resync-interval$/, value: '100ms', allowed: /from 1s to 1h/ },
  { name: 'resync bare number', args: [...BASE, '--resync-interval', '45'], field: /^--resync-interval$/, value: '45', allowed: /^a bare number has no unit: write 45ms or 45s; a duration from 1s to 1h$/ },
  { name: 'relay range reversed', args: [...BASE, '--relay-port-range', '53000-52000'], field: /^--relay-port-range$/, value: '53000-52000', allowed: /first <= last/ },
  { name: 'relay range holds listen port', args: [...BASE, '--relay-port-range', '51000-52000'], field: /^--relay-port-range$/, value: '51000-52000', allowed: /listen-port/ },
  { name: 'log level', args: [...BASE, '--log-level', 'loud'], field: /^--log-level$/, value: 'loud', allowed: /info/ },
  { name: 'node name from hostname must be valid', args: [...BASE, '--node-name', 'Bad_Name'], field: /^--node-name$/, value: 'Bad_Name', allowed: /DNS subdomain/ },
  { name: 'env value names the env var', args: BASE, env: { CROSSLINK_LISTEN_PORT: '99999' }, field: /^CROSSLINK_LISTEN_PORT \(--listen-port\)$/, value: '99999', allowed: /1-65535/ },
  { name: 'env boolean', args: BASE, env: { CROSSLINK_CLEANUP: 'maybe' }, field: /CROSSLINK_CLEANUP/, value: 'maybe', allowed: /true, false/ },
  { name: 'unknown flag', args: [...BASE, '--frobnicate'], field: /^arguments$/, value: [...BASE, '--frobnicate'].join(' '), allowed: /unknown option/ },
  { name: 'too many pod cidrs', args: [...BASE, '--pod-cidr', Array.from({ length: 8 }, (_, i) => `10.${i}.0.0/16`).join(',')], field: /^--pod-cidr$/, value: undefined, allowed: /at most 8/ },
];

for (const row of rejected) {
  test(`rejects: ${row.name}`, (t) => {
    const err = t.throws(() => parseAgentConfig(row.args, ctx(row.env)), { instanceOf: ValidationError });
    t.regex(err.field, row.field);
    if (row.value !== undefined) t.deepEqual(err.value, row.value);
    t.regex(err.allowed, row.allowed);
    // The message carries all three, so a log line alone is enough to fix it.
    t.true(err.message.startsWith(err.field));
  });
}

test('--coordinator-key takes several comma-separated keys (signing-key rotation); the first is the current one', (t) => {
  const second = Buffer.alloc(32, 9).toString('base64');
  const args = BASE.map((a) => (a === KEY ? `${KEY}, ${second}` : a));
  const c = parseAgentConfig(args, ctx());
  t.is(c.coordinatorKey, KEY);
  t.deepEqual(c.coordinatorKeys, [KEY, second]);
  t.false(parseAgentConfig(BASE, ctx()).healthStatus, '/status stays off the health port by default');
  t.throws(() => parseAgentConfig(BASE.map((a) => (a === KEY ? `${KEY},nope` : a)), ctx()), { message: /--coordinator-key/ });
});
