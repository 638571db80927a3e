// The watch broker (coordinator/watch-broker.ts) and the agent's brokered watch
// (agent/control/brokered-watch.ts) on a real nats-server: the entries equal the nats.js watch's,
// the broker refuses what an agent must not get, a flood is rate-limited, and the faults (a consumer
// gone, a sequence gap, every coordinator down) end the watch so MeshWatch resumes, losing nothing.
// The permissions side (an agent credential cannot create any consumer) is in test/nats-auth.test.ts.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { jetstreamManager, type ConsumerInfo, type JetStreamManager } from '@nats-io/jetstream';
import type { KV, KvWatchEntry } from '@nats-io/kv';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { NatsServer } from '../lib/nats-server.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { serveWatchBroker, WATCH_RATE_DEFAULTS, type WatchBroker } from '../coordinator/watch-broker.ts';
import { RegistrationRateLimit } from '../coordinator/rate-limit.ts';
import { agentWatchSource, brokeredWatchSource, parseAckSubject, WatchBrokerError } from '../agent/control/brokered-watch.ts';
import { directWatchSource, type KeyWatch } from '../agent/control/key-watch.ts';
import { MeshWatch } from '../agent/control/mesh-watch.ts';
import { WatchReply, parseWatchRequest } from '../protocol/watch-broker.ts';
import { generateSigningKeyPair, type SigningKeyPair } from '../protocol/signing.ts';
import { nodeRecord, openBucket, putNode } from './agent-helpers.ts';

const BUCKET = 'crosslink';
const STREAM = `KV_${BUCKET}`;

let server: NatsServer;
let cnc: NatsConnection; // the coordinator's connection
let anc: NatsConnection; // the agent's
let kv: KV;
let jsm: JetStreamManager;
let key: SigningKeyPair;
const brokers: WatchBroker[] = [];

test.before(async () => {
  server = await NatsServer.start({ name: `xl-wbroker-${randomBytes(3).toString('hex')}` });
  cnc = await connect({ servers: server.url });
  anc = await connect({ servers: server.url });
  kv = await openBucket(cnc, BUCKET);
  jsm = await jetstreamManager(cnc);
  key = await generateSigningKeyPair();
});
test.after.always(async () => {
  for (const b of brokers.splice(0)) await b.stop();
  await anc?.close();
  await cnc?.close();
  await server?.stop();
});

/** A broker on its own subject prefix (so each test has its own), with a short heartbeat. */
/** A broker serving `prefix`, its subscription flushed to the server (else the first request may find no responders). */
async function broker(prefix: string, o: { burst?: number; ratePerSecond?: number; catchUpEntryRate?: { ratePerSecond: number; burst: number } } = {}): Promise<WatchBroker> {
  const b = serveWatchBroker({ nc: cnc, bucket: BUCKET, subjectPrefix: prefix, logger: silentLogger(), clock: systemClock, signingKey: key, heartbeatMs: 200, inactiveMs: 5000, ...o });
  brokers.push(b);
  await cnc.flush();
  return b;
}

/** The entries `w` yields, as they come; `ended` marks the end of the iteration. */
function collect(w: KeyWatch): KvWatchEntry[] & { ended?: boolean } {
  const out: KvWatchEntry[] & { ended?: boolean } = [];
  void (async () => {
    for await (const e of w) out.push(e);
    out.ended = true;
  })();
  return out;
}

const view = (e: KvWatchEntry): object => ({ key: e.key, revision: e.revision, operation: e.operation, isUpdate: e.isUpdate, value: e.string() });

async function consumerNames(): Promise<string[]> {
  const names: string[] = [];
  for await (const c of jsm.consumers.list(STREAM)) names.push(c.name);
  return names;
}

test('ack subjects: both the 9-token and the 12-token form; anything else is not ours', (t) => {
  t.like(parseAckSubject('$JS.ACK.KV_b.xlw_1.1.42.7.1700000000000000000.3'), { consumer: 'xlw_1', streamSeq: 42, consumerSeq: 7, pending: 3 });
  t.like(parseAckSubject('$JS.ACK.dom.hash.KV_b.xlw_1.1.42.7.1700000000000000000.3.r'), { consumer: 'xlw_1', streamSeq: 42, consumerSeq: 7, pending: 3 });
  t.is(parseAckSubject('$JS.ACK.KV_b.xlw_1.1.x.7.1.3'), undefined);
  t.is(parseAckSubject('_INBOX.x'), undefined);
  t.is(parseAckSubject(undefined), undefined);
});

test('requests: only readable filters, inbox deliver subjects and the two start kinds; any other field is refused by name', (t) => {
  const req = (o: object): ReturnType<typeof parseWatchRequest> => parseWatchRequest(new TextEncoder().encode(JSON.stringify(o)));
  const ok = { kind: 'watch', filter: 'nodes.>', deliverSubject: '_INBOX.abc', start: { kind: 'last-per-subject' } };
  t.true(req(ok).ok);
  t.true(req({ ...ok, start: { kind: 'after', revision: 12 } }).ok);
  t.true(req({ kind: 'count', filter: 'clusters.>' }).ok);
  for (const filter of ['ipam.>', 'identities.>', 'revoked.>', 'coordinator.lease', '>', 'nodes.*', 'policy.>']) t.like(req({ ...ok, filter }), { ok: false, code: 'bad-request', field: 'filter' }, filter);
  for (const d of ['crosslink.v1.heartbeat', '_INBOX.>', '_INBOX.*', '_INBOX', '_XL_COORD.x', '_INBOX.a b']) t.like(req({ ...ok, deliverSubject: d }), { ok: false, code: 'bad-request', field: 'deliverSubject' }, d);
  const durable = req({ ...ok, durable_name: 'evil' });
  t.like(durable, { ok: false, code: 'bad-request', field: 'durable_name' });
  t.regex(durable.ok ? '' : durable.message, /durable_name: "evil" is not valid; fields allowed/);
  t.like(req({ ...ok, start: { kind: 'all' } }), { ok: false, field: 'start.kind' });
  t.like(req({ ...ok, start: { kind: 'after', revision: -1 } }), { ok: false, field: 'start.revision' });
  t.like(parseWatchRequest(new TextEncoder().encode('not json')), { ok: false, field: '(body)' });
});

test('the defaults let 1,000 agents re-create five watches each at once, and bound a flood to the burst plus the refill', (t) => {
  const limit = new RegistrationRateLimit(WATCH_RATE_DEFAULTS.ratePerSecond, WATCH_RATE_DEFAULTS.burst);
  let ok = 0;
  for (let i = 0; i < 1000 * 5; i++) if (limit.take('watch', 0).ok) ok++;
  t.is(ok, 5000, 'the fleet\'s re-watch storm');
  for (let i = 0; i < 20_000; i++) if (limit.take('watch', 0).ok) ok++;
  t.is(ok, WATCH_RATE_DEFAULTS.burst, 'a flood at the same instant gets the burst');
  t.false(limit.take('watch', 1).ok);
  t.true(limit.take('watch', 1000).ok, 'then the refill');
});

test.serial('a brokered watch yields what the nats.js watch yields (keys, revisions, operations, snapshot/update), and resumes after a revision', async (t) => {
  const prefix = 'xl.same';
  await broker(prefix);
  await kv.put('services.ns.a.c1', 'one');
  await kv.put('services.ns.b.c1', 'two');
  await kv.delete('services.ns.a.c1');
  const src = brokeredWatchSource({ nc: anc, bucket: BUCKET, subjectPrefix: prefix, logger: silentLogger(), clock: systemClock, coordinatorKey: key.publicKey });
  const direct = directWatchSource({ nc: cnc, bucket: BUCKET });
  const [bw, dw] = await Promise.all([src.watch({ key: 'services.>' }), direct.watch({ key: 'services.>' })]);
  t.teardown(() => {
    bw.stop();
    dw.stop();
  });
  t.is(await bw.initialCount(), 2);
  t.is(await bw.initialCount(), await dw.initialCount());
  const b = collect(bw);
  const d = collect(dw);
  await waitFor(() => b.length >= 2 && d.length >= 2, { timeoutMs: 10_000, what: 'both snapshots' });
  const rev = await kv.put('services.ns.c.c1', 'three');
  await waitFor(() => b.length >= 3 && d.length >= 3, { timeoutMs: 10_000, what: 'the update on both' });
  const got = { b: b.map(view), d: d.map(view) };
  t.deepEqual(got.b, got.d);
  t.like(got.b[0], { key: 'services.ns.b.c1', operation: 'PUT', isUpdate: false });
  t.like(got.b[1], { key: 'services.ns.a.c1', operation: 'DEL', isUpdate: true }, 'the snapshot\'s last entry is marked as nats.js marks it');
  t.like(got.b[2], { key: 'services.ns.c.c1', operation: 'PUT', isUpdate: true, revision: rev, value: 'three' });
  t.is(src.stats().brokered, 1);
  // Resume: only what came at or after the revision.
  const resumed = await src.watch({ key: 'services.>', resumeFromRevision: rev });
  t.teardown(() => resumed.stop());
  const r = collect(resumed);
  await waitFor(() => r.length >= 1, { timeoutMs: 10_000, what: 'the resumed watch' });
  t.deepEqual(r.map((e) => e.key), ['services.ns.c.c1']);
  t.deepEqual((await src.count('services.>')), { keys: 3, lastRevision: rev });
});

test.serial('the broker refuses on the wire what an agent must not get, and creates no consumer for it', async (t) => {
  const prefix = 'xl.refuse';
  await broker(prefix);
  const before = await consumerNames();
  const ask = async (body: object): Promise<WatchReply> => WatchReply.parse(JSON.parse((await anc.request(`${prefix}.watch`, JSON.stringify(body), { timeout: 5000 })).string()));
  const ok = { kind: 'watch', filter: 'nodes.>', deliverSubject: '_INBOX.refused', start: { kind: 'last-per-subject' } };
  const cases: [object, string][] = [
    [{ ...ok, filter: 'ipam.>' }, 'filter'],
    [{ ...ok, filter: 'identities.>' }, 'filter'],
    [{ ...ok, filter: 'revoked.>' }, 'filter'],
    [{ ...ok, filter: 'coordinator.lease' }, 'filter'],
    [{ kind: 'count', filter: 'ipam.>' }, 'filter'],
    [{ ...ok, durable_name: 'evil' }, 'durable_name'],
    [{ ...ok, deliverSubject: 'crosslink.v1.heartbeat' }, 'deliverSubject'],
    [{ ...ok, deliverSubject: '_INBOX.>' }, 'deliverSubject'],
  ];
  for (const [body, field] of cases) t.like(await ask(body), { ok: false, code: 'bad-request', field }, JSON.stringify(body));
  t.deepEqual(await consumerNames(), before, 'no consumer was created');
});

test.serial('a flood is rate-limited with a retry hint; the source reports it as a typed refusal', async (t) => {
  const prefix = 'xl.flood';
  const b = await broker(prefix, { burst: 3, ratePerSecond: 0.1 });
  const src = brokeredWatchSource({ nc: anc, bucket: BUCKET, subjectPrefix: prefix, logger: silentLogger(), clock: systemClock, coordinatorKey: key.publicKey });
  const results = await Promise.allSettled(Array.from({ length: 10 }, () => src.count('nodes.>')));
  const refused = results.filter((r) => r.status === 'rejected').map((r) => r.reason as unknown);
  t.is(results.filter((r) => r.status === 'fulfilled').length, 3);
  t.is(refused.length, 7);
  for (const err of refused) t.true(err instanceof WatchBrokerError && err.code === 'rate-limited' && (err.retryAfterMs ?? 0) > 0, String(err));
  t.like(b.stats(), { counted: 3, rateLimited: 7 });
});

function brokeredMeshWatch(t: import('ava').ExecutionContext, prefix: string): { watch: MeshWatch; src: ReturnType<typeof brokeredWatchSource> } {
  const src = brokeredWatchSource({ nc: anc, bucket: BUCKET, subjectPrefix: prefix, logger: silentLogger(), clock: systemClock, requestTimeoutMs: 2000, coordinatorKey: key.publicKey });
  const watch = new MeshWatch({ nc: anc, watches: src, bucket: BUCKET, coordinatorKey: key.publicKey, logger: silentLogger(), clock: systemClock, debounceMs: 20, retryMinMs: 50, retryMaxMs: 300, auditIntervalMs: 0, progressCheckMs: 0, rewatchJitterMs: 0 });
  t.teardown(() => watch.stop());
  return { watch, src };
}

async function deleteWatchConsumers(): Promise<number> {
  let n = 0;
  for (const name of await consumerNames()) {
    if (!name.startsWith('xlw_')) continue;
    await jsm.consumers.delete(STREAM, name).catch(() => undefined);
    n++;
  }
  return n;
}

test.serial('fault: the consumers vanish (no heartbeats): the watch ends and MeshWatch resumes through the broker from its revision; the audit counts through the broker', async (t) => {
  const prefix = 'xl.vanish';
  await broker(prefix);
  await putNode(kv, key, await nodeRecord({ name: 'v1' }));
  const { watch, src } = brokeredMeshWatch(t, prefix);
  watch.start();
  await waitFor(() => watch.snapshot().nodes.has('v1') && watch.stats().live, { timeoutMs: 10_000, what: 'the first snapshot' });
  t.deepEqual(await watch.runAudit(), { kind: 'in-step' });
  t.true((await deleteWatchConsumers()) >= 2);
  await waitFor(() => src.stats().silent >= 1 && watch.stats().resumes >= 1 && watch.stats().live, { timeoutMs: 15_000, what: 'a resumed session after the heartbeats stopped' });
  await putNode(kv, key, await nodeRecord({ name: 'v2' }));
  await waitFor(() => watch.snapshot().nodes.has('v2'), { timeoutMs: 10_000, what: 'a later change through the resumed watch' });
  const s = { watch: watch.stats(), src: src.stats() };
  t.is(s.watch.auditRereads, 0, 'no full re-read');
  t.true(s.src.brokered >= 4, `brokered watches: ${s.src.brokered}`);
  t.is(s.src.fallbacks, 0);
});

test.serial('fault: a heartbeat showing a delivery we never got ends the watch rather than skipping; a message published into the inbox is not taken for a delivery', async (t) => {
  const prefix = 'xl.gap';
  await broker(prefix);
  await kv.put('clusters.gap', 'x');
  // Earlier tests' watches on clusters.> leave consumers behind until their inactive threshold: the
  // one found below must be this watch's (else the forged heartbeat goes to a dead inbox).
  await deleteWatchConsumers();
  const src = brokeredWatchSource({ nc: anc, bucket: BUCKET, subjectPrefix: prefix, logger: silentLogger(), clock: systemClock, coordinatorKey: key.publicKey });
  const w = await src.watch({ key: 'clusters.>' });
  t.teardown(() => w.stop());
  const got = collect(w);
  await waitFor(() => got.length >= 1, { timeoutMs: 10_000, what: 'the snapshot' });
  const info = await waitFor(async () => {
    const ours: ConsumerInfo[] = [];
    for await (const c of jsm.consumers.list(STREAM)) if (c.name.startsWith('xlw_') && c.config.filter_subject === `$KV.${BUCKET}.clusters.>`) ours.push(c);
    // Exactly this watch's consumer, everything delivered and received (the forged heartbeat claims one more).
    const c = ours.length === 1 ? ours[0] : undefined;
    return c && c.num_pending === 0 && c.delivered.consumer_seq >= 1 && got.length === c.delivered.consumer_seq ? c : undefined;
  }, { timeoutMs: 5000, what: 'the watch consumer, alone, with everything delivered' });
  const inbox = info.config.deliver_subject ?? '';
  // A publish into the inbox dressed as the next delivery: not yielded (its subject is the inbox, not a key).
  anc.publish(inbox, 'forged', { reply: `$JS.ACK.${STREAM}.${info.name}.1.999999.${info.delivered.consumer_seq + 1}.0.0` });
  // The server's idle heartbeat says the consumer delivered one more than we received (a lost delivery).
  const h = headers(100, 'Idle Heartbeat');
  h.set('Nats-Last-Consumer', String(info.delivered.consumer_seq + 1));
  h.set('Nats-Last-Stream', '999999');
  anc.publish(inbox, '', { headers: h });
  await waitFor(() => src.stats().gaps === 1 && got.ended === true, { timeoutMs: 5000, what: 'the watch ended on the gap' });
  t.deepEqual(got.map((e) => e.key), ['clusters.gap'], 'only the real delivery was yielded');
  await jsm.consumers.delete(STREAM, info.name).catch(() => undefined);
});

test.serial('fail-static: with every coordinator down a live watch keeps delivering; re-creation retries until one is back and nothing is lost', async (t) => {
  const prefix = 'xl.down';
  const first = await broker(prefix);
  await putNode(kv, key, await nodeRecord({ name: 'd1' }));
  const { watch, src } = brokeredMeshWatch(t, prefix);
  watch.start();
  await waitFor(() => watch.snapshot().nodes.has('d1') && watch.stats().live, { timeoutMs: 10_000, what: 'the first snapshot' });
  await first.stop();
  await putNode(kv, key, await nodeRecord({ name: 'd2' }));
  await waitFor(() => watch.snapshot().nodes.has('d2'), { timeoutMs: 10_000, what: 'a change through the existing consumer, no coordinator up' });
  // The consumers go too (a NATS server lost): re-creation fails while no coordinator serves.
  await deleteWatchConsumers();
  await putNode(kv, key, await nodeRecord({ name: 'd3' }));
  await waitFor(() => /no coordinator serves/.test(watch.stats().lastError ?? ''), { timeoutMs: 15_000, what: 'a failed re-creation' });
  t.true(watch.snapshot().nodes.has('d1') && watch.snapshot().nodes.has('d2'), 'nothing held was dropped');
  await broker(prefix);
  await waitFor(() => watch.snapshot().nodes.has('d3') && watch.stats().live, { timeoutMs: 15_000, what: 'the change made while no coordinator was up' });
  t.true(watch.stats().resumes >= 1);
  t.is(src.stats().fallbacks, 0);
});

test.serial('no coordinator serves the subject (an older one): the agent\'s source falls back to the direct watch', async (t) => {
  const src = agentWatchSource({ nc: anc, bucket: BUCKET, subjectPrefix: 'xl.nobody', logger: silentLogger(), clock: systemClock, coordinatorKey: key.publicKey });
  const w = await src.watch({ key: 'clusters.>' });
  t.teardown(() => w.stop());
  const got = collect(w);
  await waitFor(() => got.length >= 1, { timeoutMs: 10_000, what: 'the fallback watch' });
  t.like(src.stats(), { fallbacks: 1, brokered: 0 });
});

test.serial('catchup: the entries after a revision equal what a resumed watch delivers (puts, deletes, purges, values), page by page, with no consumer created', async (t) => {
  const prefix = 'xl.catchup';
  const b = await broker(prefix);
  const filter = 'enrollments.>';
  const start = (await jsm.streams.info(STREAM)).state.last_seq;
  t.true((await jsm.streams.info(STREAM)).config.allow_direct, 'the bucket serves direct gets (any replica)');
  await kv.put('enrollments.e1', 'one');
  await kv.put('enrollments.e2', 'two');
  await kv.put('nodes.not-in-range', 'x');
  await kv.delete('enrollments.e1');
  await kv.put('enrollments.e3', new Uint8Array([0, 255, 1]));
  await kv.purge('enrollments.e2');
  const last = await kv.put('enrollments.e4', 'four');
  const src = brokeredWatchSource({ nc: anc, bucket: BUCKET, subjectPrefix: prefix, logger: silentLogger(), clock: systemClock, coordinatorKey: key.publicKey });
  const consumersBefore = await consumerNames();
  // Page by page (2 entries each) from the start revision.
  const pages: number[] = [];
  const got: object[] = [];
  let after = start;
  for (;;) {
    const page = await src.catchUp({ filter, afterRevision: after, limit: 2 });
    pages.push(page.entries.length);
    for (const e of page.entries) got.push({ key: e.key, revision: e.revision, operation: e.operation, value: Buffer.from(e.value).toString('hex') });
    after = page.entries.at(-1)?.revision ?? after;
    if (!page.more) break;
  }
  t.deepEqual(await consumerNames(), consumersBefore, 'no consumer created by a catch-up');
  // What a watch resumed at the same revision delivers (a purge leaves only its marker in the stream: both read the stream).
  const w = await directWatchSource({ nc: cnc, bucket: BUCKET }).watch({ key: filter, resumeFromRevision: start + 1 });
  t.teardown(() => w.stop());
  const d = collect(w);
  await waitFor(() => d.some((e) => e.revision === last), { timeoutMs: 10_000, what: 'the watch up to the last revision' });
  t.deepEqual(got, d.map((e) => ({ key: e.key, revision: e.revision, operation: e.operation, value: Buffer.from(e.value).toString('hex') })));
  t.deepEqual(
    got.map((e) => `${(e as { key: string }).key}:${(e as { operation: string }).operation}`),
    ['enrollments.e1:PUT', 'enrollments.e1:DEL', 'enrollments.e3:PUT', 'enrollments.e2:PURGE', 'enrollments.e4:PUT'],
    'e1 put then deleted (history kept), e2\'s put gone with its purge, e3, e4; nothing outside the range',
  );
  t.deepEqual(pages, [2, 2, 1]);
  t.is(b.stats().caughtUp, 3);
  t.is(src.stats().catchUps, 3);
  // Nothing after the newest revision.
  t.deepEqual(await src.catchUp({ filter, afterRevision: last, limit: 10 }), { entries: [], more: false });
});

test.serial('catchup: the entries read are budgeted per replica: a page is cut to what is left (more follows), then refused rate-limited; an empty poll costs no entries', async (t) => {
  const prefix = 'xl.catchup-budget';
  const b = await broker(prefix, { catchUpEntryRate: { ratePerSecond: 0.001, burst: 3 } });
  const filter = 'enrollments.>';
  const start = (await jsm.streams.info(STREAM)).state.last_seq;
  let last = start;
  for (let i = 1; i <= 5; i++) last = await kv.put(`enrollments.budget-${i}`, `b${i}`);
  const src = brokeredWatchSource({ nc: anc, bucket: BUCKET, subjectPrefix: prefix, logger: silentLogger(), clock: systemClock, coordinatorKey: key.publicKey });
  // Polls with nothing new (what every agent in catch-up sends each second) give their budget back.
  for (let i = 0; i < 5; i++) t.deepEqual(await src.catchUp({ filter, afterRevision: last, limit: 10 }), { entries: [], more: false });
  const first = await src.catchUp({ filter, afterRevision: start, limit: 10 });
  t.deepEqual(
    first.entries.map((e) => e.key),
    ['enrollments.budget-1', 'enrollments.budget-2', 'enrollments.budget-3'],
    'cut to the 3 entries of budget',
  );
  t.true(first.more, 'a page cut short says more follows');
  const err = await t.throwsAsync(src.catchUp({ filter, afterRevision: first.entries.at(-1)?.revision ?? start, limit: 10 }));
  t.true(err instanceof WatchBrokerError && err.code === 'rate-limited' && (err.retryAfterMs ?? 0) > 0, String(err));
  t.like(b.stats(), { caughtUp: 6, rateLimited: 1 });
});

test.serial('catchup: the broker refuses internal filters, unknown fields and bad limits by name; the agent refuses a page not signed by the coordinator', async (t) => {
  const prefix = 'xl.catchup-refuse';
  const b = await broker(prefix);
  const ask = async (body: object): Promise<unknown> => JSON.parse((await anc.request(`${prefix}.watch`, JSON.stringify(body), { timeout: 5000 })).string()) as unknown;
  const ok = { kind: 'catchup', filter: 'nodes.>', afterRevision: 0, limit: 10, nonce: 'abcdefgh12' };
  const cases: [object, string][] = [
    ...['ipam.>', 'identities.>', 'revoked.>', 'coordinator.lease', '>', 'nodes.*'].map((filter): [object, string] => [{ ...ok, filter }, 'filter']),
    [{ ...ok, deliverSubject: '_INBOX.x' }, 'deliverSubject'],
    [{ ...ok, next_by_subj: '$KV.crosslink.ipam.>' }, 'next_by_subj'],
    [{ ...ok, limit: 0 }, 'limit'],
    [{ ...ok, limit: 257 }, 'limit'],
    [{ ...ok, afterRevision: -1 }, 'afterRevision'],
    [{ ...ok, nonce: 'x' }, 'nonce'],
  ];
  for (const [body, field] of cases) t.like(await ask(body), { ok: false, code: 'bad-request', field }, JSON.stringify(body));
  const extra = await ask({ ...ok, next_by_subj: 'x' });
  t.regex((extra as { message: string }).message, /fields allowed: kind, filter, afterRevision, limit, nonce/);
  t.is(b.stats().caughtUp, 0);
  t.is(b.stats().refused, cases.length + 1);
  // A source that trusts another key (a forger's coordinator) refuses the genuine page: pages are checked, not taken.
  const other = await generateSigningKeyPair();
  const wrong = brokeredWatchSource({ nc: anc, bucket: BUCKET, subjectPrefix: prefix, logger: silentLogger(), clock: systemClock, coordinatorKey: other.publicKey });
  const err = await t.throwsAsync(wrong.catchUp({ filter: 'nodes.>', afterRevision: 0, limit: 5 }));
  t.true(err instanceof WatchBrokerError && err.code === 'unavailable' && /failed verification/.test(err.message), String(err));
});
