// The default multi-cloud lab, end to end: every pod reaches every pod (mesh and gateway clouds,
// public and NAT edges, NAT↔NAT through a relay); the agents report the expected paths; bulk TCP
// works on every kind of path (MTU); and the internet segment only ever carries WireGuard.
import { join } from 'node:path';
import test from 'ava';
import { bulkTransfer } from '../lab/bulk.ts';
import { analyzeCapture, encryptionVerdict, readCapture, startCapture } from '../lab/capture.ts';
import { connectivityMatrix, formatMatrix } from '../lab/matrix.ts';
import { findPod } from '../lab/plan.ts';
import { assertConverged, explainPair, pingUntil, useLab } from './helpers/lab-harness.ts';

const CONVERGE_MS = 90_000;
const MATRIX_RETRY_MS = 30_000;
const BULK_BYTES = 4 * 1024 * 1024;
const BULK_DEADLINE_MS = 30_000;
/** Outer IP length of a WireGuard data packet carrying a full-size inner packet: 1420 + 60 (allow a little less). */
const MIN_FULL_SIZE_WG_PACKET = 1400;

const theLab = useLab('default', 'm');

test.serial('every pod reaches every other pod (full matrix)', async (t) => {
  const l = theLab();
  await assertConverged(t, l, CONVERGE_MS);
  const m = await connectivityMatrix(l, l.plan.pods, { concurrency: 4, retryForMs: MATRIX_RETRY_MS });
  t.log(`${m.pairs - m.failures.length}/${m.pairs} pairs connected`);
  if (m.failures.length > 0) {
    const first = m.failures[0]!;
    const detail = await explainPair(l, findPod(l.plan, first.from), findPod(l.plan, first.to), first);
    t.fail(`${m.failures.length} pairs failed: ${m.failures.map((f) => `${f.from}→${f.to}`).join(', ')}\n${formatMatrix(m)}\n${detail}`);
  }
  t.is(m.pairs, l.plan.pods.length * (l.plan.pods.length - 1));
});

test.serial('paths: NAT↔NAT via a relay, into gcp via its gateway, public and NAT→public direct', async (t) => {
  const l = theLab();
  const statuses = await l.waitConverged(20_000);
  const path = (from: string, to: string): string => {
    const r = statuses.get(from)?.remotes.find((x) => x.node === to);
    return r ? `${r.path}${r.via ? `@${r.via}` : ''}` : 'unknown';
  };
  const gcp = statuses.get('gcp-n1');
  const gateway = gcp?.node.isGateway ? 'gcp-n1' : 'gcp-n2';
  const expectations: [string, string, RegExp][] = [
    ['onprem-n1', 'edge-n1', /^relay@/],
    ['edge-n1', 'onprem-n2', /^relay@/],
    ['aws-n1', 'gcp-n1', new RegExp(`^gateway@${gateway}$`)],
    ['aws-n1', 'gcp-n2', new RegExp(`^gateway@${gateway}$`)],
    ['onprem-n1', 'gcp-n2', new RegExp(`^gateway@${gateway}$`)],
    ['aws-n1', 'azure-n1', /^direct$/],
    ['onprem-n1', 'aws-n2', /^direct$/],
    ['aws-n2', 'edge-n1', /^direct$/],
  ];
  for (const [from, to, want] of expectations) t.regex(path(from, to), want, `${from} → ${to}`);
  // The relay must be a node every NATed party can reach: one with a public address.
  const relay = /^relay@(.+)$/.exec(path('onprem-n1', 'edge-n1'))?.[1] ?? '';
  t.truthy(l.plan.nodes.find((n) => n.name === relay)?.publicIp, `relay ${relay} has a public address`);
});

test.serial('bulk TCP (4 MB, full-size segments) on every kind of path; the internet sees only WireGuard', async (t) => {
  const l = theLab();
  const gw = (await l.status('gcp-n1')).node.isGateway ? 'gcp-n1' : 'gcp-n2';
  const nonGateway = gw === 'gcp-n1' ? 'gcp-n2' : 'gcp-n1';
  const transfers: [string, string, string][] = [
    ['direct public↔public', 'aws-n1-p1', 'azure-n1-p1'],
    ['direct NAT→public', 'onprem-n1-p1', 'aws-n2-p2'],
    ['direct public→NAT', 'azure-n1-p2', 'onprem-n2-p1'],
    ['relay NAT↔NAT', 'onprem-n2-p2', 'edge-n1-p1'],
    ['gateway (to the non-gateway gcp node)', 'aws-n2-p1', `${nonGateway}-p2`],
    ['gateway from NAT', 'edge-n1-p2', `${gw}-p1`],
  ];
  // Pod, overlay and VPC addresses must never appear in an IP header on the internet segment.
  const forbidden = [...l.plan.nodes.map((n) => n.podCidr), l.plan.topology.overlayCidr, ...l.plan.clouds.map((c) => c.vpc)];
  for (const [i, [what, from, to]] of transfers.entries()) {
    const a = findPod(l.plan, from);
    const b = findPod(l.plan, to);
    const ping = await pingUntil(l, a, b, 10_000);
    if (!ping.ok) {
      t.fail(`${what}: ${await explainPair(l, a, b, ping)}`);
      continue;
    }
    // One capture per path, so each verdict (and packet size) belongs to that path alone.
    const pcap = join(l.paths.dir, `bulk-${i}.pcap`);
    const capture = await startCapture(l.plan.inetNs, l.plan.inetBridge, pcap);
    let r;
    try {
      r = await bulkTransfer(l.runner, a, b, BULK_BYTES, BULK_DEADLINE_MS);
    } finally {
      await capture.stop();
    }
    t.true(r.ok, `${what} ${a.name} → ${b.name}: ${r.detail}\n${r.ok ? '' : await l.diagnostics({ nodes: [a.node, b.node] })}`);
    const analysis = analyzeCapture(await readCapture(l.runner, pcap), forbidden);
    const verdict = encryptionVerdict(analysis);
    t.true(verdict.ok, `${what}: ${verdict.reason}`);
    // Full-size inner packets (MTU 1420) make 1480-byte WireGuard packets outside.
    t.true(analysis.largestWireguard >= MIN_FULL_SIZE_WG_PACKET, `${what}: largest WireGuard packet ${analysis.largestWireguard} bytes`);
    t.log(`${what}: ${a.name} → ${b.name}: ${r.detail}; ${verdict.reason}; largest ${analysis.largestWireguard} B`);
  }
});

test.serial('the capture check does catch an unencrypted path (negative control)', async (t) => {
  const l = theLab();
  const node = l.node('aws-n1');
  const pod = findPod(l.plan, 'aws-n1-p1');
  const pcap = join(l.paths.dir, 'clear.pcap');
  // From the control host, route one pod CIDR in the clear via the node's public address
  // (the edge routes pod CIDRs like a VPC route table): plain IP over the internet segment.
  await l.exec(l.plan.ctlNs, ['ip', 'route', 'add', node.podCidr, 'via', node.publicIp ?? '']);
  const capture = await startCapture(l.plan.inetNs, l.plan.inetBridge, pcap);
  let pinged;
  try {
    pinged = await l.exec(l.plan.ctlNs, ['ping', '-n', '-c', '2', '-W', '1', pod.ip], { allowFailure: true });
  } finally {
    await capture.stop();
    await l.exec(l.plan.ctlNs, ['ip', 'route', 'del', node.podCidr]);
  }
  t.is(pinged.exitCode, 0, `the deliberately clear path must work: ${pinged.stdout}`);
  const verdict = encryptionVerdict(analyzeCapture(await readCapture(l.runner, pcap), [node.podCidr]));
  t.false(verdict.ok);
  t.regex(verdict.reason, /carry a pod\/overlay address in the clear/);
});
