// The access policy, pure: the YAML document and its errors, rule evaluation (first match wins,
// then default; same cluster and node-to-node exempt), and the rendered nftables table.
import test from 'ava';
import { ValidationError } from '../lib/errors.ts';
import type { NodeRecord } from '../protocol/messages.ts';
import type { PolicyRecord } from '../protocol/policy/document.ts';
import { parsePolicyYaml } from '../protocol/policy/yaml.ts';
import { policyContext } from '../protocol/policy/context.ts';
import { evaluatePolicy, type Flow } from '../protocol/policy/evaluate.ts';
import { enrolledCluster } from './helpers/policy-fixtures.ts';
import { renderPolicyTable, versionFromTableComment } from '../protocol/policy/render.ts';

const K = (n: number): string => Buffer.alloc(32, n).toString('base64');

function node(name: string, cluster: string, podCidr: string, overlayIp: string): NodeRecord {
  return {
    kind: 'node', v: 1, name, cluster, location: 'x', publicKey: K(1), identityKey: K(2), endpoints: [], privateAddresses: [],
    podCidrs: [podCidr], listenPort: 51820, topology: 'mesh', gatewayEligible: false, overlayIp, generation: 1, registeredAt: 0, updatedAt: 0,
  };
}

const ctx = policyContext(
  [
    enrolledCluster('c1', ['10.201.1.0/24', '10.201.2.0/24']),
    enrolledCluster('c2', ['10.202.1.0/24']),
    enrolledCluster('c3', ['10.203.1.0/24']),
    enrolledCluster('c4', ['10.203.2.0/24']),
  ],
  [
    node('a1', 'c1', '10.201.1.0/24', '100.96.0.1'),
    node('a2', 'c1', '10.201.2.0/24', '100.96.0.2'),
    node('b1', 'c2', '10.202.1.0/24', '100.96.0.3'),
    node('d1', 'c3', '10.203.1.0/24', '100.96.0.4'),
    node('e1', 'c4', '10.203.2.0/24', '100.96.0.5'),
  ],
);

const ISSUE_EXAMPLE = `
default: deny
rules:
  - from: {cluster: c1}
    to: {cluster: c2, ports: ["tcp/8080", "udp/53", "icmp"]}
  - from: {cluster: c3}
    to: {cidr: 10.203.2.0/25}
    action: deny
  - from: {cluster: c3}
    to: {cluster: c4}
`;

const doc = parsePolicyYaml(ISSUE_EXAMPLE);

const tcp = (from: string, to: string, port: number): Flow => ({ from: { ip: from }, to: { ip: to }, protocol: 'tcp', port });

const rows: { name: string; flow: Flow; action: 'allow' | 'deny'; rule: number | null; by: string }[] = [
  { name: 'allowed port', flow: tcp('10.201.1.5', '10.202.1.9', 8080), action: 'allow', rule: 1, by: 'rule' },
  { name: 'other port falls to default deny', flow: tcp('10.201.1.5', '10.202.1.9', 8081), action: 'deny', rule: null, by: 'default' },
  { name: 'udp/53 allowed', flow: { from: { ip: '10.201.2.5' }, to: { ip: '10.202.1.9' }, protocol: 'udp', port: 53 }, action: 'allow', rule: 1, by: 'rule' },
  { name: 'tcp/53 is not udp/53', flow: tcp('10.201.2.5', '10.202.1.9', 53), action: 'deny', rule: null, by: 'default' },
  { name: 'icmp allowed', flow: { from: { ip: '10.201.1.5' }, to: { ip: '10.202.1.9' }, protocol: 'icmp', port: null }, action: 'allow', rule: 1, by: 'rule' },
  { name: 'the reverse direction is not allowed (new connections follow the rules)', flow: tcp('10.202.1.9', '10.201.1.5', 8080), action: 'deny', rule: null, by: 'default' },
  { name: 'first match wins: the deny before the allow', flow: tcp('10.203.1.5', '10.203.2.7', 80), action: 'deny', rule: 2, by: 'rule' },
  { name: 'outside the denied /25 the later allow decides', flow: tcp('10.203.1.5', '10.203.2.200', 80), action: 'allow', rule: 3, by: 'rule' },
  { name: 'inside one cluster never affected', flow: tcp('10.201.1.5', '10.201.2.5', 1), action: 'allow', rule: null, by: 'same-cluster' },
  { name: 'node-to-node overlay exempt', flow: tcp('100.96.0.1', '100.96.0.3', 22), action: 'allow', rule: null, by: 'node-to-node' },
  { name: 'a node reaching pods is policy traffic', flow: tcp('100.96.0.1', '10.202.1.9', 22), action: 'deny', rule: null, by: 'default' },
  { name: 'cluster names as ends', flow: { from: { cluster: 'c1' }, to: { cluster: 'c2' }, protocol: 'tcp', port: 8080 }, action: 'allow', rule: 1, by: 'rule' },
  { name: 'a cluster inside a cidr selector', flow: { from: { cluster: 'c3' }, to: { ip: '10.203.2.1' }, protocol: 'udp', port: 9 }, action: 'deny', rule: 2, by: 'rule' },
  { name: 'an unknown address only matches cidr rules, then default', flow: tcp('192.0.2.1', '10.202.1.9', 8080), action: 'deny', rule: null, by: 'default' },
];

for (const r of rows) {
  test(`evaluate: ${r.name}`, (t) => {
    const d = evaluatePolicy(doc, ctx, r.flow);
    t.like(d, { action: r.action, rule: r.rule, by: r.by });
    if (r.rule !== null) t.regex(d.explanation, new RegExp(`by policy rule ${r.rule} `));
  });
}

test('evaluate: default allow with a deny rule ("prod may not reach dev")', (t) => {
  const p = parsePolicyYaml('default: allow\nrules:\n  - from: {cluster: c1}\n    to: {cluster: c2}\n    action: deny\n');
  t.like(evaluatePolicy(p, ctx, tcp('10.201.1.5', '10.202.1.9', 443)), { action: 'deny', rule: 1 });
  t.like(evaluatePolicy(p, ctx, tcp('10.202.1.9', '10.201.1.5', 443)), { action: 'allow', rule: null, by: 'default' });
  t.like(evaluatePolicy(null, ctx, tcp('10.201.1.5', '10.202.1.9', 443)), { action: 'allow', by: 'no-policy' });
});

const invalid: { name: string; yaml: string; message: RegExp }[] = [
  { name: 'default missing', yaml: 'rules: []', message: /policy: default: \(missing\) is not valid; must be "allow" or "deny"/ },
  { name: 'bad default', yaml: 'default: maybe', message: /default: "maybe" is not valid; must be "allow" or "deny"/ },
  { name: 'bad port', yaml: 'default: deny\nrules:\n  - from: {cluster: c1}\n    to: {cluster: c2, ports: ["tcp/80000"]}', message: /rules\[0\]\.to\.ports\[0\]: "tcp\/80000" is not valid; use "tcp\/<port>"/ },
  { name: 'sctp', yaml: 'default: deny\nrules:\n  - from: {cluster: c1}\n    to: {cluster: c2, ports: ["sctp/1"]}', message: /"sctp\/1" is not valid/ },
  { name: 'both cluster and cidr', yaml: 'default: deny\nrules:\n  - from: {cluster: c1, cidr: 10.0.0.0/8}\n    to: {cluster: c2}', message: /rules\[0\]\.from: .* must name exactly one of "cluster"/ },
  { name: 'host bits', yaml: 'default: deny\nrules:\n  - from: {cidr: 10.0.0.1/8}\n    to: {cluster: c2}', message: /rules\[0\]\.from\.cidr: "10\.0\.0\.1\/8" is not valid; must be a CIDR/ },
  { name: 'bad action', yaml: 'default: deny\nrules:\n  - from: {cluster: c1}\n    to: {cluster: c2}\n    action: reject', message: /rules\[0\]\.action: "reject" is not valid; must be "allow" or "deny"/ },
  { name: 'unknown key', yaml: 'default: deny\nrules:\n  - from: {cluster: c1}\n    too: {cluster: c2}', message: /unknown key\(s\) too; allowed here: from, to, action, description/ },
  { name: 'bad cluster name', yaml: 'default: deny\nrules:\n  - from: {cluster: Prod_1}\n    to: {cluster: c2}', message: /rules\[0\]\.from\.cluster: "Prod_1" is not valid; must be a DNS label/ },
  { name: 'not YAML', yaml: 'default: [', message: /must be valid YAML/ },
  { name: 'a list', yaml: '- a', message: /must be a mapping/ },
];

for (const r of invalid) {
  test(`parse refuses: ${r.name}`, (t) => {
    const err = t.throws(() => parsePolicyYaml(r.yaml), { instanceOf: ValidationError });
    t.regex(err.message, r.message);
  });
}

const record = (policy = doc, version = 7): PolicyRecord => ({ kind: 'policy', v: 1, version, policy, setBy: 'op@host', setAt: 0, sourceSha256: 'ab'.repeat(32) });

test('render: the whole table, replaced in one transaction, scoped to the tunnel interface', (t) => {
  const text = renderPolicyTable({ record: record(), context: ctx, interfaceName: 'xlwg0' });
  t.is(
    text,
    `table inet crosslink_policy
delete table inet crosslink_policy
table inet crosslink_policy {
\tcomment "crosslink policy v7 abababababab"
\tcounter rule_1 { packets 0 bytes 0 }
\tcounter rule_2 { packets 0 bytes 0 }
\tcounter rule_3 { packets 0 bytes 0 }
\tcounter default_verdict { packets 0 bytes 0 }
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname "xlwg0" jump tunnel
\t\toifname "xlwg0" jump tunnel
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname "xlwg0" jump tunnel
\t}
\tchain output {
\t\ttype filter hook output priority filter; policy accept;
\t\toifname "xlwg0" jump tunnel
\t}
\tchain tunnel {
\t\tct state established,related accept comment "replies of allowed connections"
\t\tip saddr { 100.96.0.1, 100.96.0.2, 100.96.0.3, 100.96.0.4, 100.96.0.5 } ip daddr { 100.96.0.1, 100.96.0.2, 100.96.0.3, 100.96.0.4, 100.96.0.5 } accept comment "node-to-node overlay traffic"
\t\t# rule 1: allow from cluster c1 to cluster c2, tcp/8080, udp/53, icmp
\t\tip saddr { 10.201.1.0/24, 10.201.2.0/24, 100.96.0.1/32, 100.96.0.2/32 } ip daddr { 10.202.1.0/24, 100.96.0.3/32 } tcp dport { 8080 } counter name "rule_1" accept comment "rule 1"
\t\tip saddr { 10.201.1.0/24, 10.201.2.0/24, 100.96.0.1/32, 100.96.0.2/32 } ip daddr { 10.202.1.0/24, 100.96.0.3/32 } udp dport { 53 } counter name "rule_1" accept comment "rule 1"
\t\tip saddr { 10.201.1.0/24, 10.201.2.0/24, 100.96.0.1/32, 100.96.0.2/32 } ip daddr { 10.202.1.0/24, 100.96.0.3/32 } meta l4proto icmp counter name "rule_1" accept comment "rule 1"
\t\t# rule 2: deny from cluster c3 to cidr 10.203.2.0/25, any port
\t\tip saddr { 10.203.1.0/24, 100.96.0.4/32 } ip daddr { 10.203.2.0/25 } counter name "rule_2" drop comment "rule 2"
\t\t# rule 3: allow from cluster c3 to cluster c4, any port
\t\tip saddr { 10.203.1.0/24, 100.96.0.4/32 } ip daddr { 10.203.2.0/24, 100.96.0.5/32 } counter name "rule_3" accept comment "rule 3"
\t\tcounter name "default_verdict" drop comment "default (crosslink policy v7 abababababab)"
\t}
}
`,
  );
  t.is(versionFromTableComment('default (crosslink policy v7 abababababab)'), 7);
});

test('render: a cluster that is not enrolled renders nothing for its rule (and says why); IPv6 gets ip6 matches; counters carried', (t) => {
  const p = parsePolicyYaml('default: allow\nrules:\n  - from: {cluster: ghost}\n    to: {cluster: c2}\n    action: deny\n  - from: {cidr: "fd00:1::/64"}\n    to: {cidr: "fd00:2::/64", ports: [icmp, "tcp/22"]}\n    action: deny\n');
  const text = renderPolicyTable({ record: record(p, 2), context: ctx, interfaceName: 'wg9', counters: new Map([['rule_2', { packets: 3, bytes: 180 }]]) });
  t.regex(text, /# rule 1: deny from cluster ghost to cluster c2, any port \(matches nothing here: cluster ghost is not enrolled\)\n\t\t# rule 2/);
  t.regex(text, /ip6 saddr \{ fd00:1::\/64 \} ip6 daddr \{ fd00:2::\/64 \} tcp dport \{ 22 \} counter name "rule_2" drop/);
  t.regex(text, /meta l4proto ipv6-icmp counter name "rule_2" drop/);
  t.regex(text, /counter rule_2 \{ packets 3 bytes 180 \}/);
  t.regex(text, /counter name "default_verdict" accept/);
});
