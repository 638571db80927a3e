// assembleStatus: each wanted peer says whether it is on the live interface (`onInterface`), so
// `crosslink status` can exit 1 for a peer removed by hand even while its last probes were answered.
import test from 'ava';
import { assembleStatus, type StatusInputs } from '../agent/status/assemble.ts';
import type { LivePeer } from '../agent/dataplane/wg-dump.ts';
import type { DesiredPeer, DesiredState } from '../agent/plan/model.ts';
import { statusExitCode } from '../cli/format.ts';
import { AgentStatus } from '../protocol/status.ts';

const NOW = 1_700_000_000_000;
const KEY_B = 'B'.repeat(43) + '=';
const KEY_C = 'C'.repeat(43) + '=';

const peer = (node: string, publicKey: string): DesiredPeer => ({
  publicKey,
  endpoint: '192.0.2.2:51820',
  allowedIps: ['10.2.0.0/24'],
  persistentKeepalive: 0,
  node,
  cluster: 'c2',
  path: 'direct',
  via: null,
  carries: [node],
});

const desired: DesiredState = {
  interface: { name: 'crosslink0', listenPort: 51820, mtu: 1420, addresses: ['100.96.0.1/32'] },
  peers: [peer('node-b', KEY_B), peer('node-c', KEY_C)],
  routes: [],
  relays: [],
  remotes: [],
  refused: [],
  isGateway: false,
};

const live = (publicKey: string): LivePeer => ({ publicKey, endpoint: '192.0.2.2:51820', allowedIps: ['10.2.0.0/24'], latestHandshakeAt: NOW - 1000, rxBytes: 10, txBytes: 10, persistentKeepalive: 0, hasPresharedKey: false });

function inputs(l: StatusInputs['live']): StatusInputs {
  const up = { state: 'up' as const, reason: 'answered', target: '100.96.0.2', rttMs: 1, lossPct: 0, window: 10, sent: 10, received: 10, lastReplyAt: NOW, since: NOW - 60_000 };
  return {
    version: '0.1.0',
    identity: { name: 'node-a', cluster: 'c1', location: 'lab', endpoints: [], privateAddresses: [], podCidrs: ['10.1.0.0/24'], topology: 'mesh', gatewayEligible: false },
    publicKey: 'A'.repeat(43) + '=',
    self: null,
    controlPlane: undefined,
    mesh: null,
    watch: undefined,
    desired,
    lastReconcile: null,
    ready: true,
    live: l,
    relayStats: [],
    policy: { mode: 'best-effort', nft: 'unknown', nftError: null, desiredVersion: null, enforcedVersion: null, enforcing: false, blocksTraffic: false, lastAppliedAt: null, lastError: null, rejected: null, drops: [] },
    policyErrors: [],
    dataplane: { backend: 'userspace', interface: 'crosslink0', listenPort: 51820, mtu: 1420, liveMtu: 1420 },
    probes: new Map([
      ['node-b', up],
      ['node-c', up],
    ]),
    controlPlaneHealth: { answering: true, reason: 'ok', heartbeatIntervalMs: 1000, nodeTtlMs: 5000 },
  };
}

test('a wanted peer missing from the live interface: onInterface false, status exit 1 although its probes were answered', (t) => {
  const s = assembleStatus(inputs([live(KEY_B)]));
  t.deepEqual(
    s.peers.map((p) => [p.name, p.onInterface]),
    [
      ['node-b', true],
      ['node-c', false],
    ],
  );
  t.is(statusExitCode(s, NOW), 1);
});

test('every wanted peer live: onInterface true, status exit 0', (t) => {
  const s = assembleStatus(inputs([live(KEY_B), live(KEY_C)]));
  t.true(s.peers.every((p) => p.onInterface === true));
  t.is(statusExitCode(s, NOW), 0);
});

test('live state unreadable: onInterface left out (unknown), the read error is reported instead', (t) => {
  const s = assembleStatus(inputs({ error: 'wg: no such device' }));
  t.true(s.peers.every((p) => p.onInterface === undefined));
  t.true(s.errors.some((e) => e.includes('cannot read WireGuard state: wg: no such device')));
});

test('the control plane\'s heartbeat form reaches the status document (and its schema); none before NATS connected', (t) => {
  const heartbeat = { form: 'signed' as const, coordinatorKey: null, fallback: { code: 'invalid', message: 'not a signed envelope: sig: Required' } };
  const controlPlane = { connected: true, registered: true, record: null, lastHeartbeatAt: NOW, lastError: null, heartbeatIntervalMs: 1000, nodeTtlMs: 5000, revoked: null, heartbeat };
  const s = assembleStatus({ ...inputs([live(KEY_B), live(KEY_C)]), controlPlane });
  t.deepEqual(s.controlPlane.heartbeat, heartbeat);
  t.deepEqual(AgentStatus.parse(JSON.parse(JSON.stringify(s))).controlPlane.heartbeat, heartbeat, 'the CLI reads it back');
  t.false('heartbeat' in assembleStatus(inputs([live(KEY_B)])).controlPlane);
});
