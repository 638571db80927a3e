// Pure lab core: topology validation, the network plan, process command lines, convergence and the
// mesh summary. No root needed.
import { readFileSync } from 'node:fs';
import test from 'ava';
import { ValidationError } from '../lib/errors.ts';
import { agentArgv, clusterAddArgv, coordinatorArgv, natsArgv } from '../lab/commands.ts';
import { checkNatsServerCount } from '../lab/nats-plan.ts';
import { checkConvergence, type StatusOrError } from '../lab/converge.ts';
import { checkLabId, labIdOfNamespace, wireguardInterfaceName, wireguardSocketPattern } from '../lab/names.ts';
import { planLab } from '../lab/plan.ts';
import { formatSummary, meshSummary } from '../lab/summary.ts';
import { parseTopology } from '../lab/topology.ts';
import type { AgentStatus } from '../protocol/status.ts';

const defaultYaml = readFileSync(new URL('../lab/topologies/default.yaml', import.meta.url), 'utf8');
const twoNodesYaml = readFileSync(new URL('../lab/topologies/two-nodes.yaml', import.meta.url), 'utf8');

test('the default topology: 5 clouds, one behind NAT with one node, a gateway cloud', (t) => {
  const topo = parseTopology(defaultYaml);
  t.deepEqual(
    topo.clouds.map((c) => [c.name, c.edge, c.topology, c.nodes.length]),
    [
      ['aws', 'public', 'mesh', 2],
      ['azure', 'public', 'mesh', 1],
      ['gcp', 'public', 'gateway', 2],
      ['onprem', 'nat', 'mesh', 2],
      ['edge', 'nat', 'mesh', 1],
    ],
  );
  t.is(topo.timers.nodeTtlMs, 5000);
  t.true(Object.isFrozen(topo.clouds[0]?.nodes[0]));
});

const invalid: [string, string, RegExp][] = [
  ['unknown edge kind', 'clouds:\n  - { name: aws, edge: natt, nodes: [ {} ] }', /clouds\[0\]\.edge: "natt" is not valid/],
  ['bad cloud name', 'clouds:\n  - { name: AWS, edge: nat, nodes: [ {} ] }', /clouds\[0\]\.name: "AWS".*lowercase/],
  ['no nodes', 'clouds:\n  - { name: aws, edge: nat, nodes: [] }', /clouds\[0\]\.nodes/],
  ['unknown key', 'clouds:\n  - { name: aws, edge: nat, nodes: [ {} ], color: red }', /unknown key\(s\) color/],
  ['too many pods', 'clouds:\n  - { name: aws, edge: nat, nodes: [ { pods: 9 } ] }', /clouds\[0\]\.nodes\[0\]\.pods: 9/],
  ['duplicate cloud', 'clouds:\n  - { name: a, edge: nat, nodes: [ {} ] }\n  - { name: a, edge: nat, nodes: [ {} ] }', /clouds\[1\]\.name: "a".*unique/],
  [
    'overlapping pod CIDRs',
    'clouds:\n  - { name: a, edge: nat, nodes: [ { podCidr: 10.9.0.0/16 }, { podCidr: 10.9.1.0/24 } ] }',
    /nodes\[1\]\.podCidr: "10\.9\.1\.0\/24".*must not overlap clouds\[0\]\.nodes\[0\]\.podCidr/,
  ],
  ['public internet range', 'internet: { cidr: 8.8.8.0/24 }\nclouds:\n  - { name: a, edge: nat, nodes: [ {} ] }', /internet\.cidr: "8\.8\.8\.0\/24".*documentation range/],
  ['public VPC', 'clouds:\n  - { name: a, edge: nat, vpc: 8.8.8.0/24, nodes: [ {} ] }', /clouds\[0\]\.vpc: "8\.8\.8\.0\/24".*private range/],
  [
    'gateway cloud without an eligible node',
    'clouds:\n  - { name: a, edge: public, topology: gateway, nodes: [ { gatewayEligible: false } ] }',
    /needs at least one gatewayEligible node/,
  ],
  ['bad duration', 'timers: { nodeTtl: soon }\nclouds:\n  - { name: a, edge: nat, nodes: [ {} ] }', /timers\.nodeTtl: "soon".*duration/],
  ['bare-number duration', 'timers: { nodeTtl: 5 }\nclouds:\n  - { name: a, edge: nat, nodes: [ {} ] }', /timers\.nodeTtl: .*5.*a bare number is refused/],
  ['not YAML', 'clouds: [', /must be valid YAML/],
];
for (const [what, yaml, message] of invalid) {
  test(`topology rejected: ${what}`, (t) => {
    const err = t.throws(() => parseTopology(yaml, 'x.yaml'), { instanceOf: ValidationError });
    t.regex(err.message, message);
    t.true(err.message.startsWith('x.yaml: '));
  });
}

test('lab ids are short and namespace-safe', (t) => {
  t.is(checkLabId('t1a2b3'), 't1a2b3');
  for (const bad of ['', 'toolong7', 'A', 'a-b']) t.throws(() => checkLabId(bad), { instanceOf: ValidationError });
  t.is(labIdOfNamespace('xl-t1a2b3-aws-n1-p1'), 't1a2b3');
  t.is(labIdOfNamespace('other-ns'), undefined);
  t.true(wireguardSocketPattern('lab').test('xllabw12.sock'));
  t.false(wireguardSocketPattern('lab').test('xllabw1w1.sock'));
});

test('plan: every namespace unique and prefixed, every interface name ≤ 15 characters, WireGuard names unique', (t) => {
  const plan = planLab(parseTopology(defaultYaml), 'abcdef');
  t.is(new Set(plan.namespaces).size, plan.namespaces.length);
  for (const ns of plan.namespaces) t.true(ns.startsWith('xl-abcdef-'), ns);
  t.is(plan.nodes.length, 8);
  t.is(plan.pods.length, 16);
  const ifnames = plan.createLinks.flatMap((b) => b.lines.flatMap((l) => [...l.matchAll(/(?:add|name) (\S+) type/g)].map((m) => m[1] ?? '')));
  for (const n of [...ifnames, ...plan.nodes.map((n) => n.wgInterface)]) t.true(n.length <= 15, n);
  t.is(new Set(plan.nodes.map((n) => n.wgInterface)).size, 8);
  t.is(wireguardInterfaceName('abcdef', 99), 'xlabcdefw99');
});

test('plan: addresses of the two-node lab', (t) => {
  const plan = planLab(parseTopology(twoNodesYaml), 't1');
  const [east, west] = plan.nodes;
  t.like(east, { name: 'east-n1', ns: 'xl-t1-east-n1', vpcIp: '172.16.1.11', publicIp: '198.51.100.11', podCidr: '10.1.1.0/24', wgInterface: 'xlt1w1' });
  t.like(west, { name: 'west-n1', vpcIp: '172.16.2.11', publicIp: '198.51.100.21', podCidr: '10.2.1.0/24', wgInterface: 'xlt1w2' });
  t.like(plan.pods[0], { name: 'east-n1-p1', ns: 'xl-t1-east-n1-p1', ip: '10.1.1.2' });
  t.is(plan.natsUrl, 'nats://203.0.113.2:4222');
  const edge = plan.configure.find((b) => b.ns === 'xl-t1-east-edge');
  t.truthy(edge?.lines.includes('addr add 198.51.100.11/32 dev wan'));
  t.truthy(edge?.lines.includes('route add 10.1.1.0/24 via 172.16.1.11'));
  t.regex(plan.natRules[0]?.rules ?? '', /-A PREROUTING -d 198\.51\.100\.11\/32 -j DNAT --to-destination 172\.16\.1\.11/);
});

test('plan: NAT clouds masquerade and get no public address; same-cloud pod routes go over the VPC', (t) => {
  const plan = planLab(parseTopology(defaultYaml), 'x');
  const onprem = plan.clouds.find((c) => c.name === 'onprem');
  t.deepEqual(
    onprem?.nodes.map((n) => n.publicIp),
    [null, null],
  );
  t.regex(plan.natRules.find((r) => r.ns === onprem?.edgeNs)?.rules ?? '', /-A POSTROUTING -s 172\.16\.4\.0\/24 -o wan -j MASQUERADE/);
  t.notRegex(plan.natRules.find((r) => r.ns === onprem?.edgeNs)?.rules ?? '', /DNAT/);
  const n1 = plan.configure.find((b) => b.ns === 'xl-x-onprem-n1');
  t.truthy(n1?.lines.includes('route add 10.4.2.0/24 via 172.16.4.12'));
  t.falsy(n1?.lines.some((l) => l.includes('10.1.')), 'no cross-cloud routes: only Crosslink connects clouds');
});

test('plan: a node name colliding with another namespace is rejected', (t) => {
  const yaml = 'clouds:\n  - { name: a, edge: nat, nodes: [ { name: a-edge } ] }';
  t.throws(() => planLab(parseTopology(yaml), 'x'), { instanceOf: ValidationError, message: /collides/ });
});

test('command lines: nats in the control namespace, agents with userspace WireGuard and lab timers', (t) => {
  const plan = planLab(parseTopology(defaultYaml), 'lab');
  const paths = { repoRoot: '/repo', dir: '/run/crosslink-lab/lab' };
  t.deepEqual(natsArgv(plan, paths, plan.nats.members[0]!), ['ip', 'netns', 'exec', 'xl-lab-ctl', 'nats-server', '-a', '203.0.113.2', '-p', '4222', '-js', '-sd', '/run/crosslink-lab/lab/nats', '-n', 'xl-lab-nats']);
  t.regex(coordinatorArgv(plan, paths).join(' '), /--nats-url nats:\/\/203\.0\.113\.2:4222 .* --replicas 1 /);
  t.true(coordinatorArgv(plan, paths).join(' ').includes('--node-ttl 5s --signing-key-file /run/crosslink-lab/lab/coordinator.key'));
  const onprem = plan.nodes.find((n) => n.name === 'onprem-n1')!;
  const argv = agentArgv(plan, onprem, paths, 'KEY=').join(' ');
  t.true(argv.startsWith('ip netns exec xl-lab-onprem-n1 /repo/bin/crosslink-agent '));
  t.regex(argv, /--wireguard userspace/);
  t.regex(argv, /--status-socket \/run\/crosslink-lab\/lab\/onprem-n1\/agent\.sock/);
  t.notRegex(argv, /--endpoint/, 'behind NAT: no endpoint');
  t.regex(agentArgv(plan, plan.nodes[0]!, paths, 'KEY=').join(' '), /--endpoint 198\.51\.100\.11:51820/);
  t.regex(argv, /--nat-keepalive 5 --resync-interval 10s/);
});

function status(name: string, cluster: string, remotes: AgentStatus['remotes'], extra: Partial<AgentStatus> = {}): AgentStatus {
  return {
    version: 't',
    node: { name, cluster, location: cluster, publicKey: 'k', overlayIp: null, endpoints: [], privateAddresses: [], podCidrs: [], topology: 'mesh', isGateway: false, isRelay: false },
    controlPlane: { connected: true, registered: true, lastHeartbeatAt: null, lastError: null, knownNodes: 2 },
    dataplane: { backend: 'userspace', interface: 'wg', listenPort: 51820, mtu: 1420 },
    lastReconcile: null,
    ready: true,
    peers: [],
    remotes,
    refusedRoutes: [],
    relays: [],
    errors: [],
    ...extra,
  };
}

test('convergence: every running agent ready with a path to every running node of other clouds', (t) => {
  const plan = planLab(parseTopology(twoNodesYaml), 't1');
  const running = new Set(['east-n1', 'west-n1']);
  const east = status('east-n1', 'east', [{ node: 'west-n1', cluster: 'west', path: 'direct', via: null, reason: null }]);
  const westNone = status('west-n1', 'west', [{ node: 'east-n1', cluster: 'east', path: 'none', via: null, reason: 'no endpoint' }]);
  t.deepEqual(checkConvergence(plan, running, new Map([['east-n1', east], ['west-n1', westNone]])).problems, ['west-n1: no path to east-n1 (no endpoint)']);
  const westUnready = status('west-n1', 'west', [], { ready: false });
  t.deepEqual(checkConvergence(plan, running, new Map([['east-n1', east], ['west-n1', westUnready]])).problems, [
    'west-n1: not ready',
    'west-n1: does not know east-n1 yet',
  ]);
  t.deepEqual(checkConvergence(plan, running, new Map<string, StatusOrError>([['east-n1', east], ['west-n1', new Error('ECONNREFUSED')]])).problems, ['west-n1: ECONNREFUSED']);
  t.true(checkConvergence(plan, new Set(['east-n1']), new Map([['east-n1', status('east-n1', 'east', [])]])).converged, 'stopped agents are not waited for');
});

test('mesh summary: one line per cross-cloud node pair, both directions when they differ', (t) => {
  const plan = planLab(parseTopology(defaultYaml), 'x');
  const now = 1_000_000;
  const s = new Map<string, AgentStatus>([
    [
      'onprem-n1',
      status('onprem-n1', 'onprem', [
        { node: 'edge-n1', cluster: 'edge', path: 'relay', via: 'aws-n1', reason: null },
        { node: 'gcp-n2', cluster: 'gcp', path: 'gateway', via: 'gcp-n1', reason: null },
      ]),
    ],
    ['edge-n1', status('edge-n1', 'edge', [{ node: 'onprem-n1', cluster: 'onprem', path: 'relay', via: 'aws-n1', reason: null }])],
    ['gcp-n2', status('gcp-n2', 'gcp', [{ node: 'onprem-n1', cluster: 'onprem', path: 'local-gateway', via: 'gcp-n1', reason: null }])],
  ]);
  const summary = meshSummary(plan, s, now);
  t.is(summary.nodes, 3);
  t.is(summary.pairs.length, 6);
  const text = formatSummary(summary);
  t.regex(text, /onprem-n1 ↔ edge-n1\s+via relay aws-n1$/m);
  t.regex(text, /gcp-n2 +↔ onprem-n1\s+→ via local gateway gcp-n1 \| ← via gateway gcp-n1$/m);
  t.regex(text, /gcp-n2 +↔ edge-n1\s+unknown$/m, 'a direction nobody reported');
  t.is(text.split('\n').length, 4, 'one header and one line per node pair');
});

test('lab state lives outside the checkout: $CROSSLINK_LAB_DIR, else $XDG_RUNTIME_DIR/crosslink-lab, else /run/crosslink-lab', async (t) => {
  const { labRoot, labDir, REPO_ROOT } = await import('../lab/state.ts');
  t.is(labRoot({ CROSSLINK_LAB_DIR: '/srv/labs', XDG_RUNTIME_DIR: '/run/user/0' }), '/srv/labs');
  t.is(labRoot({ XDG_RUNTIME_DIR: '/run/user/1000' }), '/run/user/1000/crosslink-lab');
  t.is(labRoot({}), '/run/crosslink-lab');
  t.is(labDir('ab12', '/run/crosslink-lab'), '/run/crosslink-lab/ab12');
  t.false(labRoot({}).startsWith(`${REPO_ROOT}/`));
});

test('--nats-servers 3: three routed members in the control namespace, everyone given all three URLs, bucket R3', (t) => {
  const plan = planLab(parseTopology(defaultYaml), 'lab', { natsServers: 3 });
  const paths = { repoRoot: '/repo', dir: '/run/crosslink-lab/lab' };
  t.deepEqual(plan.nats.members.map((m) => [m.name, m.serverName, m.url, m.routePort, m.monitorPort]), [
    ['nats-0', 'xl-lab-nats-0', 'nats://203.0.113.2:4222', 6222, 8222],
    ['nats-1', 'xl-lab-nats-1', 'nats://203.0.113.2:4223', 6223, 8223],
    ['nats-2', 'xl-lab-nats-2', 'nats://203.0.113.2:4224', 6224, 8224],
  ]);
  const urls = 'nats://203.0.113.2:4222,nats://203.0.113.2:4223,nats://203.0.113.2:4224';
  t.deepEqual(natsArgv(plan, paths, plan.nats.members[1]!), [
    'ip', 'netns', 'exec', 'xl-lab-ctl',
    'nats-server', '-a', '203.0.113.2', '-p', '4223', '-js', '-sd', '/run/crosslink-lab/lab/nats-1', '-n', 'xl-lab-nats-1', '-m', '8223',
    '--cluster_name', 'xl-lab-nats', '--cluster', 'nats://203.0.113.2:6223',
    '--routes', 'nats://203.0.113.2:6222,nats://203.0.113.2:6223,nats://203.0.113.2:6224',
  ]);
  t.true(coordinatorArgv(plan, paths).join(' ').includes(`--nats-url ${urls} `));
  t.true(coordinatorArgv(plan, paths).join(' ').includes('--replicas 3 '));
  t.true(agentArgv(plan, plan.nodes[0]!, paths, 'KEY=').join(' ').includes(`--nats-url ${urls} `));
  t.true(clusterAddArgv(plan, paths, plan.clouds[0]!).join(' ').includes(`--nats-url ${urls} `));
});

test('--nats-servers: only 1, 3 or 5, naming the value', (t) => {
  t.is(checkNatsServerCount('3'), 3);
  t.is(checkNatsServerCount(1), 1);
  for (const bad of ['2', 4, '0', 'three', 7, '3.0']) {
    const err = t.throws(() => checkNatsServerCount(bad), { instanceOf: ValidationError });
    t.regex(err.message, /^--nats-servers: .* is not valid; must be 1, 3 or 5 \(a NATS cluster needs an odd number of servers\)$/);
  }
});
