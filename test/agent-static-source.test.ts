// Standalone NodeSource: identity from flags, the default private address read through the Runner.
import test from 'ava';
import { parseAgentConfig } from '../agent/config.ts';
import { createStaticNodeSource, detectPrivateAddresses, identityFromConfig } from '../agent/control/static-source.ts';
import { silentLogger } from '../lib/logger.ts';
import { RecordingRunner } from './helpers/recording-runner.ts';

const KEY = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
const BASE = ['--nats-url', 'n:4222', '--cluster', 'c1', '--location', 'lab', '--pod-cidr', '10.244.1.0/24', '--coordinator-key', KEY, '--node-name', 'node-a'];
const config = (...extra: string[]) => parseAgentConfig([...BASE, ...extra], { env: {}, hostname: 'x', fileExists: () => false });

const detection: { name: string; route: string; addr?: string; want: string[]; calls: string[] }[] = [
  {
    name: 'preferred source of the default route',
    route: '[{"dst":"default","gateway":"10.0.0.1","dev":"eth0","prefsrc":"10.0.0.5"}]',
    want: ['10.0.0.5'],
    calls: ['ip -j route show default'],
  },
  {
    name: 'first global IPv4 of the default device',
    route: '[{"dst":"default","gateway":"10.0.0.1","dev":"ens5","flags":[]}]',
    addr: '[{"ifname":"ens5","addr_info":[{"family":"inet","local":"169.254.1.1","scope":"link"},{"family":"inet","local":"10.1.2.3","prefixlen":24,"scope":"global"}]}]',
    want: ['10.1.2.3'],
    calls: ['ip -j route show default', 'ip -j -4 addr show dev ens5'],
  },
  {
    name: 'multipath default route',
    route: '[{"dst":"default","nexthops":[{"gateway":"10.0.0.1","dev":"eth1"}]}]',
    addr: '[{"ifname":"eth1","addr_info":[{"family":"inet","local":"10.9.0.4","prefixlen":16,"scope":"global"}]}]',
    want: ['10.9.0.4'],
    calls: ['ip -j route show default', 'ip -j -4 addr show dev eth1'],
  },
  { name: 'no default route', route: '[]', want: [], calls: ['ip -j route show default'] },
];

for (const row of detection) {
  test(`detects the private address: ${row.name}`, async (t) => {
    const runner = new RecordingRunner().on(['ip', '-j', 'route', 'show', 'default'], row.route).on(['ip', '-j', '-4', 'addr'], row.addr ?? '[]');
    t.deepEqual(await detectPrivateAddresses(runner), row.want);
    t.deepEqual(runner.transcript(), row.calls);
  });
}

test('identity from flags: defaults for gateway eligibility and keepalive', (t) => {
  t.like(identityFromConfig(config(), ['10.0.0.5']), { name: 'node-a', cluster: 'c1', location: 'lab', endpoints: [], privateAddresses: ['10.0.0.5'], gatewayEligible: false, topology: 'mesh' });
  t.false('persistentKeepalive' in identityFromConfig(config(), []));
  t.false('zone' in identityFromConfig(config(), []));
  t.like(identityFromConfig(config('--endpoint', '192.0.2.1:51820'), []), { gatewayEligible: true });
  t.like(identityFromConfig(config('--endpoint', '192.0.2.1:51820', '--no-gateway-eligible', '--zone', 'z1', '--persistent-keepalive', '0'), []), {
    gatewayEligible: false,
    zone: 'z1',
    persistentKeepalive: 0,
  });
});

test('the source uses flag addresses as given, detecting only without them', async (t) => {
  const runner = new RecordingRunner().on(['ip', '-j', 'route', 'show', 'default'], '[{"dst":"default","dev":"eth0","prefsrc":"10.0.0.5"}]');
  const explicit = createStaticNodeSource({ config: config('--private-address', '10.7.7.7'), runner, logger: silentLogger() });
  t.deepEqual((await explicit.start(new AbortController().signal)).privateAddresses, ['10.7.7.7']);
  t.is(runner.calls.length, 0);
  const detected = createStaticNodeSource({ config: config(), runner, logger: silentLogger() });
  t.deepEqual((await detected.start(new AbortController().signal)).privateAddresses, ['10.0.0.5']);
  // A failing `ip` is not fatal: the node registers without a private address.
  const broken = createStaticNodeSource({ config: config(), runner: new RecordingRunner().respond(() => new Error('ip: not found')), logger: silentLogger() });
  t.deepEqual((await broken.start(new AbortController().signal)).privateAddresses, []);
});
