// Pure rendering of the whole-mesh view: matrix, broken hops, DOT; and the agent's summary of its status.
import test from 'ava';
import { summaryOf } from '../agent/events/health-summary-publisher.ts';
import { brokenHops, cellOf, formatMeshMatrix, meshDot, type MeshInput } from '../cli/mesh-view.ts';
import { ANSI_COLOUR, NO_COLOUR, stripAnsi } from '../lib/colour.ts';
import { HealthSummary, type SummaryPeer } from '../protocol/health-summary.ts';
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';
import type { AgentStatus } from '../protocol/status.ts';

const node = (name: string, cluster: string, ip: string, endpoints: string[] = ['192.0.2.1:51820']): NodeRecord =>
  ({ name, cluster, overlayIp: ip, endpoints }) as unknown as NodeRecord;
const cluster = (name: string, topology: 'mesh' | 'gateway', gateway: string | null): ClusterRecord =>
  ({ kind: 'cluster', v: 1, name, topology, gateway, gatewayEpoch: 1, generation: 1, updatedAt: 1 });
const p = (peer: string, state: SummaryPeer['state'], extra: Partial<SummaryPeer> = {}): SummaryPeer => ({
  peer, state, path: 'direct', via: null, carries: [], handshakeAgeS: 1, rttMs: 0.5, rxBytes: 1, txBytes: 1, reason: null, ...extra,
});
const summary = (n: string, c: string, peers: SummaryPeer[]): HealthSummary => ({ v: 1, node: n, cluster: c, at: 1_000, ready: true, peers });

function mesh(): MeshInput {
  const nodes = new Map([
    ['a1', node('a1', 'aws', '100.96.0.1')],
    ['g1', node('g1', 'gcp', '100.96.0.2')],
    ['g2', node('g2', 'gcp', '100.96.0.3')],
    ['e1', node('e1', 'edge', '100.96.0.4', [])],
  ]);
  const clusters = new Map([['gcp', cluster('gcp', 'gateway', 'g1')], ['aws', cluster('aws', 'mesh', null)], ['edge', cluster('edge', 'mesh', null)]]);
  const summaries = new Map([
    ['a1', summary('a1', 'aws', [p('g1', 'up', { path: 'gateway', carries: ['g2'] }), p('e1', 'up')])],
    ['e1', summary('e1', 'edge', [p('a1', 'up'), p('g1', 'down', { path: 'gateway', carries: ['g2'], reason: 'no answer' })])],
  ]);
  return { nodes, clusters, summaries, refused: new Map([['g1', 'bad signature']]) };
}

test('cellOf: the peer that carries the target (a gateway carries its cluster)', (t) => {
  const m = mesh();
  t.like(cellOf(m.summaries.get('a1'), 'g2'), { state: 'up', via: 'g1', path: 'gateway' });
  t.like(cellOf(m.summaries.get('a1'), 'g1'), { state: 'up', via: null });
  t.is(cellOf(m.summaries.get('a1'), 'nobody'), null);
  t.is(cellOf(undefined, 'g1'), null);
});

test('formatMeshMatrix: rows report, columns are targets; roles; refused and silent nodes', (t) => {
  const text = formatMeshMatrix(mesh(), 11_000, NO_COLOUR);
  t.is(
    text,
    [
      '#  NODE  CLUSTER  ROLE     SUMMARY  1  2  3  4',
      '1  a1    aws      mesh     10s ago  ·  ✓  ✓  ✓ g:g1',
      '2  e1    edge     nat      10s ago  ✓  ·  ✗  ✗ g:g1',
      '3  g1    gcp      gateway  refused  -  -  ·  ·',
      '4  g2    gcp      member   none     -  -  ·  ·',
      '',
      '✓ up  ✗ down/stale  ? pending  - no report  · same cluster (the CNI)  r:R via relay R  g:G via gateway G',
      '  ✗ summary of g1 refused: bad signature',
    ].join('\n'),
  );
  t.is(stripAnsi(formatMeshMatrix(mesh(), 11_000, ANSI_COLOUR)).split('\n')[1], text.split('\n')[1]);
});

test('brokenHops names the reporter and the hop; silent nodes listed', (t) => {
  const { hops, silent } = brokenHops(mesh());
  t.deepEqual(hops, [{ reporter: 'e1', target: 'g1', state: 'down', via: null, reason: 'no answer' }]);
  t.deepEqual(silent, ['g1', 'g2']);
});

test('meshDot: clusters as subgraphs, gateway and NAT shapes, coloured edges, quoting', (t) => {
  const dot = meshDot(mesh());
  t.regex(dot, /subgraph "cluster_\d+" \{\n {4}label="gcp \(gateway\)";/);
  t.regex(dot, /"g1" \[label="g1\\n100\.96\.0\.2", shape=doubleoctagon, color=orange\];/);
  t.regex(dot, /"e1" \[label="e1\\n100\.96\.0\.4", style=dashed\];/);
  t.regex(dot, /"e1" -> "g1" \[color=red, label="0\.5 ms"\];/);
  t.regex(dot, /"a1" -> "e1" \[color=darkgreen, dir=both, label="0\.5 ms"\];/);
  t.notRegex(dot, /"e1" -> "a1"/, 'a pair both sides report the same is one two-way edge');
  t.true(dot.endsWith('}\n'));
});

test('summaryOf: the status document as a valid summary (probe state, handshake age, reasons)', (t) => {
  const status = {
    node: { name: 'a1', cluster: 'aws' },
    ready: true,
    peers: [
      { name: 'g1', path: 'gateway', via: null, carries: ['g1', 'g2'], latestHandshakeAt: 4_000, rxBytes: 10, txBytes: 20, persistentKeepalive: 0, probe: { state: 'down', reason: 'no answer to the last 3 probes', rttMs: null } },
      { name: 'e1', path: 'relay', via: 'x1', carries: ['e1'], latestHandshakeAt: null, rxBytes: 0, txBytes: 0, persistentKeepalive: 25, probe: null },
    ],
  } as unknown as AgentStatus;
  const s = summaryOf(status, 10_000);
  t.true(HealthSummary.safeParse(s).success);
  t.like(s.peers[0], { peer: 'g1', state: 'down', carries: ['g2'], handshakeAgeS: 6, reason: 'no answer to the last 3 probes' });
  t.like(s.peers[1], { peer: 'e1', state: 'never', path: 'relay', via: 'x1', handshakeAgeS: null, reason: null });
});
