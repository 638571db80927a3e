// Health-driven gateway failover, the pure parts and the intake: a quorum of distinct, signed
// reporters deposes a gateway; one hostile node cannot (whatever it signs, and it cannot sign as
// others); a slow gateway that still answers most reporters stays; stale and replayed reports do not
// count; the replacement stays once chosen (no flapping back); the agent's reporter signs what the
// coordinator verifies.
import test from 'ava';
import { electGateway, decideCluster } from '../coordinator/clusters.ts';
import { GatewayHealth } from '../coordinator/gateway-health.ts';
import { GatewayReportIntake, verifyGatewayReport } from '../coordinator/gateway-reports.ts';
import { GatewayReporter } from '../agent/health/gateway-reporter.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import type { GatewayHealthReport } from '../protocol/gateway-health.ts';
import type { NodeRecord } from '../protocol/messages.ts';
import { generateSigningKeyPair, signEnvelope, type SigningKeyPair } from '../protocol/signing.ts';
import { clusterRecord, nodeRecord } from './agent-helpers.ts';
import { largestRequests } from './helpers/largest-requests.ts';
import { MAX_GATEWAY_VERDICTS } from '../protocol/gateway-health.ts';
import { REQUEST_MAX_BYTES } from '../protocol/request-size.ts';
import { pino } from 'pino';

const report = (reporter: string, at: number, verdicts: GatewayHealthReport['verdicts']): GatewayHealthReport => ({ kind: 'gateway-health', v: 1, reporter, at, verdicts });
const down = (gateway: string) => [{ gateway, state: 'down' as const }];
const up = (gateway: string) => [{ gateway, state: 'up' as const }];
/** GatewayHealth.accept's live-node lookup for the pure tests: every name is a live node. */
const anyNode = (): boolean => true;

test('quorum: one reporter cannot depose; two distinct ones can; a majority saying up keeps a slow gateway', (t) => {
  const h = new GatewayHealth();
  t.true(h.accept(report('x1', 1, down('gw')), 1000, anyNode));
  t.deepEqual([...h.unhealthy(1000)], [], 'one reporter is never enough');
  t.true(h.accept(report('x1', 2, down('gw')), 1100, anyNode));
  t.deepEqual([...h.unhealthy(1100)], [], 'the same reporter twice is still one');
  h.accept(report('x2', 1, down('gw')), 1200, anyNode);
  t.deepEqual([...h.unhealthy(1200)], ['gw']);
  // Slow, not dead: three others still get answers.
  for (const r of ['y1', 'y2', 'y3']) h.accept(report(r, 1, up('gw')), 1300, anyNode);
  t.deepEqual([...h.unhealthy(1300)], []);
  t.deepEqual(h.view('gw', 1300), { gateway: 'gw', down: ['x1', 'x2'], up: ['y1', 'y2', 'y3'], unhealthy: false });
  t.true(new GatewayHealth({ quorum: 1 }).accept(report('a', 1, down('gw')), 1, anyNode), 'a quorum below 2 is raised to 2');
  const q1 = new GatewayHealth({ quorum: 1 });
  q1.accept(report('a', 1, down('gw')), 1, anyNode);
  t.deepEqual([...q1.unhealthy(1)], []);
});

test('stale verdicts age out, replays and reordered reports are refused, a gateway cannot vouch for itself', (t) => {
  const h = new GatewayHealth({ freshMs: 10_000 });
  h.accept(report('x1', 5, down('gw')), 0, anyNode);
  h.accept(report('x2', 5, down('gw')), 0, anyNode);
  t.deepEqual([...h.unhealthy(10_000)], ['gw']);
  t.deepEqual([...h.unhealthy(10_001)], [], 'older than freshMs');
  t.false(h.accept(report('x1', 5, down('gw')), 10_002, anyNode), 'replayed');
  t.false(h.accept(report('x1', 4, down('gw')), 10_002, anyNode), 'reordered');
  h.accept(report('gw', 1, up('gw')), 10_003, anyNode);
  t.deepEqual(h.view('gw', 10_003).up, [], 'its own verdict is ignored');
  h.accept(report('x1', 6, down('gw')), 10_004, anyNode);
  h.accept(report('x2', 6, down('gw')), 10_004, anyNode);
  h.forget('x2');
  t.deepEqual([...h.unhealthy(10_004)], [], 'an expired reporter no longer counts');
});

test('election: an unhealthy gateway is replaced by a healthy eligible node; the replacement stays; all unhealthy keeps the current one', async (t) => {
  const g1 = await nodeRecord({ name: 'g1', cluster: 'gcp', topology: 'gateway' });
  const g2 = await nodeRecord({ name: 'g2', cluster: 'gcp', topology: 'gateway' });
  const members: NodeRecord[] = [g1, g2];
  t.is(electGateway(members, 'g1'), 'g1');
  t.is(electGateway(members, 'g1', new Set(['g1'])), 'g2');
  t.is(electGateway(members, 'g2', new Set()), 'g2', 'g1 recovered: no flapping back');
  t.is(electGateway(members, 'g1', new Set(['g1', 'g2'])), 'g1', 'failing over cannot help');
  const current = clusterRecord({ name: 'gcp', topology: 'gateway', gateway: 'g1', gatewayEpoch: 3 });
  const d = decideCluster('gcp', members, current, 5, undefined, new Set(['g1']));
  t.is(d.kind, 'write');
  if (d.kind === 'write') {
    t.is(d.record.gateway, 'g2');
    t.is(d.record.gatewayEpoch, 4);
    t.true(d.gatewayChanged);
  }
  t.is(decideCluster('gcp', members, current, 5).kind, 'unchanged', 'no reports: nothing changes');
});

interface Reporter {
  readonly record: NodeRecord;
  readonly key: SigningKeyPair;
}

async function reporter(name: string, cluster: string): Promise<Reporter> {
  const key = await generateSigningKeyPair();
  return { record: await nodeRecord({ name, cluster, identityKey: key.publicKey }), key };
}

const bytes = async (r: GatewayHealthReport, secretKey: string): Promise<Uint8Array> => new TextEncoder().encode(JSON.stringify(await signEnvelope(r, secretKey)));

test('intake: only signatures of live reporters count; one hostile node cannot depose another cluster’s gateway; two honest reporters can', async (t) => {
  const clock = new ManualClock(1_700_000_000_000);
  const [hostile, a, b, g1] = [await reporter('evil', 'edge'), await reporter('aws-n1', 'aws'), await reporter('azure-n1', 'azure'), await reporter('gcp-g1', 'gcp')];
  const live = new Map([hostile, a, b, g1].map((r) => [r.record.name, r.record]));
  const elections: { sets: string[][] } = { sets: [] };
  const intake = new GatewayReportIntake({
    clock,
    logger: silentLogger(),
    maxClockSkewMs: 30_000,
    elections: {
      liveNode: (n) => live.get(n),
      setUnhealthyGateways: (s) => {
        elections.sets.push([...s]);
        return Promise.resolve();
      },
    },
  });
  const now = clock.now();
  // The hostile node, as loud as it likes (fresh timestamps), and posing as others with its own key.
  for (let i = 1; i <= 5; i++) await intake.handle(await bytes(report('evil', now + i, down('gcp-g1')), hostile.key.secretKey));
  await intake.handle(await bytes(report('aws-n1', now + 10, down('gcp-g1')), hostile.key.secretKey));
  await intake.handle(await bytes(report('ghost', now + 11, down('gcp-g1')), hostile.key.secretKey));
  await intake.handle(new TextEncoder().encode('{"payload":"bm90IGpzb24=","sig":"AA=="}'));
  t.is(intake.refused, 3, 'forged as aws-n1, unknown reporter, garbage');
  t.true(elections.sets.every((s) => s.length === 0), 'never unhealthy on one reporter');
  // Skewed clock and replays are refused with reasons.
  await t.throwsAsync(verifyGatewayReport(await bytes(report('aws-n1', now - 60_000, down('gcp-g1')), a.key.secretKey), (n) => live.get(n), now, 30_000), { name: 'GatewayReportError', message: /field at .* off the coordinator's clock \(allowed ±30000 ms\)/ });
  await t.throwsAsync(verifyGatewayReport(await bytes(report('nobody', now, down('gcp-g1')), a.key.secretKey), (n) => live.get(n), now, 30_000), { message: /reporter "nobody" is not a live node/ });
  // One honest reporter joins the hostile one: that is a quorum of two distinct signed reporters.
  await intake.handle(await bytes(report('aws-n1', now + 20, down('gcp-g1')), a.key.secretKey));
  t.deepEqual(elections.sets.at(-1), ['gcp-g1']);
  // Another reporter still gets answers: 2 down against 1 up is still a majority down.
  await intake.handle(await bytes(report('azure-n1', now + 21, up('gcp-g1')), b.key.secretKey));
  t.deepEqual(elections.sets.at(-1), ['gcp-g1']);
  // Replayed honest report: refused.
  await intake.handle(await bytes(report('aws-n1', now + 20, down('gcp-g1')), a.key.secretKey));
  t.is(intake.refused, 4);
});

test('intake: verdicts about made-up gateways are not kept (nothing to hold for the freshness window or re-scan); a live gateway\'s are', async (t) => {
  const clock = new ManualClock(1_700_000_000_000);
  const [a, g1] = [await reporter('aws-n1', 'aws'), await reporter('gcp-g1', 'gcp')];
  const live = new Map([a, g1].map((r) => [r.record.name, r.record]));
  const intake = new GatewayReportIntake({ clock, logger: silentLogger(), maxClockSkewMs: 30_000, elections: { liveNode: (n) => live.get(n), setUnhealthyGateways: () => Promise.resolve() } });
  const madeUp = Array.from({ length: MAX_GATEWAY_VERDICTS - 1 }, (_, i) => ({ gateway: `made-up-${i}`, state: 'down' as const }));
  await intake.handle(await bytes(report('aws-n1', clock.now(), [...madeUp, ...down('gcp-g1')]), a.key.secretKey));
  t.is(intake.refused, 0, 'the report itself is authentic and taken');
  t.is(intake.health.gatewaysTracked, 1, 'only the live gateway is tracked');
  t.deepEqual(intake.health.view('gcp-g1', clock.now()).down, ['aws-n1']);
  t.deepEqual(intake.health.view('made-up-0', clock.now()).down, []);
});

test('intake: a report over REQUEST_MAX_BYTES is refused unread (logged once per interval); the largest honest one is taken', async (t) => {
  const lines: { level: number; msg: string; bytes?: number; max?: number }[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as { level: number; msg: string }) });
  const clock = new ManualClock(1_700_000_000_000);
  const largest = await largestRequests();
  const r = { record: await nodeRecord({ name: largest.registration.name, cluster: 'aws', identityKey: largest.identity.publicKey }), key: largest.identity };
  const intake = new GatewayReportIntake({ clock, logger, maxClockSkewMs: Number.MAX_SAFE_INTEGER, elections: { liveNode: (n) => (n === r.record.name ? r.record : undefined), setUnhealthyGateways: () => Promise.resolve() } });
  const honest = await bytes({ ...largest.gatewayReport, at: clock.now() }, r.key.secretKey);
  t.true(honest.length <= REQUEST_MAX_BYTES['gateway report'] / 2, `the largest honest report: ${honest.length} bytes`);
  await intake.handle(honest);
  t.is(intake.refused, 0, 'the largest honest report is taken');
  // The same report padded beside its envelope, twice: refused for its size, not for the field pad.
  const padded = new TextEncoder().encode(JSON.stringify({ ...(JSON.parse(Buffer.from(honest).toString('utf8')) as object), pad: 'x'.repeat(REQUEST_MAX_BYTES['gateway report']) }));
  await intake.handle(padded);
  await intake.handle(padded);
  t.is(intake.refused, 2);
  const tooLarge = lines.filter((l) => l.msg === 'request refused: too large');
  t.like(tooLarge[0], { level: 30, bytes: padded.length, max: REQUEST_MAX_BYTES['gateway report'] });
  t.is(tooLarge.filter((l) => l.level === 30).length, 1, 'once at info per interval');
});

test('reporter: signs with the node identity key, reports a gateway state change at once, repeats while down, ignores non-gateways', async (t) => {
  const key = await generateSigningKeyPair();
  const record = await nodeRecord({ name: 'aws-n1', identityKey: key.publicKey });
  const sent: Uint8Array[] = [];
  const clock = new ManualClock(1_700_000_000_000);
  const r = new GatewayReporter({ clock, logger: silentLogger(), nodeName: () => 'aws-n1', identitySecretKey: key.secretKey, publish: (p) => sent.push(p) > 0, repeatMs: 2000, keepaliveMs: 8000 });
  r.setGateways(new Set(['gcp-g1']));
  r.observe('azure-n1', 'down');
  r.observe('gcp-g1', 'pending');
  r.start();
  r.observe('gcp-g1', 'up');
  r.observe('gcp-g1', 'up');
  r.observe('gcp-g1', 'down');
  await waitFor(() => sent.length === 2, { timeoutMs: 5000, intervalMs: 5, what: 'two reports' });
  const opened = await Promise.all(sent.map((p) => verifyGatewayReport(p, () => record, clock.now(), 30_000)));
  t.deepEqual(opened.map((o) => o.verdicts), [up('gcp-g1'), down('gcp-g1')]);
  t.true((opened[1]?.at ?? 0) > (opened[0]?.at ?? 0), 'strictly increasing at');
  clock.advance(2000);
  await waitFor(() => sent.length === 3, { timeoutMs: 5000, intervalMs: 5, what: 'repeated while down' });
  r.setGateways(new Set());
  clock.advance(2000);
  clock.advance(2000);
  await r.stop();
  t.is(sent.length, 3, 'no gateways: nothing to report');
});

test('reporter: a new gateway not yet seen answering is reported down only after its grace (no deposing a fresh failover target mid-handshake); one that answered, at once', async (t) => {
  const key = await generateSigningKeyPair();
  const record = await nodeRecord({ name: 'onprem-n1', identityKey: key.publicKey });
  const sent: Uint8Array[] = [];
  const clock = new ManualClock(1_700_000_000_000);
  const r = new GatewayReporter({ clock, logger: silentLogger(), nodeName: () => 'onprem-n1', identitySecretKey: key.secretKey, publish: (p) => sent.push(p) > 0, repeatMs: 2000, keepaliveMs: 8000, newGatewayGraceMs: 6000 });
  const opened = (): Promise<GatewayHealthReport[]> => Promise.all(sent.map((p) => verifyGatewayReport(p, () => record, clock.now(), 30_000)));
  r.setGateways(new Set(['gcp-n2']));
  r.start();
  r.observe('gcp-n2', 'down');
  t.deepEqual(r.verdicts(), [], 'within the grace: no verdict at all');
  for (let i = 0; i < 2; i++) {
    clock.advance(2000);
    await new Promise((res) => setImmediate(res));
  }
  t.is(sent.length, 0, '4 s in: still nothing');
  clock.advance(2000);
  await waitFor(() => sent.length === 1, { timeoutMs: 5000, intervalMs: 5, what: 'the down verdict once the grace is over' });
  t.deepEqual((await opened()).map((o) => o.verdicts), [down('gcp-n2')]);
  // It answers, then fails: reported at once (no grace once seen answering).
  r.observe('gcp-n2', 'up');
  r.observe('gcp-n2', 'down');
  await waitFor(() => sent.length === 3, { timeoutMs: 5000, intervalMs: 5, what: 'up, then down at once' });
  t.deepEqual((await opened()).map((o) => o.verdicts).slice(1), [up('gcp-n2'), down('gcp-n2')]);
  await r.stop();
});
