// The CLI's pure formatting: peer states, ages, bytes, tables, status text, showconf INI, diagnose.
import test from 'ava';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../cli/main.ts';
import { colourText } from '../cli/colour-text.ts';
import { ANSI_COLOUR, NO_COLOUR, stripAnsi } from '../lib/colour.ts';
import type { DesiredState, MeshView } from '../agent/plan/model.ts';
import type { DiagnosticsDocument } from '../protocol/status-api.ts';
import { diagnose, formatChecks, type PathMtuProbe } from '../cli/diagnose.ts';
import type { PingReply } from '../protocol/health.ts';
import {
  endpointText,
  formatNodeTable,
  formatPeerTable,
  formatStatus,
  peerPathText,
  peerState,
  remotePathText,
  statusExitCode,
} from '../cli/format.ts';
import { formatAge, formatBytes, renderTable } from '../lib/text-format.ts';
import { renderWgConf } from '../cli/showconf.ts';
import type { NodeRecord } from '../protocol/messages.ts';
import type { AgentStatus, PeerStatus } from '../protocol/status.ts';

const NOW = 1_700_000_000_000;
const KEY_A = 'A'.repeat(43) + '=';
const KEY_B = 'B'.repeat(43) + '=';

// [latest handshake, keepalive s, tx bytes] → state
const peerStates: [number | null, number, number, PeerState][] = [
  [null, 25, 148, 'never'],
  [0, 25, 0, 'never'],
  [NOW - 1000, 25, 500, 'up'],
  [NOW - 179_999, 0, 500, 'up'],
  [NOW - 180_000, 25, 500, 'stale'],
  [NOW - 3_600_000, 25, 500, 'stale'],
  // No keepalive: WireGuard handshakes only when there is traffic.
  [null, 0, 0, 'idle'],
  [null, 0, 148, 'never'],
  [NOW - 3_600_000, 0, 500, 'idle'],
];
type PeerState = ReturnType<typeof peerState>;
for (const [at, keepalive, tx, want] of peerStates) {
  test(`peerState(${at === null ? 'null' : NOW - at} ms ago, keepalive ${keepalive}, tx ${tx}) = ${want}`, (t) =>
    t.is(peerState({ latestHandshakeAt: at, persistentKeepalive: keepalive, txBytes: tx }, NOW), want));
}

const ages: [number | null, string][] = [
  [null, 'never'],
  [NOW + 5000, 'just now'],
  [NOW - 4000, '4s ago'],
  [NOW - 119_000, '119s ago'],
  [NOW - 180_000, '3m ago'],
  [NOW - 7_200_000, '2h ago'],
  [NOW - 5 * 86_400_000, '5d ago'],
];
for (const [at, want] of ages) test(`formatAge → ${want}`, (t) => t.is(formatAge(at, NOW), want));

const bytes: [number, string][] = [
  [0, '0 B'],
  [1023, '1023 B'],
  [1024, '1.0 KiB'],
  [1536, '1.5 KiB'],
  [5 * 1024 * 1024, '5.0 MiB'],
  [3 * 1024 ** 4, '3.0 TiB'],
];
for (const [n, want] of bytes) test(`formatBytes(${n}) = ${want}`, (t) => t.is(formatBytes(n), want));

const endpoints: [string | null, string | null, string][] = [
  ['192.0.2.1:51820', null, '192.0.2.1:51820'],
  ['192.0.2.1:51820', '192.0.2.1:51820', '192.0.2.1:51820'],
  ['192.0.2.1:51820', '203.0.113.9:4500', '192.0.2.1:51820 (now 203.0.113.9:4500)'],
  [null, '203.0.113.9:4500', '203.0.113.9:4500 (learned)'],
  [null, null, '(none yet)'],
];
for (const [configured, live, want] of endpoints) {
  test(`endpointText(${configured}, ${live})`, (t) => t.is(endpointText({ configuredEndpoint: configured, endpoint: live }), want));
}

const paths: [Pick<PeerStatus, 'path' | 'via' | 'carries'>, string][] = [
  [{ path: 'direct', via: null, carries: ['b'] }, 'direct'],
  [{ path: 'relay', via: 'r1', carries: ['b'] }, 'relay via r1'],
  [{ path: 'gateway', via: null, carries: ['g', 'x', 'y'] }, 'gateway (3 nodes)'],
];
for (const [p, want] of paths) test(`peerPathText → ${want}`, (t) => t.is(peerPathText(p), want));

const remotes: [Parameters<typeof remotePathText>[0], string][] = [
  [{ node: 'b', cluster: 'c2', path: 'direct', via: null, reason: null }, 'direct'],
  [{ node: 'b', cluster: 'c2', path: 'relay', via: 'r', reason: null }, 'via relay r'],
  [{ node: 'b', cluster: 'c2', path: 'gateway', via: 'g', reason: null }, 'via gateway g'],
  [{ node: 'b', cluster: 'c2', path: 'local-gateway', via: 'lg', reason: null }, 'via local gateway lg'],
  [{ node: 'b', cluster: 'c2', path: 'none', via: null, reason: 'both behind NAT' }, 'none: both behind NAT'],
];
for (const [r, want] of remotes) test(`remotePathText → ${want}`, (t) => t.is(remotePathText(r), want));

test('renderTable pads columns and trims line ends', (t) => {
  t.is(renderTable(['A', 'BB', 'C'], [['xxx', 'y', ''], ['z', 'wwww', 'v']]), ['A    BB    C', 'xxx  y', 'z    wwww  v'].join('\n'));
});

function peer(overrides: Partial<PeerStatus>): PeerStatus {
  return {
    name: 'node-b',
    cluster: 'c2',
    location: 'lab',
    publicKey: KEY_B,
    path: 'direct',
    via: null,
    configuredEndpoint: '192.0.2.2:51820',
    endpoint: '192.0.2.2:51820',
    allowedIps: ['10.245.0.0/24', '100.96.0.2/32'],
    latestHandshakeAt: NOW - 5000,
    rxBytes: 2048,
    txBytes: 100,
    persistentKeepalive: 0,
    carries: ['node-b'],
    ...overrides,
  };
}

function status(overrides: Partial<AgentStatus> = {}): AgentStatus {
  return {
    version: '0.1.0',
    node: {
      name: 'node-a',
      cluster: 'c1',
      location: 'lab',
      publicKey: KEY_A,
      overlayIp: '100.96.0.1',
      endpoints: ['192.0.2.1:51820'],
      privateAddresses: ['10.0.0.1'],
      podCidrs: ['10.244.0.0/24'],
      topology: 'mesh',
      isGateway: false,
      isRelay: false,
    },
    controlPlane: { connected: true, registered: true, lastHeartbeatAt: NOW - 2000, lastError: null, knownNodes: 2 },
    dataplane: { backend: 'userspace', interface: 'crosslink0', listenPort: 51820, mtu: 1420 },
    lastReconcile: { at: NOW - 1000, ok: true, changes: 2, durationMs: 40, error: null },
    ready: true,
    peers: [peer({})],
    remotes: [{ node: 'node-b', cluster: 'c2', path: 'direct', via: null, reason: null }],
    refusedRoutes: [],
    relays: [],
    errors: [],
    ...overrides,
  };
}

test('status text says how the agent heartbeats: MAC with the agreed coordinator key, or signed and why (the refusal); nothing from an older agent', (t) => {
  const cp = status().controlPlane;
  const mac = formatStatus(status({ controlPlane: { ...cp, heartbeat: { form: 'mac', coordinatorKey: KEY_A, fallback: null } } }), NOW);
  t.regex(mac, new RegExp(`^Heartbeats: +MAC \\(key agreed with coordinator key ${KEY_A.replace(/[+/]/g, '\\$&')}\\)$`, 'm'));
  const refusal = { code: 'unauthorized', message: 'coordinatorKey: the MAC was made for coordinator key AAAA, but this coordinator\'s key is BBBB' };
  const signed = formatStatus(status({ controlPlane: { ...cp, heartbeat: { form: 'signed', coordinatorKey: null, fallback: refusal } } }), NOW);
  t.regex(signed, /^Heartbeats: +signed: the coordinator refused the MAC \(unauthorized: coordinatorKey: the MAC was made for coordinator key AAAA, but this coordinator's key is BBBB\); MAC again after the next registration$/m);
  t.regex(formatStatus(status({ controlPlane: { ...cp, heartbeat: { form: 'signed', coordinatorKey: null, fallback: null } } }), NOW), /^Heartbeats: +signed \(no MAC key agreed\)$/m);
  t.notRegex(formatStatus(status(), NOW), /^Heartbeats:/m, 'an agent older than the field: no line');
});

test('peer table', (t) => {
  const text = formatPeerTable(
    [peer({}), peer({ name: 'node-c', cluster: 'c3', path: 'relay', via: 'node-r', configuredEndpoint: '198.51.100.1:52001', endpoint: null, latestHandshakeAt: null, rxBytes: 0, txBytes: 0, persistentKeepalive: 25 })],
    NOW,
  );
  t.is(
    text,
    [
      'PEER    CLUSTER  PATH              ENDPOINT            HANDSHAKE  RX       TX     STATE',
      'node-b  c2       direct            192.0.2.2:51820     5s ago     2.0 KiB  100 B  up',
      'node-c  c3       relay via node-r  198.51.100.1:52001  never      0 B      0 B    never',
    ].join('\n'),
  );
  t.is(formatPeerTable([], NOW), 'No peers.');
});

test('status text names every part and lists problems', (t) => {
  const text = formatStatus(status({ errors: ['heartbeat failed: timeout'], relays: [{ port: 52001, between: ['x', 'y'], packets: 3, bytes: 300 }] }), NOW);
  for (const want of [
    /^Node: +node-a \(cluster c1, location lab\)$/m,
    /^Overlay IP: +100\.96\.0\.1$/m,
    /^Data plane: +userspace WireGuard on crosslink0, port 51820, MTU 1420$/m,
    /^Control plane: +connected, registered, last heartbeat 2s ago, 2 nodes known$/m,
    /^Last reconcile: +ok 1s ago \(2 changes, 40 ms\)$/m,
    /^Ready: +yes$/m,
    /^Peers: +1\/1 up$/m,
    /^REMOTE +CLUSTER +PATH$/m,
    /^52001 +x <-> y +3 +300 B$/m,
    /^ {2}- heartbeat failed: timeout$/m,
  ]) {
    t.regex(text, want);
  }
  const bad = formatStatus(status({ lastReconcile: { at: NOW - 1000, ok: false, changes: 0, durationMs: 5, error: 'wg set failed' }, controlPlane: { connected: false, registered: false, lastHeartbeatAt: null, lastError: 'x', knownNodes: 0 }, node: { ...status().node, overlayIp: null, endpoints: [] } }), NOW);
  t.regex(bad, /Last reconcile: +FAILED 1s ago: wg set failed/);
  t.regex(bad, /Control plane: +DISCONNECTED, NOT registered, last heartbeat never, 0 nodes known/);
  t.regex(bad, /Overlay IP: +\(none: not registered\)/);
  t.regex(bad, /Endpoints: +\(none: behind NAT\)/);
});

const exitCodes: [string, AgentStatus, 0 | 1][] = [
  ['ready, all up', status(), 0],
  ['ready, no peers', status({ peers: [] }), 0],
  ['a stale peer', status({ peers: [peer({}), peer({ name: 'node-c', latestHandshakeAt: NOW - 400_000, persistentKeepalive: 25 })] }), 1],
  ['an idle peer (no keepalive, no traffic yet) is healthy', status({ peers: [peer({}), peer({ name: 'node-c', latestHandshakeAt: null, txBytes: 0 })] }), 0],
  ['a peer never seen', status({ peers: [peer({ latestHandshakeAt: null })] }), 1],
  ['not ready', status({ ready: false }), 1],
  ['a peer missing from the live interface (removed by hand), probes still up', status({ peers: [peer({ onInterface: false, probe: { state: 'up', reason: 'answered', target: '100.96.0.2', rttMs: 1, lossPct: 0, window: 10, sent: 10, received: 10, lastReplyAt: NOW, since: NOW - 60_000 } })] }), 1],
  ['every peer on the interface', status({ peers: [peer({ onInterface: true })] }), 0],
  ['live MTU changed by hand', status({ dataplane: { ...status().dataplane, mtu: 1420, liveMtu: 1280 } }), 1],
  ['live MTU unreadable (interface gone)', status({ dataplane: { ...status().dataplane, mtu: 1420, liveMtu: null } }), 1],
  ['live MTU as configured', status({ dataplane: { ...status().dataplane, mtu: 1420, liveMtu: 1420 } }), 0],
];
for (const [name, s, code] of exitCodes) test(`status exit code: ${name}`, (t) => t.is(statusExitCode(s, NOW), code));

test('status names the live drift that makes it exit 1: MTU changed, a peer missing from the interface', (t) => {
  const text = formatStatus(status({ dataplane: { ...status().dataplane, mtu: 1420, liveMtu: 1280 }, peers: [peer({ onInterface: false })] }), NOW);
  t.regex(text, /^ {2}- interface MTU is 1280, configured 1420 \(changed by hand\? the agent sets it back\)$/m);
  t.regex(text, /^ {2}- node-b: not on the interface \(wanted but missing live; the agent re-adds it\)$/m);
});

test('node table flags refused records', (t) => {
  const text = formatNodeTable([
    { key: 'nodes.a', name: 'a', cluster: 'c1', location: 'lab', overlayIp: '100.96.0.1', endpoints: [], podCidrs: ['10.1.0.0/24'], gateway: 'active', problem: null },
    { key: 'nodes.evil', name: 'evil', cluster: '', location: '', overlayIp: '', endpoints: [], podCidrs: [], gateway: '', problem: 'signature does not verify' },
  ]);
  t.regex(text, /^a +c1 +lab +100\.96\.0\.1 +\(NAT\) +10\.1\.0\.0\/24 +active +✓ verified$/m);
  t.regex(text, /^evil +\? .*✗ REFUSED$/m);
  t.regex(text, /✗ nodes\.evil: signature does not verify/);
  t.is(formatNodeTable([]), 'No nodes registered.');
});

const desired: DesiredState = {
  interface: { name: 'crosslink0', listenPort: 51820, mtu: 1420, addresses: ['100.96.0.1/32'] },
  peers: [
    { publicKey: KEY_B, endpoint: '192.0.2.2:51820', allowedIps: ['10.245.0.0/24', '100.96.0.2/32'], persistentKeepalive: 0, node: 'node-b', cluster: 'c2', path: 'direct', via: null, carries: ['node-b'] },
    { publicKey: 'C'.repeat(43) + '=', endpoint: '198.51.100.1:52001', allowedIps: ['10.246.0.0/24'], persistentKeepalive: 25, node: 'node-c', cluster: 'c3', path: 'relay', via: 'node-r', carries: ['node-c'] },
  ],
  routes: [{ dst: '10.245.0.0/24', dev: 'crosslink0' }, { dst: '10.9.0.0/24', via: '10.0.0.9' }],
  refused: [],
  relays: [{ port: 52001, a: { node: 'x', publicKey: KEY_A }, b: { node: 'y', publicKey: KEY_B } }],
  remotes: [
    { node: 'node-b', cluster: 'c2', path: 'direct', via: null, reason: null },
    { node: 'node-d', cluster: 'c4', path: 'none', via: null, reason: 'both behind NAT, no relay' },
  ],
  isGateway: false,
};

test('showconf renders wg-quick INI without a private key', (t) => {
  const text = renderWgConf(desired, { node: 'node-a', cluster: 'c1', source: 'the agent at /s' });
  t.is(
    text,
    `# crosslink showconf: node-a (cluster c1), computed from the verified view of the agent at /s
[Interface]
# PrivateKey = <not shown: it stays in the node's state dir (wireguard.key)>
Address = 100.96.0.1/32
ListenPort = 51820
MTU = 1420

[Peer]
# node-b (cluster c2), path direct
PublicKey = ${KEY_B}
AllowedIPs = 10.245.0.0/24, 100.96.0.2/32
Endpoint = 192.0.2.2:51820

[Peer]
# node-c (cluster c3), path relay via relay node-r
PublicKey = ${'C'.repeat(43)}=
AllowedIPs = 10.246.0.0/24
Endpoint = 198.51.100.1:52001
PersistentKeepalive = 25

# Routes the agent maintains (ip route … proto 149):
#   10.245.0.0/24 dev crosslink0
#   10.9.0.0/24 via 10.0.0.9

# Relay ports this node forwards for NATed pairs:
#   udp 52001: x <-> y

# Unreachable remote nodes:
#   node-d (cluster c4): both behind NAT, no relay
`,
  );
  t.false(/^PrivateKey/m.test(text));
});

// ---- diagnose ----

function record(name: string, cluster: string, overlayIp: string, podCidr: string): NodeRecord {
  return {
    kind: 'node', v: 1, name, cluster, location: 'lab', publicKey: name === 'node-b' ? KEY_B : KEY_A, identityKey: KEY_A,
    endpoints: ['192.0.2.2:51820'], privateAddresses: [], podCidrs: [podCidr], listenPort: 51820, topology: 'mesh',
    gatewayEligible: true, overlayIp, generation: 1, registeredAt: NOW, updatedAt: NOW,
  };
}

const self = record('node-a', 'c1', '100.96.0.1', '10.244.0.0/24');
const nodeB = record('node-b', 'c2', '100.96.0.2', '10.245.0.0/24');
const view: MeshView = { self, nodes: new Map([['node-a', self], ['node-b', nodeB]]), clusters: new Map() };
const desiredB: DesiredState = { ...desired, peers: [desired.peers[0]!], routes: [{ dst: '10.245.0.0/24', dev: 'crosslink0' }, { dst: '100.96.0.2/32', dev: 'crosslink0' }], relays: [], remotes: [desired.remotes[0]!] };
const livePeer = { publicKey: KEY_B, endpoint: '192.0.2.2:51820', allowedIps: ['10.245.0.0/24', '100.96.0.2/32'], latestHandshakeAt: NOW - 5000, rxBytes: 1000, txBytes: 10 };
const healthy: DiagnosticsDocument = {
  interface: 'crosslink0',
  livePeers: [livePeer],
  livePeersError: null,
  liveRoutes: [{ dst: '10.245.0.0/24', dev: 'crosslink0', via: null }, { dst: '100.96.0.2/32', dev: 'crosslink0', via: null }],
  liveRoutesError: null,
};
const later: DiagnosticsDocument = { ...healthy, livePeers: [{ ...livePeer, rxBytes: 1200 }] };

const diagnoseCases: { name: string; input: Partial<Parameters<typeof diagnose>[0]>; failing: RegExp[]; ok: boolean }[] = [
  { name: 'healthy', input: {}, failing: [], ok: true },
  { name: 'disconnected and unregistered', input: { status: status({ controlPlane: { connected: false, registered: false, lastHeartbeatAt: null, lastError: 'timeout', knownNodes: 0 } }) }, failing: [/connected to NATS/, /registered with the coordinator/], ok: false },
  { name: 'no view', input: { view: null, desired: null }, failing: [/verified view of the mesh/, /node-b: record verified/], ok: false },
  { name: 'peer missing from WireGuard', input: { before: { ...healthy, livePeers: [] }, after: { ...healthy, livePeers: [] } }, failing: [/node-b: WireGuard peer configured.*missing/], ok: false },
  { name: 'no handshake', input: { before: { ...healthy, livePeers: [{ ...livePeer, latestHandshakeAt: null }] } }, failing: [/node-b: handshake recent: no handshake yet/], ok: false },
  { name: 'route deleted by hand', input: { before: { ...healthy, liveRoutes: [{ dst: '100.96.0.2/32', dev: 'crosslink0', via: null }] } }, failing: [/node-b: routes: missing 10\.245\.0\.0\/24 dev crosslink0/], ok: false },
  { name: 'nothing received', input: { after: healthy }, failing: [/node-b: receiving: no bytes received in 3s/], ok: false },
  { name: 'no path', input: { status: status({ remotes: [{ node: 'node-b', cluster: 'c2', path: 'none', via: null, reason: 'both behind NAT' }] }) }, failing: [/node-b: path: none: both behind NAT/], ok: false },
  { name: 'unknown --peer', input: { target: 'node-z' }, failing: [/node-z: known to this agent: not in the verified view/], ok: false },
];

for (const c of diagnoseCases) {
  test(`diagnose: ${c.name}`, (t) => {
    const result = diagnose({ status: status(), view, desired: desiredB, before: healthy, after: later, intervalMs: 3000, now: NOW, ...c.input });
    const text = formatChecks(result.checks);
    t.is(result.ok, c.ok, text);
    const failed = result.checks.filter((x) => x.ok === false).map((x) => `${x.label}: ${x.detail}`);
    t.is(failed.length, c.failing.length, text);
    for (const f of c.failing) t.true(failed.some((line) => f.test(line)), `${f} in\n${text}`);
    for (const x of result.checks.filter((y) => y.ok === false)) t.truthy(x.hint, `${x.label} has a hint`);
  });
}

test('diagnose output: one line per check, hints indented', (t) => {
  const result = diagnose({ status: status(), view, desired: desiredB, before: { ...healthy, livePeers: [{ ...livePeer, latestHandshakeAt: null }] }, after: null, intervalMs: 0, now: NOW });
  const text = formatChecks(result.checks);
  t.regex(text, /^✓ connected to NATS: /m);
  t.regex(text, /^✗ node-b: handshake recent: no handshake yet\n {4}hint: can UDP reach 192\.0\.2\.2:51820\?/m);
  t.regex(text, /^- node-b: receiving: single sample/m);
});

// peer.pmtu judges size only when a small control probe sent at the same moment came back: on a
// loaded host both can be lost, and that is loss (peer.probe's verdict), not a path-MTU problem.
const probeUp = { state: 'up' as const, reason: 'answered', target: '100.96.0.2', rttMs: 1, lossPct: 0, window: 10, sent: 10, received: 10, lastReplyAt: NOW, since: NOW - 60_000 };
const reply = (received: number): PingReply => ({ target: 'node-b', node: 'node-b', overlayIp: '100.96.0.2', path: 'direct', via: null, pathText: 'direct', sent: 3, received, rttMs: [], pod: null, summary: '', ok: received > 0 });
const pmtuCases: [string, PathMtuProbe, boolean | null, boolean][] = [
  ['full-size answered', { full: reply(1), small: reply(3) }, true, true],
  ['full-size lost, small control answered: the path is too small', { full: reply(0), small: reply(3) }, false, false],
  ['both lost: not judged (loss, not size)', { full: reply(0), small: reply(0) }, null, true],
  ['full-size could not be sent, control answered', { full: null, small: reply(2) }, false, false],
  ['neither could be sent', { full: null, small: null }, null, true],
];
for (const [name, probe, checkOk, resultOk] of pmtuCases) {
  test(`diagnose peer.pmtu: ${name}`, (t) => {
    const st = status({ peers: [peer({ probe: probeUp })], dataplane: { ...status().dataplane, liveMtu: 1420 } });
    const result = diagnose({ status: st, view, desired: desiredB, before: healthy, after: later, intervalMs: 3000, now: NOW, pmtu: new Map([['node-b', probe]]) });
    const check = result.checks.find((c) => c.id === 'peer.pmtu');
    t.is(check?.ok, checkOk, formatChecks(result.checks));
    t.is(result.ok, resultOk);
  });
}

test('colour: status, peers and diagnose marks on a palette; the plain palette leaves the text as it was', (t) => {
  const text = formatStatus(status({ ready: false, peers: [peer({}), peer({ name: 'node-c', latestHandshakeAt: NOW - 400_000, persistentKeepalive: 25 })] }), NOW);
  t.is(colourText(text, NO_COLOUR), text);
  const c = colourText(text, ANSI_COLOUR);
  t.is(stripAnsi(c), text, 'colour never changes the text or its alignment');
  const has = (text: string, start: string, end: string): boolean => text.split('\n').some((l) => l.startsWith(start) && l.endsWith(end));
  t.true(has(c, 'Ready:', ANSI_COLOUR.red('no')));
  t.true(has(c, 'node-b ', ` ${ANSI_COLOUR.green('up')}`));
  t.true(has(c, 'node-c ', ` ${ANSI_COLOUR.red('stale')}`));
  t.true(c.split('\n').includes(ANSI_COLOUR.yellow('  - node-c: stale')));
  const checks = formatChecks([{ ok: true, label: 'a', detail: 'fine' }, { ok: false, label: 'b', detail: 'broken', hint: 'fix it' }, { ok: null, label: 'c', detail: 'skipped' }]);
  const cc = colourText(checks, ANSI_COLOUR);
  t.is(stripAnsi(cc), checks);
  const ccLines = cc.split('\n');
  t.true(ccLines.includes(`${ANSI_COLOUR.green('✓')} a: fine`));
  t.true(ccLines.includes(`${ANSI_COLOUR.red('✗')} b: broken`));
  t.true(ccLines.includes(ANSI_COLOUR.yellow('    hint: fix it')));
  t.true(ccLines.includes(`${ANSI_COLOUR.yellow('-')} c: skipped`));
});

test('colour through the CLI: on for a terminal, off with NO_COLOR, --no-color or when not a terminal (status, peers)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xl-colour-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socket = join(dir, 'agent.sock');
  const body = JSON.stringify(status({ peers: [peer({})] }));
  const server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(body));
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const run = async (args: string[], o: { isTTY: boolean; env?: Record<string, string> }): Promise<string> => {
    let out = '';
    await runCli(args, { stdout: (s) => (out += s), stderr: () => undefined, env: o.env ?? {}, now: () => NOW, isTTY: o.isTTY });
    return out;
  };
  for (const cmd of ['status', 'peers']) {
    t.true((await run([cmd, '--socket', socket], { isTTY: true })).includes(ANSI_COLOUR.green('up')), `${cmd} on a terminal`);
    t.false((await run([cmd, '--socket', socket], { isTTY: true, env: { NO_COLOR: '1' } })).includes('\u001b['), `${cmd} NO_COLOR`);
    t.false((await run(['--no-color', cmd, '--socket', socket], { isTTY: true })).includes('\u001b['), `${cmd} --no-color`);
    t.false((await run([cmd, '--socket', socket], { isTTY: false })).includes('\u001b['), `${cmd} piped`);
  }
});
