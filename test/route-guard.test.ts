// The route guard as data: host facts in, accepted routes and refused CIDRs (with reasons) out.
import test from 'ava';
import { createHash } from 'node:crypto';
import { computeDesiredState } from '../agent/plan/desired-state.ts';
import type { DataplaneConfig, MeshView } from '../agent/plan/model.ts';
import type { HostFacts } from '../agent/plan/route-guard.ts';
import { parseHostAddresses, readHostFacts } from '../agent/dataplane/host-facts.ts';
import { RecordingRunner } from './helpers/recording-runner.ts';
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';
import { IpJsonError } from '../agent/dataplane/ip-json.ts';

const key = (name: string): string => createHash('sha256').update(`wg:${name}`).digest('base64');

function node(name: string, cluster: string, overlayIp: string, o: Partial<NodeRecord> = {}): NodeRecord {
  return {
    kind: 'node',
    v: 1,
    name,
    cluster,
    location: cluster,
    publicKey: key(name),
    identityKey: key(`id:${name}`),
    endpoints: [],
    privateAddresses: [],
    podCidrs: [],
    listenPort: 51820,
    topology: 'mesh',
    gatewayEligible: true,
    overlayIp,
    generation: 1,
    registeredAt: 1,
    updatedAt: 1,
    ...o,
  };
}

const config: DataplaneConfig = { interfaceName: 'xl0', listenPort: 51820, mtu: 1420, natKeepaliveSec: 25, relayPortBase: 40000, relayPortSpan: 100 };

const self = node('honest', 'east', '100.96.0.1', { endpoints: ['192.0.2.1:51820'], privateAddresses: ['10.0.0.5'], podCidrs: ['10.1.0.0/24'] });
const friend = node('friend', 'west', '100.96.0.2', { endpoints: ['198.51.100.2:51820'], privateAddresses: ['172.16.0.2'], podCidrs: ['10.2.0.0/24'] });
/** Every CIDR here overlaps something the honest host needs. */
const evil = node('evil', 'west', '100.96.0.3', {
  endpoints: ['198.51.100.3:51820'],
  podCidrs: [
    '203.0.113.10/32', // the NATS server
    '10.0.0.0/24', // the host's own VPC subnet
    '198.51.100.2/32', // another node's endpoint
    '172.16.0.0/24', // another node's private address
    '10.9.0.0/16', // covers the default gateway
    '10.50.0.0/24', // exactly a CNI route someone else owns
    '10.3.0.0/24', // harmless
  ],
});

const host: HostFacts = {
  addresses: [
    { cidr: '10.0.0.5/24', dev: 'eth0' },
    { cidr: '127.0.0.1/8', dev: 'lo' },
  ],
  routes: [
    { dst: '0.0.0.0/0', dev: 'eth1', via: '10.9.0.1', protocol: 'boot', scope: null },
    { dst: '10.0.0.0/24', dev: 'eth0', via: null, protocol: 'kernel', scope: 'link' },
    { dst: '10.50.0.0/24', dev: 'cali1', via: null, protocol: 'bird', scope: null },
    // A broad route of the admin: pod CIDRs inside it are legitimate (more specific).
    { dst: '10.0.0.0/8', dev: 'eth0', via: '10.0.0.254', protocol: 'static', scope: null },
  ],
  natsAddresses: ['203.0.113.10'],
};

const clusters = new Map<string, ClusterRecord>();
const view: MeshView = { self, nodes: new Map([self, friend, evil].map((n) => [n.name, n])), clusters };

test('route guard: every CIDR overlapping the host is refused with its reason; honest ones are routed', (t) => {
  const d = computeDesiredState(view, config, host);
  t.deepEqual(
    d.refused.map((r) => [r.cidr, r.node, r.reason]),
    [
      ['10.0.0.0/24', 'evil', '10.0.0.0/24 overlaps local address 10.0.0.5 (eth0)'],
      ['10.50.0.0/24', 'evil', '10.50.0.0/24 overlaps route 10.50.0.0/24 (proto bird, dev cali1) that Crosslink does not own'],
      ['10.9.0.0/16', 'evil', '10.9.0.0/16 overlaps default gateway 10.9.0.1, dev eth1'],
      ['172.16.0.0/24', 'evil', '172.16.0.0/24 overlaps private address 172.16.0.2 of node friend'],
      ['198.51.100.2/32', 'evil', '198.51.100.2/32 overlaps endpoint 198.51.100.2 of node friend'],
      ['203.0.113.10/32', 'evil', '203.0.113.10/32 overlaps NATS server 203.0.113.10'],
    ],
  );
  const allowed = d.peers.flatMap((p) => p.allowedIps);
  const routed = d.routes.map((r) => r.dst);
  for (const r of d.refused) {
    t.false(allowed.includes(r.cidr), `${r.cidr} is no allowed IP`);
    t.false(routed.includes(r.cidr), `${r.cidr} is not routed`);
  }
  t.deepEqual(d.peers.find((p) => p.node === 'evil')?.allowedIps, ['10.3.0.0/24', '100.96.0.3/32']);
  t.deepEqual(d.peers.find((p) => p.node === 'friend')?.allowedIps, ['10.2.0.0/24', '100.96.0.2/32']);
  t.deepEqual(routed, ['10.2.0.0/24', '10.3.0.0/24', '100.96.0.2/32', '100.96.0.3/32']);
});

test('route guard: a CIDR covering this node\'s own endpoint is refused', (t) => {
  const greedy = node('greedy', 'west', '100.96.0.4', { endpoints: ['198.51.100.4:51820'], podCidrs: ['192.0.2.0/24'] });
  const d = computeDesiredState({ self, nodes: new Map([self, greedy].map((n) => [n.name, n])), clusters }, config, host);
  t.deepEqual(d.refused.map((r) => r.reason), ['192.0.2.0/24 overlaps endpoint 192.0.2.1 of this node']);
});

test('route guard: the unguarded option (tests only) lets everything through — the negative control', (t) => {
  const d = computeDesiredState(view, config, host, { unguarded: true });
  t.deepEqual(d.refused, []);
  t.true(d.routes.some((r) => r.dst === '203.0.113.10/32'));
});

test('route guard: same facts, same output (deterministic)', (t) => {
  t.deepEqual(JSON.stringify(computeDesiredState(view, config, host)), JSON.stringify(computeDesiredState(view, config, host)));
});

test('host facts: read once, our interface and our routes left out', async (t) => {
  const runner = new RecordingRunner()
    .on(['ip', '-j', 'addr', 'show'], JSON.stringify([
      { ifname: 'eth0', addr_info: [{ family: 'inet', local: '10.0.0.5', prefixlen: 24 }] },
      { ifname: 'xl0', addr_info: [{ family: 'inet', local: '100.96.0.1', prefixlen: 32 }] },
    ]))
    .on(['ip', '-j', 'route', 'show', 'table', 'main'], JSON.stringify([
      { dst: 'default', gateway: '10.0.0.1', dev: 'eth0', flags: [] },
      { dst: '10.0.0.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link', flags: [] },
      { dst: '10.2.0.0/24', dev: 'xl0', protocol: '149', scope: 'link', flags: [] },
    ]));
  const facts = await readHostFacts(runner, 'xl0', ['203.0.113.10']);
  t.deepEqual(facts, {
    addresses: [{ cidr: '10.0.0.5/24', dev: 'eth0' }],
    routes: [
      { dst: '0.0.0.0/0', dev: 'eth0', via: '10.0.0.1', protocol: 'boot', scope: null },
      { dst: '10.0.0.0/24', dev: 'eth0', via: null, protocol: 'kernel', scope: 'link' },
    ],
    natsAddresses: ['203.0.113.10'],
  });
  t.deepEqual(runner.transcript(), ['ip -j addr show', 'ip -j route show table main', 'ip -j -6 route show table main']);
  t.deepEqual(parseHostAddresses('', 'xl0'), []);
  t.throws(() => parseHostAddresses('Error: oops', 'xl0'), { instanceOf: IpJsonError, message: /^ip -j addr show: output is not JSON/ });
});
