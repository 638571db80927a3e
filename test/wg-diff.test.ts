import test from 'ava';
import type { DesiredPeer } from '../agent/plan/model.ts';
import { diffWireguard, isEmptyWireguardDiff, wireguardCommands } from '../agent/dataplane/wg-diff.ts';
import { parseWgDump, WgDumpParseError, type LiveWireguard } from '../agent/dataplane/wg-dump.ts';

const K1 = 'Qq6sWjQAEIconDnFwaznpJ8MrHkFjPqGbp6z40p6t14=';
const K2 = 'LOgUxyh0pR7yDkEUbOl+H1Bs2CD0JCwHwi8rvFGvmxA=';
const K3 = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const PRIV = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=';

// Realistic `wg show xl0 dump` output (tabs), as wireguard-go prints it.
const DUMP = [
  [PRIV, K1, '51820', 'off'],
  [K2, '(none)', '198.51.100.7:51820', '10.3.0.0/24,100.96.0.3/32', '1700000123', '1234', '5678', '25'],
  [K3, '(none)', '(none)', '(none)', '0', '0', '0', 'off'],
]
  .map((f) => f.join('\t'))
  .join('\n');

test('parseWgDump: interface line (private key dropped), peers with (none)/off values', (t) => {
  const live = parseWgDump(`${DUMP}\n`);
  t.deepEqual(live.interface, { publicKey: K1, listenPort: 51820, fwmark: 0 });
  t.false(JSON.stringify(live).includes(PRIV));
  t.deepEqual(live.peers, [
    { publicKey: K2, endpoint: '198.51.100.7:51820', allowedIps: ['10.3.0.0/24', '100.96.0.3/32'], latestHandshakeAt: 1_700_000_123_000, rxBytes: 1234, txBytes: 5678, persistentKeepalive: 25, hasPresharedKey: false },
    { publicKey: K3, endpoint: null, allowedIps: [], latestHandshakeAt: null, rxBytes: 0, txBytes: 0, persistentKeepalive: 0, hasPresharedKey: false },
  ]);
});

test('parseWgDump: fresh interface without key, IPv6 endpoint, fwmark', (t) => {
  const live = parseWgDump(['(none)\t(none)\t0\t0x10', `${K2}\t(none)\t[2001:db8:0:0::1]:51820\tfd00::/64\t0\t0\t0\toff`].join('\n').replace('0x10', '16'));
  t.is(live.interface.publicKey, null);
  t.is(live.interface.fwmark, 16);
  t.is(live.peers[0]?.endpoint, '[2001:db8::1]:51820');
});

const badDumps: [string, string, RegExp][] = [
  ['empty', '', /empty/],
  ['short header', 'a\tb\t1', /line 1: expected 4/],
  ['short peer line', `${PRIV}\t${K1}\t1\toff\n${K2}\t(none)`, /line 2: expected 8/],
  ['bad number', `${PRIV}\t${K1}\tx\toff`, /listen-port is "x"/],
];
for (const [title, text, message] of badDumps) {
  test(`parseWgDump rejects ${title}`, (t) => {
    const err = t.throws(() => parseWgDump(text), { instanceOf: WgDumpParseError });
    t.regex(err.message, message);
  });
}

function peer(publicKey: string, o: Partial<DesiredPeer> = {}): DesiredPeer {
  return { publicKey, endpoint: null, allowedIps: ['100.96.0.9/32'], persistentKeepalive: 0, node: 'n', cluster: 'c', path: 'direct', via: null, carries: ['n'], ...o };
}

type LivePeerInput = Partial<LiveWireguard['peers'][number]> & { publicKey: string };

function live(peers: LivePeerInput[], listenPort = 51820): LiveWireguard {
  return {
    interface: { publicKey: K1, listenPort, fwmark: 0 },
    peers: peers.map((p) => ({ endpoint: null, allowedIps: ['100.96.0.9/32'], latestHandshakeAt: null, rxBytes: 0, txBytes: 0, persistentKeepalive: 0, hasPresharedKey: false, ...p })),
  };
}

// [title, desired peers, live peers, expected commands]
const table: [string, DesiredPeer[], LivePeerInput[], string[]][] = [
  ['nothing to do', [peer(K2)], [{ publicKey: K2 }], []],
  [
    'a new peer is one command with everything',
    [peer(K2), peer(K3, { endpoint: '203.0.113.1:51820', persistentKeepalive: 25, allowedIps: ['10.9.0.0/24', '100.96.0.10/32'] })],
    [{ publicKey: K2 }],
    [`wg set xl0 peer ${K3} endpoint 203.0.113.1:51820 persistent-keepalive 25 allowed-ips 10.9.0.0/24,100.96.0.10/32`],
  ],
  ['a new NATed peer: no endpoint, keepalive off by default', [peer(K3)], [], [`wg set xl0 peer ${K3} allowed-ips 100.96.0.9/32`]],
  ['a peer leaves', [], [{ publicKey: K2 }], [`wg set xl0 peer ${K2} remove`]],
  [
    'key change: add the new key before removing the old one',
    [peer(K3)],
    [{ publicKey: K2 }],
    [`wg set xl0 peer ${K3} allowed-ips 100.96.0.9/32`, `wg set xl0 peer ${K2} remove`],
  ],
  ['endpoint change sends only the endpoint', [peer(K2, { endpoint: '198.51.100.8:51820' })], [{ publicKey: K2, endpoint: '198.51.100.7:51820' }], [`wg set xl0 peer ${K2} endpoint 198.51.100.8:51820`]],
  ['learned endpoint untouched when desired is null', [peer(K2)], [{ publicKey: K2, endpoint: '192.0.2.77:40123' }], []],
  ['IPv6 endpoint spelled differently is the same', [peer(K2, { endpoint: '[2001:db8:0::1]:51820' })], [{ publicKey: K2, endpoint: '[2001:db8::1]:51820' }], []],
  ['allowed IPs compared as sets', [peer(K2, { allowedIps: ['10.1.0.0/24', '100.96.0.9/32'] })], [{ publicKey: K2, allowedIps: ['100.96.0.9/32', '10.1.0.0/24'] }], []],
  ['CIDR change replaces the allowed-ips list', [peer(K2, { allowedIps: ['10.2.0.0/24', '100.96.0.9/32'] })], [{ publicKey: K2, allowedIps: ['10.1.0.0/24', '100.96.0.9/32'] }], [`wg set xl0 peer ${K2} allowed-ips 10.2.0.0/24,100.96.0.9/32`]],
  ['keepalive off', [peer(K2)], [{ publicKey: K2, persistentKeepalive: 25 }], [`wg set xl0 peer ${K2} persistent-keepalive off`]],
];
for (const [title, desired, livePeers, expected] of table) {
  test(`wg diff: ${title}`, (t) => {
    const diff = diffWireguard({ listenPort: 51820, peers: desired }, live(livePeers));
    const { upserts, removals } = wireguardCommands('xl0', diff);
    t.deepEqual([...upserts, ...removals].map((c) => c.argv.join(' ')), expected);
    t.is(isEmptyWireguardDiff(diff), expected.length === 0);
  });
}

test('wg diff: listen port', (t) => {
  const { upserts } = wireguardCommands('xl0', diffWireguard({ listenPort: 51821, peers: [] }, live([], 51820)));
  t.deepEqual(upserts, [{ op: 'set listen-port', argv: ['wg', 'set', 'xl0', 'listen-port', '51821'] }]);
});

test('wg diff: one peer joining a large mesh costs one command', (t) => {
  const keys = Array.from({ length: 200 }, (_, i) => Buffer.alloc(32, i).toString('base64'));
  const desired = keys.map((k, i) => peer(k, { allowedIps: [`100.96.${i >> 8}.${i & 255}/32`] }));
  const livePeers = desired.slice(1).map((p) => ({ publicKey: p.publicKey, allowedIps: [...p.allowedIps] }));
  const { upserts, removals } = wireguardCommands('xl0', diffWireguard({ listenPort: 51820, peers: desired }, live(livePeers)));
  t.is(upserts.length + removals.length, 1);
  t.is(upserts[0]?.op, 'add peer');
});
