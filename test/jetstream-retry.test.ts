// An operator's command right after a NATS server loss: its JetStream requests are retried while the
// cluster cannot serve them (lib/jetstream-retry.ts), bounded by a deadline, and a compare-and-set
// write whose reply was lost is neither applied twice nor refused as someone else's (StateStore with
// `retry`). Faults injected on an in-memory bucket (GatedKv) and a manual clock: a write that landed
// but timed out, a rival write in the gap, "no responders", a 503, a request never served.
import test from 'ava';
import { JetStreamApiError } from '@nats-io/jetstream';
import type { KvEntry } from '@nats-io/kv';
import { errors } from '@nats-io/transport-node';
import { GatedKv } from './helpers/gated-kv.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { addCluster, ClusterAdminError, EnrolledUncheckedError } from '../coordinator/cluster-admin.ts';
import { adminRetry, bucketOpenError } from '../coordinator/revocation-commands.ts';
import { StateStore } from '../coordinator/store.ts';
import { JetStreamUnavailableError, isJetStreamUnavailable, retryJetStream, type JetStreamRetryOptions } from '../lib/jetstream-retry.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { generateJoinCredential } from '../protocol/join-credential.ts';
import { ClusterDefinition } from '../protocol/messages.ts';
import { generateSigningKeyPair, verifyEnvelope } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';

const timeout = (): Error => new errors.TimeoutError();
/** What nats.js throws for a JetStream request nobody answers at once (no stream leader, no replica subscribed). */
const noResponders = (): Error => Object.assign(new Error('jetstream is not enabled', { cause: new errors.NoRespondersError('$KV.b.enrollments.east') }), { name: 'JetStreamNotEnabled' });

interface Bed {
  readonly gate: GatedKv;
  readonly clock: ManualClock;
  readonly store: StateStore;
  readonly retries: string[];
}

async function bed(rangeReader?: (gate: GatedKv, filter: string) => Promise<KvEntry[]>): Promise<Bed> {
  const gate = new GatedKv();
  const clock = new ManualClock();
  const retries: string[] = [];
  // random 0.5: the waits are exactly the policy's (250 ms, 500 ms, …).
  const retry: JetStreamRetryOptions = { clock, deadlineMs: 30_000, random: () => 0.5, onRetry: (what, err, n, ms) => retries.push(`${what} #${n} ${err instanceof Error ? err.name : ''} ${ms}`) };
  const store = new StateStore(gate.kv, await generateSigningKeyPair(), silentLogger(), [], { retry, ...(rangeReader ? { rangeReader: (filter: string) => rangeReader(gate, filter) } : {}) });
  return { gate, clock, store, retries };
}

async function entriesOf(gate: GatedKv, filter: string): Promise<KvEntry[]> {
  const out: KvEntry[] = [];
  for await (const e of await gate.kv.history({ key: filter })) out.push(e);
  return out;
}

const pending = (b: Bed, n: number): Promise<true> => waitFor(() => b.gate.pending.length >= n || undefined, { timeoutMs: 10_000, intervalMs: 5, what: `${n} held writes` });

test('cluster add: a write that landed but whose reply was lost is retried, found to be ours, and applied once', async (t) => {
  const b = await bed();
  const credential = await generateJoinCredential('east');
  b.gate.held = true;
  const added = addCluster({ store: b.store, clock: b.clock }, { name: 'east', podCidrs: ['10.40.0.0/16'], topology: 'mesh', allowPublic: false, credential });
  await pending(b, 1);
  // The fault: the bucket applies the create, the reply never comes (the stream leader was lost).
  b.gate.held = false;
  b.gate.pending.shift()?.landThenFail(timeout());
  await b.clock.advanceWhenArmed(b.clock.now() + 250, 'the retry after the timeout');
  const r = await added;
  t.is(r.definition.name, 'east');
  t.deepEqual(b.gate.applied, [kvKeys.enrollment('east')], 'exactly one write landed');
  const stored = await b.gate.kv.get(kvKeys.enrollment('east'));
  t.is(stored?.revision, 1);
  // What landed is the definition this run signed, with its credential.
  const def = await b.store.readDefinition('east');
  t.is(def?.value.joinKey, credential.publicKey);
  t.deepEqual(b.retries, ['put enrollments.east #1 TimeoutError 250']);
});

test('adversary: another writer in the gap after a lost reply is a conflict, not taken for ours', async (t) => {
  const b = await bed();
  const rival = await generateSigningKeyPair();
  b.gate.held = true;
  const added = addCluster({ store: b.store, clock: b.clock }, { name: 'east', podCidrs: ['10.40.0.0/16'], topology: 'mesh', allowPublic: false });
  await pending(b, 1);
  // Our create times out without landing; meanwhile someone else enrolls "east" (same key, other bytes).
  b.gate.pending.shift()?.fail(timeout());
  b.gate.held = false;
  const theirs = new StateStore(b.gate.kv, rival, silentLogger());
  const now = b.clock.now();
  await theirs.putDefinition(
    ClusterDefinition.parse({ kind: 'cluster-definition', v: 1, name: 'east', podCidrs: ['10.41.0.0/16'], topology: 'mesh', allowPublic: false, joinKey: (await generateJoinCredential('east')).publicKey, credentialGeneration: 1, createdAt: now, updatedAt: now }),
    undefined,
  );
  await b.clock.advanceWhenArmed(now + 250, 'the retry after the timeout');
  const err = await t.throwsAsync(added, { instanceOf: ClusterAdminError });
  t.regex(err.message, /enrolled by someone else meanwhile/);
  t.deepEqual(b.gate.applied, [kvKeys.enrollment('east')], 'only the rival write landed');
  const stored = await b.gate.kv.get(kvKeys.enrollment('east'));
  await verifyEnvelope(JSON.parse(stored?.string() ?? '{}'), rival.publicKey, ClusterDefinition);
  t.pass();
});

test('cluster add: the re-read after the write, answered by a replica that has not applied it yet, is asked again — not taken for a removal', async (t) => {
  // The enrollments are read by direct gets (any replica): the first read after our write comes from a
  // replica still at the revision before it.
  let reads = 0;
  let lagAt = Number.POSITIVE_INFINITY;
  const b = await bed(async (gate, filter) => {
    reads++;
    const all = await entriesOf(gate, filter);
    const view = all.filter((e) => e.revision <= lagAt);
    lagAt = Number.POSITIVE_INFINITY;
    return view;
  });
  await addCluster({ store: b.store, clock: b.clock }, { name: 'west', podCidrs: ['10.30.0.0/16'], topology: 'mesh', allowPublic: false });
  reads = 0;
  b.gate.held = true;
  const added = addCluster({ store: b.store, clock: b.clock }, { name: 'east', podCidrs: ['10.40.0.0/16'], topology: 'mesh', allowPublic: false });
  await pending(b, 1);
  lagAt = 1; // west's revision: the next read misses east (revision 2)
  b.gate.releaseAll();
  await b.clock.advanceWhenArmed(b.clock.now() + 250, 'the re-read');
  const r = await added;
  t.is(r.definition.name, 'east');
  t.is(reads, 3, 'before the write, the stale read after it, the read again');
  t.deepEqual(b.retries, ['read enrollments.> #1 ReplicaBehindError 250']);
  t.deepEqual([...(await b.store.loadDefinitions()).keys()].sort(), ['east', 'west']);
});

test('cluster add: a check after the write that cannot run reports the cluster enrolled (credential kept), not failed', async (t) => {
  // Nothing half-applied without saying so: the definition is in the bucket, so the command must not
  // drop its credential as it does for a failed enrollment.
  let written = false;
  const b = await bed(async (gate, filter) => {
    if (written) throw Object.assign(new Error('permissions violation for subscription to "$JS.API.DIRECT.GET.KV_b"'), { name: 'PermissionViolationError' });
    return entriesOf(gate, filter);
  });
  b.gate.held = true;
  const added = addCluster({ store: b.store, clock: b.clock }, { name: 'east', podCidrs: ['10.40.0.0/16'], topology: 'mesh', allowPublic: false });
  await pending(b, 1);
  written = true;
  b.gate.releaseAll();
  const err = await t.throwsAsync(added, { instanceOf: EnrolledUncheckedError });
  t.regex(err.message, /cluster "east" is enrolled, but the check for an overlapping enrollment made at the same time could not run \(permissions violation/);
  t.regex(err.message, /its credential is kept/);
  t.is((await b.gate.kv.get(kvKeys.enrollment('east')))?.operation, 'PUT');
});

test('a delete whose reply was lost is found done on the retry, not reported as a conflict', async (t) => {
  const b = await bed();
  const key = kvKeys.enrollment('east');
  const rev = await b.gate.kv.create(key, '{}');
  let calls = 0;
  const kv = b.gate.kv;
  const realDelete = kv.delete.bind(kv);
  // The first delete lands and its reply is lost.
  kv.delete = async (k, opts) => {
    calls++;
    await realDelete(k, opts);
    if (calls === 1) throw timeout();
  };
  const done = b.store.delete(key, rev);
  await b.clock.advanceWhenArmed(b.clock.now() + 250, 'the retry of the delete');
  await done;
  t.is(calls, 2);
  t.is((await kv.get(key))?.operation, 'DEL');
});

test('"no responders" and a 503 are retried on the backoff; the request then served', async (t) => {
  const clock = new ManualClock();
  const seen: string[] = [];
  const faults = [noResponders(), new errors.RequestError('', { cause: new errors.NoRespondersError('$JS.API.STREAM.INFO.KV_b') }), new JetStreamApiError({ code: 503, err_code: 10008, description: 'JetStream system temporarily unavailable' })];
  const start = clock.now();
  const r = retryJetStream(
    'put enrollments.east',
    (n) => {
      const f = faults[n - 1];
      return f ? Promise.reject(f) : Promise.resolve(n);
    },
    { clock, deadlineMs: 30_000, random: () => 0.5, onRetry: (what, err, n, ms) => seen.push(`${what} #${n} ${err instanceof Error ? err.name : ''} ${ms}`) },
  );
  await clock.advanceWhenArmed(start + 250, 'the first retry');
  await clock.advanceWhenArmed(start + 750, 'the second retry');
  await clock.advanceWhenArmed(start + 1750, 'the third retry');
  t.is(await r, 4, 'served on the fourth attempt');
  t.deepEqual(seen, ['put enrollments.east #1 JetStreamNotEnabled 250', 'put enrollments.east #2 RequestError 500', 'put enrollments.east #3 JetStreamApiError 1000']);
});

test('a request never served ends at the deadline with a typed error naming it; other errors are not retried', async (t) => {
  const clock = new ManualClock();
  const start = clock.now();
  let attempts = 0;
  const r = retryJetStream(
    'put enrollments.east',
    () => {
      attempts++;
      return Promise.reject(timeout());
    },
    { clock, deadlineMs: 2000, random: () => 0.5 },
  );
  // 250 + 500 + 1000 ms, then the 250 ms left of the deadline.
  for (const at of [250, 750, 1750, 2000]) await clock.advanceWhenArmed(start + at, `the retry at ${at} ms`);
  const err = await t.throwsAsync(r, { instanceOf: JetStreamUnavailableError });
  t.is(err.what, 'put enrollments.east');
  t.is(err.attempts, 5);
  t.is(attempts, 5);
  t.is(err.elapsedMs, 2000);
  t.regex(err.message, /^put enrollments\.east: not served by NATS JetStream in 5 attempts over 2000 ms \(last: timeout\)/);
  t.is((err.cause as Error).name, 'TimeoutError');

  const conflict = Object.assign(new Error('wrong last sequence: 7'), { name: 'JetStreamApiError', code: 10071, status: 400 });
  let once = 0;
  await t.throwsAsync(
    retryJetStream(
      'put enrollments.east',
      () => {
        once++;
        return Promise.reject(conflict);
      },
      { clock, deadlineMs: 30_000 },
    ),
    { is: conflict },
  );
  t.is(once, 1, 'a CAS conflict is an answer, not retried');
  t.false(isJetStreamUnavailable(new JetStreamApiError({ code: 404, err_code: 10059, description: 'stream not found' })));
});

test('operator commands say once per request what they wait for; a bucket not served in time is not blamed on --bucket', (t) => {
  const lines: string[] = [];
  const o = adminRetry((l) => lines.push(l));
  o.onRetry?.('put enrollments.east', timeout(), 1, 250);
  o.onRetry?.('put enrollments.east', timeout(), 2, 500);
  t.deepEqual(lines, [
    "waiting for NATS JetStream: put enrollments.east was not served (timeout); after a NATS server loss the bucket's stream elects a new leader within seconds — retrying for up to 30 s\n",
  ]);
  const late = bucketOpenError('crosslink', ['nats://a:4222'], new JetStreamUnavailableError('open the bucket "crosslink"', 31, 30_100, { cause: timeout() }));
  t.regex(late.message, /^cannot open the KV bucket "crosslink" on nats:\/\/a:4222: open the bucket "crosslink": not served by NATS JetStream in 31 attempts over 30100 ms \(last: timeout\); after a NATS server loss/);
  t.false(late.message.includes('--bucket'));
  const missing = bucketOpenError('crosslink', ['nats://a:4222'], new JetStreamApiError({ code: 404, err_code: 10059, description: 'stream not found' }));
  t.regex(missing.message, /stream not found \(does the coordinator use another --bucket\?\)$/);
});
