// The node-side policy answers: "would this be denied, by which rule" (for ping/diagnose), the
// status line, and `crosslink policy explain` from an agent's /policy document.
import test from 'ava';
import { formatExplain, policyChecks, policyDenial } from '../cli/policy.ts';
import { policyLine } from '../cli/policy-line.ts';
import { parsePolicyYaml } from '../protocol/policy/yaml.ts';
import type { PolicyDocumentResponse, PolicyStatus } from '../protocol/policy/status.ts';

const status = (over: Partial<PolicyStatus> = {}): PolicyStatus => ({
  mode: 'best-effort', nft: 'available', nftError: null, desiredVersion: 4, enforcedVersion: 4, enforcing: true, blocksTraffic: false,
  lastAppliedAt: 0, lastError: null, rejected: null, drops: [{ rule: 1, packets: 3, bytes: 180 }], ...over,
});

const doc = (over: Partial<PolicyDocumentResponse> = {}): PolicyDocumentResponse => ({
  status: status(),
  record: { kind: 'policy', v: 1, version: 4, policy: parsePolicyYaml('default: allow\nrules:\n  - from: {cluster: prod}\n    to: {cluster: dev}\n    action: deny\n'), setBy: 'op@h', setAt: 0, sourceSha256: 'f'.repeat(64) },
  clusters: { prod: ['10.1.0.0/24'], dev: ['10.2.0.0/24'] },
  nodeOverlayIps: ['100.96.0.1', '100.96.0.2'],
  liveTable: 'table inet crosslink_policy {\n}\n',
  liveTableError: null,
  counters: [{ name: 'rule_1', packets: 3, bytes: 180 }, { name: 'default_verdict', packets: 9, bytes: 900 }],
  ...over,
});

test('policyDenial: the rule that denies a ping, or null when allowed', (t) => {
  t.like(policyDenial(doc(), '10.1.0.5', '10.2.0.5'), { action: 'deny', rule: 1 });
  t.regex(policyDenial(doc(), '10.1.0.5', '10.2.0.5')?.explanation ?? '', /^denied by policy rule 1 /);
  t.is(policyDenial(doc(), '10.2.0.5', '10.1.0.5'), null);
  t.is(policyDenial(doc({ record: null }), '10.1.0.5', '10.2.0.5'), null);
});

test('status line: enforced, not enforced yet, no nft, none set', (t) => {
  t.is(policyLine(status()), 'v4 enforced, 3 packets dropped');
  t.is(policyLine(status({ enforcing: false, enforcedVersion: 3, desiredVersion: 4 })), 'v4 NOT enforced yet (live table: v3), 3 packets dropped');
  t.regex(policyLine(status({ nft: 'missing', nftError: 'nft is not usable', blocksTraffic: true })), /^NOT ENFORCED: nft is not usable \(required: no overlay traffic\)$/);
  t.regex(policyLine(status({ desiredVersion: null, enforcedVersion: null })), /^none set/);
  t.regex(policyLine(undefined), /unknown/);
});

test('explain: rules with their counters, the cluster map and the live table', (t) => {
  const text = formatExplain(doc());
  t.regex(text, /^Policy: v4 enforced, 3 packets dropped\n/);
  t.regex(text, /1\s+deny\s+cluster prod\s+cluster dev\s+any\s+3\n/);
  t.regex(text, /default\s+allow\s+\*\s+\*\s+\*\s+9/);
  t.regex(text, /prod: 10\.1\.0\.0\/24/);
  t.regex(text, /Live table \(nft list table inet crosslink_policy\):\ntable inet crosslink_policy \{/);
});

test('diagnose lines: enforcement state, and a denied ping named as policy (not a broken tunnel)', (t) => {
  const checks = policyChecks(doc(), { podCidrs: ['10.1.0.0/24'] }, [{ node: 'dev-1', podCidrs: ['10.2.0.0/24'] }]);
  t.like(checks[0], { ok: true, label: 'access policy enforced' });
  t.like(checks[1], { ok: null, label: 'policy towards dev-1' });
  t.regex(checks[1]?.detail ?? '', /ping 10\.1\.0\.1 → 10\.2\.0\.1: denied by policy rule 1/);
  const missing = policyChecks(doc({ status: status({ nft: 'missing', nftError: 'no nft' }) }), { podCidrs: [] }, []);
  t.like(missing[0], { ok: false, detail: 'no nft' });
});
