// The policy enforcer against a recording runner that plays nft: the transcript of what it runs
// (one atomic `nft -f -` per change, nothing while the policy or the mesh is unknown, counters kept
// across mesh changes, the table left in place across a restart), and a node without nft.
import test from 'ava';
import { ManualClock } from './helpers/manual-clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { RecordingRunner } from './helpers/recording-runner.ts';
import type { NodeRecord } from '../protocol/messages.ts';
import type { PolicyRecord } from '../protocol/policy/document.ts';
import { parsePolicyYaml } from '../protocol/policy/yaml.ts';
import { PolicyEnforcer, type PolicyInput } from '../agent/policy/enforcer.ts';
import { withoutOverlayTraffic } from '../agent/policy/gate.ts';
import { resolveNftCommand } from '../agent/policy/nft-command.ts';
import { enrolledCluster, enrollmentsOf, fakeNft } from './helpers/policy-fixtures.ts';

const K = (n: number): string => Buffer.alloc(32, n).toString('base64');

function node(name: string, cluster: string, podCidr: string, overlayIp: string): NodeRecord {
  return {
    kind: 'node', v: 1, name, cluster, location: 'x', publicKey: K(1), identityKey: K(2), endpoints: [], privateAddresses: [],
    podCidrs: [podCidr], listenPort: 51820, topology: 'mesh', gatewayEligible: false, overlayIp, generation: 1, registeredAt: 0, updatedAt: 0,
  };
}

const nodes = (...n: NodeRecord[]): ReadonlyMap<string, NodeRecord> => new Map(n.map((x) => [x.name, x]));
const a1 = node('a1', 'c1', '10.201.1.0/24', '100.96.0.1');
const b1 = node('b1', 'c2', '10.202.1.0/24', '100.96.0.3');
const b2 = node('b2', 'c2', '10.202.2.0/24', '100.96.0.4');
/** The clusters as enrolled (the policy's `{cluster: X}` is X's enrolled ranges, not its nodes' claims). */
const enrolled = enrollmentsOf(enrolledCluster('c1', ['10.201.1.0/24']), enrolledCluster('c2', ['10.202.1.0/24', '10.202.2.0/24']));

const policy = (version: number, yaml = 'default: deny\nrules:\n  - from: {cluster: c1}\n    to: {cluster: c2, ports: ["tcp/8080"]}\n'): PolicyRecord => ({
  kind: 'policy', v: 1, version, policy: parsePolicyYaml(yaml), setBy: 'op', setAt: 0, sourceSha256: 'cd'.repeat(32),
});

function enforcer(runner: RecordingRunner, mode: 'required' | 'best-effort' = 'best-effort'): PolicyEnforcer {
  return new PolicyEnforcer({ runner, logger: silentLogger(), clock: new ManualClock(), interfaceName: 'xlwg0', mode });
}

async function push(e: PolicyEnforcer, input: PolicyInput): Promise<void> {
  e.update(input);
  await e.settled();
}

test('transcript: nothing until policy and mesh are known; one atomic nft -f per change; unchanged is free', async (t) => {
  const { runner, applied } = fakeNft();
  const e = enforcer(runner);
  await e.init();
  t.deepEqual(runner.transcript(), ['nft --version', 'nft -j list table inet crosslink_policy']);
  runner.clear();

  await push(e, { known: false, record: null, rejected: null, enrollments: enrolled, nodes: nodes(a1, b1) });
  await push(e, { known: true, record: policy(1), rejected: null, enrollments: null, nodes: null });
  await push(e, { known: true, record: policy(1), rejected: null, enrollments: null, nodes: nodes(a1, b1) });
  await push(e, { known: true, record: policy(1), rejected: null, enrollments: enrolled, nodes: null });
  t.deepEqual(runner.transcript(), [], 'policy unknown, or enrollments or mesh not read: the live table is left alone');

  await push(e, { known: true, record: policy(1), rejected: null, enrollments: enrolled, nodes: nodes(a1, b1) });
  t.deepEqual(runner.transcript(), ['nft -f -']);
  t.regex(applied[0] ?? '', /^table inet crosslink_policy\ndelete table inet crosslink_policy\ntable inet crosslink_policy \{/);
  t.regex(applied[0] ?? '', /ip saddr \{ 10\.201\.1\.0\/24, 100\.96\.0\.1\/32 \} ip daddr \{ 10\.202\.1\.0\/24, 10\.202\.2\.0\/24, 100\.96\.0\.3\/32 \} tcp dport \{ 8080 \} counter name "rule_1" accept/);
  t.like(e.status(), { nft: 'available', desiredVersion: 1, enforcedVersion: 1, enforcing: true, blocksTraffic: false });

  runner.clear();
  await push(e, { known: true, record: policy(1), rejected: null, enrollments: enrolled, nodes: nodes(a1, b1) });
  t.deepEqual(runner.transcript(), [], 'same policy, same mesh: no nft call');
});

test('transcript: a node joining re-renders with the counters kept; a new version starts them anew; no policy removes the table', async (t) => {
  const { runner, applied } = fakeNft();
  const e = enforcer(runner);
  await e.init();
  await push(e, { known: true, record: policy(1), rejected: null, enrollments: enrolled, nodes: nodes(a1, b1) });
  // Pretend traffic: the fake's rule_1 counter now says 42 packets.
  const run = runner.run.bind(runner);
  let bumped = false;
  runner.run = async (argv, options) => {
    if (!bumped && argv[1] === '-j') {
      bumped = true;
      return { stdout: JSON.stringify({ nftables: [{ counter: { name: 'rule_1', packets: 42, bytes: 4200 } }, { rule: { comment: 'default (crosslink policy v1 cd)' } }] }), stderr: '', exitCode: 0 };
    }
    return run(argv, options);
  };
  runner.clear();
  await push(e, { known: true, record: policy(1), rejected: null, enrollments: enrolled, nodes: nodes(a1, b1, b2) });
  t.deepEqual(runner.transcript(), ['nft -f -'], 'the counter read (answered above, unrecorded) and one nft -f');
  t.regex(applied.at(-1) ?? '', /counter rule_1 \{ packets 42 bytes 4200 \}/);
  t.regex(applied.at(-1) ?? '', /100\.96\.0\.3\/32, 100\.96\.0\.4\/32/, 'the joined node\'s overlay address');

  await push(e, { known: true, record: policy(2, 'default: allow\nrules: []\n'), rejected: null, enrollments: enrolled, nodes: nodes(a1, b1, b2) });
  t.regex(applied.at(-1) ?? '', /counter default_verdict \{ packets 0 bytes 0 \}/);
  t.regex(applied.at(-1) ?? '', /counter name "default_verdict" accept comment "default \(crosslink policy v2/);

  runner.clear();
  await push(e, { known: true, record: null, rejected: null, enrollments: enrolled, nodes: nodes(a1, b1, b2) });
  t.deepEqual(runner.transcript(), ['nft -j list table inet crosslink_policy', 'nft -f -']);
  t.is(applied.at(-1), 'table inet crosslink_policy\ndelete table inet crosslink_policy\n');
  t.like(e.status(), { desiredVersion: null, enforcedVersion: null, enforcing: false });
});

test('restart: the table left by the previous agent stays until policy and mesh are read, then is replaced atomically', async (t) => {
  const { runner, applied } = fakeNft({ version: 4, counters: { rule_1: 9, default_verdict: 3 } });
  const e = enforcer(runner);
  await e.init();
  t.like(e.status(), { enforcedVersion: 4 });
  await push(e, { known: false, record: null, rejected: null, enrollments: null, nodes: null });
  await push(e, { known: true, record: policy(4), rejected: null, enrollments: null, nodes: null });
  t.deepEqual(applied, [], 'no delete, no flush, no window without the table');
  await push(e, { known: true, record: policy(4), rejected: null, enrollments: enrolled, nodes: nodes(a1, b1) });
  t.is(applied.length, 1);
  t.regex(applied[0] ?? '', /^table inet crosslink_policy\ndelete table inet crosslink_policy\n/);
  t.regex(applied[0] ?? '', /counter rule_1 \{ packets 9 bytes 900 \}/, 'same version: counters carried over the restart');
  t.false(runner.transcript().some((l) => /flush|delete table/.test(l)), 'never a separate delete command');
});

test('drops per rule come from the counters of deny rules and a deny default', async (t) => {
  const { runner } = fakeNft();
  const e = enforcer(runner);
  await e.init();
  await push(e, { known: true, record: policy(3, 'default: deny\nrules:\n  - from: {cluster: c1}\n    to: {cluster: c2}\n    action: deny\n  - from: {cluster: c2}\n    to: {cluster: c1}\n'), rejected: null, enrollments: enrolled, nodes: nodes(a1, b1) });
  const run = runner.run.bind(runner);
  runner.run = async (argv, options) =>
    argv[1] === '-j'
      ? { stdout: JSON.stringify({ nftables: [{ counter: { name: 'rule_1', packets: 5, bytes: 300 } }, { counter: { name: 'rule_2', packets: 7, bytes: 1 } }, { counter: { name: 'default_verdict', packets: 2, bytes: 120 } }, { rule: { comment: 'default (crosslink policy v3 x)' } }] }), stderr: '', exitCode: 0 }
      : run(argv, options);
  await e.counters();
  t.deepEqual(e.status().drops, [
    { rule: 1, packets: 5, bytes: 300 },
    { rule: 'default', packets: 2, bytes: 120 },
  ]);
});

for (const mode of ['best-effort', 'required'] as const) {
  test(`without nft (${mode}): says so, never claims to enforce, ${mode === 'required' ? 'refuses' : 'still carries'} overlay traffic`, async (t) => {
    const runner = new RecordingRunner().fail(['nft'], 'spawn nft ENOENT', 127);
    const e = enforcer(runner, mode);
    await e.init();
    await push(e, { known: true, record: policy(1), rejected: null, enrollments: enrolled, nodes: nodes(a1, b1) });
    t.deepEqual(runner.transcript(), ['nft --version'], 'nothing else is attempted');
    const s = e.status();
    t.like(s, { nft: 'missing', enforcing: false, enforcedVersion: null, desiredVersion: 1, blocksTraffic: mode === 'required' });
    t.regex(s.nftError ?? '', /nftables \(nft\) is not usable/);
    t.regex(e.notReadyReason() ?? '', mode === 'required' ? /policy NOT enforced: .*carrying no overlay traffic/ : /policy v1 NOT enforced: .*traffic passes unfiltered/);
  });
}

test('an impostor nft (e.g. node_modules/.bin/nft) is not nftables; a bare nft is looked up in the sbin directories first', async (t) => {
  const runner = new RecordingRunner().on(['nft', '--version'], '');
  const e = enforcer(runner);
  await e.init();
  t.like(e.status(), { nft: 'missing' });
  t.regex(e.status().nftError ?? '', /it is not nftables/);
  t.is(resolveNftCommand('nft', (p) => p === '/usr/sbin/nft'), '/usr/sbin/nft');
  t.is(resolveNftCommand('nft', () => false), 'nft');
  t.is(resolveNftCommand('/opt/nft', () => true), '/opt/nft');
});

test('required mode before nft was checked blocks traffic (fail closed); the gate keeps the interface, drops peers and routes', async (t) => {
  const { runner } = fakeNft();
  const e = enforcer(runner, 'required');
  t.true(e.blocksTraffic());
  await e.init();
  t.true(e.blocksTraffic(), 'a fresh node (no table live) waits until it knows whether a policy exists');
  await push(e, { known: true, record: null, rejected: null, enrollments: null, nodes: null });
  t.false(e.blocksTraffic(), 'no policy set: nothing to enforce');
  const gated = withoutOverlayTraffic(
    {
      interface: { name: 'xlwg0', listenPort: 1, mtu: 1420, addresses: ['100.96.0.1/32'] },
      peers: [{ node: 'b1', cluster: 'c2', publicKey: K(3), endpoint: null, allowedIps: ['10.202.1.0/24'], persistentKeepalive: 0, path: 'direct', via: null, carries: ['b1'] }],
      routes: [{ dst: '10.202.1.0/24', dev: 'xlwg0' }],
      relays: [],
      remotes: [{ node: 'b1', cluster: 'c2', path: 'direct', via: null, reason: null }],
      refused: [],
      isGateway: false,
    },
    'policy cannot be enforced',
  );
  t.deepEqual([gated.peers, gated.routes, gated.interface.addresses], [[], [], ['100.96.0.1/32']]);
  t.deepEqual(gated.remotes, [{ node: 'b1', cluster: 'c2', path: 'none', via: null, reason: 'policy cannot be enforced' }]);
});

// A fresh node (no table of ours live) in required mode must not carry traffic while a policy it
// knows of is not applied yet: e.g. its NATS account cannot read `enrollments.>` (an old nats-config),
// so `{cluster: X}` cannot be rendered. best-effort carries it and says so; required carries none.
for (const mode of ['required', 'best-effort'] as const) {
  test(`fresh node, policy known but enrollments unreadable (${mode}): ${mode === 'required' ? 'no overlay traffic until enforced' : 'carries traffic, reports it'}`, async (t) => {
    const { runner, applied } = fakeNft();
    const e = enforcer(runner, mode);
    await e.init();
    await push(e, { known: true, record: policy(2), rejected: null, enrollments: null, nodes: nodes(a1, b1) });
    t.deepEqual(applied, []);
    t.like(e.status(), { enforcing: false, enforcedVersion: null, blocksTraffic: mode === 'required' });
    if (mode === 'required') t.regex(e.notReadyReason() ?? '', /^policy v2 not enforced yet: the cluster enrollments have not been read; --policy-enforcement required: carrying no overlay traffic/);
    else t.is(e.notReadyReason(), null);
    await push(e, { known: true, record: policy(2), rejected: null, enrollments: enrolled, nodes: nodes(a1, b1) });
    t.is(applied.length, 1);
    t.like(e.status(), { enforcing: true, enforcedVersion: 2, blocksTraffic: false });
    t.is(e.notReadyReason(), null);
  });
}

test('restart in required mode: the previous table keeps the node carrying traffic while the new inputs are read', async (t) => {
  const { runner } = fakeNft({ version: 4, counters: {} });
  const e = enforcer(runner, 'required');
  await e.init();
  await push(e, { known: false, record: null, rejected: null, enrollments: null, nodes: null });
  t.false(e.blocksTraffic(), 'a live table of ours filters meanwhile (fail-static)');
  await push(e, { known: true, record: policy(5), rejected: null, enrollments: null, nodes: nodes(a1, b1) });
  t.false(e.blocksTraffic());
});
