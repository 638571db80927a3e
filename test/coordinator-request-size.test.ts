// The adversary holding one agent's NATS user (docs/security-review.md finding 5), against a real
// nats-server and coordinator: a request padded past its subject's byte limit (protocol/request-size.ts)
// is refused `invalid` (the watch protocol's `bad-request`) with its size and the limit in the reply,
// before it is parsed — nothing stored, counted with the refusals — on every request subject the
// coordinator answers: registration, deregistration, service export and unexport, watch/count/catch-up
// (and gateway reports, published without a reply: refused and logged). The largest honest request of
// each kind (every field at the longest its schema allows: test/helpers/largest-requests.ts) still
// passes, with at least half its limit to spare (the largest gateway report: test/gateway-health.test.ts).
import test from 'ava';
import * as z from 'zod';
import { pino } from 'pino';
import { rpc } from './helpers/fake-agent.ts';
import { largestRequests, signedBody } from './helpers/largest-requests.ts';
import { present, startCoordinatorEnv } from './helpers/coordinator-fixture.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';
import { waitFor } from '../lib/wait.ts';
import type { CoordinatorMetricsHooks } from '../coordinator/metrics.ts';
import { ErrorBody, RegisterReply } from '../protocol/messages.ts';
import { REQUEST_MAX_BYTES, type RequestKind } from '../protocol/request-size.ts';
import { serviceKeys, serviceSubjects } from '../protocol/service.ts';
import { kvKeys, subjects } from '../protocol/subjects.ts';
import { CatchUpReply, WatchReply } from '../protocol/watch-broker.ts';

const server = useNatsServer('xl-reqsize');

const Reply = z.object({ ok: z.boolean(), error: ErrorBody.optional() });

/** `body` (a JSON object) with padding beside its fields, just past `kind`'s limit. */
const padded = (body: string, kind: RequestKind): string => JSON.stringify({ ...(JSON.parse(body) as object), pad: 'x'.repeat(REQUEST_MAX_BYTES[kind]) });

test('every request subject refuses a request over its byte limit invalid, naming its size, before it is parsed (nothing stored, counted, logged once); the largest honest request of each kind passes', async (t) => {
  const registrations: string[] = [];
  const tooLargeCounted: string[] = [];
  const metrics: CoordinatorMetricsHooks = { registration: (r) => void registrations.push(r), heartbeat: () => undefined, heartbeatForm: () => undefined, heartbeatMacAgreement: () => undefined, nodeRemoved: () => undefined, requestTooLarge: (k) => void tooLargeCounted.push(k) };
  const lines: { level: number; msg: string; kind?: string; bytes?: number; max?: number }[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as { level: number; msg: string }) });
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlreqsize', config: { nodeTtl: '60s' }, metrics, logger });
  const s = subjects(env.prefix);
  const ss = serviceSubjects(env.prefix);
  const largest = await largestRequests();
  const req = largest.registration;
  const credential = await env.enrollment.enroll(req.cluster, ['fd12:3456:789a:bcde:f012:3456::/96'], 'gateway');
  const now = (): number => Date.now();

  /** Sends `honest` padded past `kind`'s limit: refused invalid naming both sizes; then `honest` itself: not refused for its size. */
  const check = async <R extends z.ZodType>(kind: RequestKind, subject: string, honest: string, schema: R, refusalOf: (r: z.infer<R>) => { code: string; field?: string | undefined; message: string } | undefined): Promise<z.infer<R>> => {
    t.true(honest.length <= REQUEST_MAX_BYTES[kind] / 2, `${kind}: the largest honest one is ${honest.length} bytes, limit ${REQUEST_MAX_BYTES[kind]}`);
    const big = padded(honest, kind);
    const refusal = refusalOf(await rpc(env.nc, subject, big, schema));
    t.like(refusal, { code: kind === 'watch request' ? 'bad-request' : 'invalid' }, `${kind}: the padded one is refused`);
    t.true(refusal?.message.includes(`is ${big.length} bytes; at most ${REQUEST_MAX_BYTES[kind]} are read`), `${kind}: ${refusal?.message}`);
    const reply = await rpc(env.nc, subject, honest, schema);
    t.false(refusalOf(reply)?.message.includes('are read') ?? false, `${kind}: the honest one is not refused for its size`);
    return reply;
  };
  const errorOf = (r: { ok: boolean; error?: ErrorBody | undefined }): ErrorBody | undefined => (r.ok ? undefined : r.error);

  // Registration: refused unread (no record, counted invalid); the largest honest one is admitted.
  const registration = await signedBody({ ...req, sentAt: now() }, largest.identity, credential.secretKey);
  const registerPadded = padded(registration, 'registration');
  t.like(await rpc(env.nc, s.register, registerPadded, RegisterReply), { ok: false, error: { code: 'invalid', field: '(root)' } });
  t.false(await present(env.kv, kvKeys.node(req.name)), 'nothing stored for the padded registration');
  t.deepEqual(registrations, ['invalid'], 'counted with the refused registrations');
  const admitted = await check('registration', s.register, await signedBody({ ...req, sentAt: now() }, largest.identity, credential.secretKey), RegisterReply, errorOf);
  t.like(admitted, { ok: true }, JSON.stringify(admitted));
  t.true(await present(env.kv, kvKeys.node(req.name)));

  // Service export and unexport of the largest service, by the node just registered.
  const exportKey = serviceKeys.export(largest.serviceExport.namespace, largest.serviceExport.name, largest.serviceExport.cluster);
  const exportPadded = padded(await signedBody({ ...largest.serviceExport, sentAt: now() }, largest.identity), 'service export');
  t.like(await rpc(env.nc, ss.export, exportPadded, Reply), { ok: false, error: { code: 'invalid', field: '(root)' } });
  t.false(await present(env.kv, exportKey), 'nothing stored for the padded export');
  t.like(await check('service export', ss.export, await signedBody({ ...largest.serviceExport, sentAt: now() }, largest.identity), Reply, errorOf), { ok: true });
  t.true(await present(env.kv, exportKey));
  t.like(await check('service unexport', ss.unexport, await signedBody({ ...largest.serviceUnexport, sentAt: now() }, largest.identity), Reply, errorOf), { ok: true });
  t.false(await present(env.kv, exportKey));

  // Watch broker: watch, count and catch-up requests at their largest.
  const watchRefusal = (r: WatchReply | CatchUpReply): { code: string; field?: string | undefined; message: string } | undefined => (r.ok ? undefined : r);
  for (const w of largest.watch) t.like(await check('watch request', s.watch, JSON.stringify(w), w.kind === 'catchup' ? CatchUpReply : WatchReply, watchRefusal), { ok: true }, w.kind);

  // Deregistration last: the padded one leaves the node in place.
  const deregistration = await signedBody({ ...largest.deregistration, sentAt: now() }, largest.identity);
  t.like(await rpc(env.nc, s.deregister, padded(deregistration, 'deregistration'), Reply), { ok: false, error: { code: 'invalid' } });
  t.true(await present(env.kv, kvKeys.node(req.name)), 'the padded deregistration removed nothing');
  t.like(await check('deregistration', s.deregister, await signedBody({ ...largest.deregistration, sentAt: now() }, largest.identity), Reply, errorOf), { ok: true });
  t.false(await present(env.kv, kvKeys.node(req.name)));

  // Gateway reports are published without a reply: the refusal shows in the log only.
  const reportPadded = padded(await signedBody({ ...largest.gatewayReport, at: now() }, largest.identity), 'gateway report');
  env.nc.publish(s.gatewayHealth, reportPadded);
  await waitFor(() => lines.some((l) => l.msg === 'request refused: too large' && l.kind === 'gateway report'), { timeoutMs: 5000, intervalMs: 5, what: 'the padded gateway report refused for its size' });

  // Logged at info once per kind within the interval (anyone can send them at will), the repeat at debug.
  const tooLarge = lines.filter((l) => l.msg === 'request refused: too large');
  const infoKinds = tooLarge.filter((l) => l.level === 30).map((l) => l.kind);
  t.deepEqual([...infoKinds].sort(), ['deregistration', 'gateway report', 'registration', 'service export', 'service unexport', 'watch request'], 'once at info per kind');
  t.like(tooLarge.find((l) => l.kind === 'registration'), { bytes: registerPadded.length, max: REQUEST_MAX_BYTES.registration });
  t.deepEqual([...tooLargeCounted].sort(), tooLarge.map((l) => l.kind).sort(), 'every one counted (crosslink_coordinator_requests_too_large_total)');
  t.is(tooLarge.filter((l) => l.level === 20).length, 1 + 1 + 2 + 1, 'the repeats at debug (registration, export, two watch requests, deregistration)');
});
