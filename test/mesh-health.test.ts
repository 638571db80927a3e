// One view of the whole mesh on a real nats-server: nodes registered with the real coordinator
// publish signed health summaries; `crosslink mesh`, `graph` and `diagnose --all` read and verify
// them. A summary signed by another key is refused and named; a silent node is named; a broken hop
// is attributed to the node that reports it.
import test from 'ava';
import { runCli } from '../cli/main.ts';
import { fakeAgent, type FakeAgent } from './helpers/fake-agent.ts';
import { waitFor } from '../lib/wait.ts';
import { healthSubject, type HealthSummary, type SummaryPeer } from '../protocol/health-summary.ts';
import { signEnvelope } from '../protocol/signing.ts';
import { captureIo } from './helpers/cli-io.ts';
import { startCoordinatorEnv } from './helpers/coordinator-fixture.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';

const nats = useNatsServer('xl-meshview');

const peer = (name: string, state: SummaryPeer['state'], extra: Partial<SummaryPeer> = {}): SummaryPeer => ({
  peer: name, state, path: 'direct', via: null, carries: [], handshakeAgeS: 5, rttMs: 1.5, rxBytes: 100, txBytes: 200, reason: state === 'down' ? 'no answer to the last 3 probes' : null, ...extra,
});

test('mesh, graph and diagnose --all from verified health summaries', async (t) => {
  const env = await startCoordinatorEnv(t, { natsUrl: nats().url, bucketTag: 'xlmv', config: {} });
  const a = await fakeAgent('aws-n1', { cluster: 'aws', podCidrs: ['10.30.0.0/24'], endpoints: ['192.0.2.30:51820'] });
  const g = await fakeAgent('gcp-n1', { cluster: 'gcp', podCidrs: ['10.31.0.0/24'], endpoints: ['192.0.2.31:51820'], topology: 'gateway', gatewayEligible: true });
  const e = await fakeAgent('edge-n1', { cluster: 'edge', podCidrs: ['10.32.0.0/24'], endpoints: [] });
  const silent = await fakeAgent('az-n1', { cluster: 'azure', podCidrs: ['10.33.0.0/24'], endpoints: ['192.0.2.33:51820'] });
  for (const n of [a, g, e, silent]) t.like(await env.client.register(n), { ok: true });

  const publish = async (n: FakeAgent, cluster: string, peers: SummaryPeer[], signWith = n.identity.secretKey): Promise<void> => {
    const s: HealthSummary = { v: 1, node: n.name, cluster, at: Date.now(), ready: true, peers };
    env.nc.publish(healthSubject(env.prefix, n.name), JSON.stringify(await signEnvelope(s, signWith)));
  };
  await publish(a, 'aws', [peer('gcp-n1', 'up'), peer('edge-n1', 'up'), peer('az-n1', 'up')]);
  await publish(g, 'gcp', [peer('aws-n1', 'up'), peer('edge-n1', 'down', { path: 'relay', via: 'aws-n1' }), peer('az-n1', 'up')]);
  // edge-n1's summary is forged: signed by aws-n1's identity key.
  await publish(e, 'edge', [peer('aws-n1', 'up'), peer('gcp-n1', 'up')], a.identity.secretKey);
  await env.nc.flush();

  const kvArgs = ['--nats-url', nats().url, '--bucket', env.bucket, '--coordinator-key', env.key.publicKey];
  let out = '';
  await waitFor(
    async () => {
      const io = captureIo();
      const code = await runCli(['mesh', ...kvArgs], io);
      out = io.out();
      t.is(code, 1, io.err());
      return out.includes('aws-n1') && /2\/4 nodes report/.test(out);
    },
    { timeoutMs: 15_000, intervalMs: 300, what: 'two verified summaries' },
  );
  t.regex(out, /gcp-n1\s+gcp\s+gateway/);
  t.regex(out, /edge-n1\s+edge\s+nat\s+refused/);
  t.regex(out, /summary of edge-n1 refused: .*signature/i);
  t.regex(out, /✗ gcp-n1 → edge-n1 \(relay via aws-n1\): down — no answer to the last 3 probes/);
  t.regex(out, /az-n1: no health summary/);

  const diag = captureIo();
  t.is(await runCli(['diagnose', '--all', '--json', ...kvArgs], diag), 1, diag.err());
  const report = JSON.parse(diag.out()) as { ok: boolean; brokenHops: { reporter: string; target: string }[]; silent: string[] };
  t.false(report.ok);
  t.deepEqual(report.brokenHops.map((h) => `${h.reporter}>${h.target}`), ['gcp-n1>edge-n1']);
  t.deepEqual(report.silent.sort(), ['az-n1', 'edge-n1']);

  const graph = captureIo();
  t.is(await runCli(['graph', ...kvArgs], graph), 0, graph.err());
  t.regex(graph.out(), /^digraph crosslink \{/);
  t.regex(graph.out(), /"gcp-n1" \[label="gcp-n1\\n100\.\d+\.\d+\.\d+", shape=doubleoctagon\]/);
  t.regex(graph.out(), /"gcp-n1" -> "edge-n1" \[color=red, label="relay aws-n1 1\.5 ms", style=dashed\]/);
  const svg = captureIo();
  t.is(await runCli(['graph', '--svg', ...kvArgs], svg), 0, svg.err());
  t.regex(svg.out(), /<svg[\s\S]*gcp&#45;n1[\s\S]*relay aws&#45;n1[\s\S]*<\/svg>/);
});
