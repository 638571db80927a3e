// protocol/kv-record.ts: a stored node or cluster record is judged the same whether its signature is
// checked on libuv's thread pool (the watch's initial load) or on the calling thread (a live entry).
import test from 'ava';
import { verifyKvRecord } from '../protocol/kv-record.ts';
import { generateSigningKeyPair, signEnvelope } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { clusterRecord, nodeRecord } from './agent-helpers.ts';

const bytes = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));

test('thread pool or not: the same verdicts for a good record, a forgery, a record under another key and an older generation', async (t) => {
  const coordinator = await generateSigningKeyPair();
  const forger = await generateSigningKeyPair();
  const a = await nodeRecord({ name: 'node-a', generation: 5 });
  const good = bytes(await signEnvelope(a, coordinator.secretKey));
  const forged = bytes(await signEnvelope(a, forger.secretKey));
  const cluster = bytes(await signEnvelope(clusterRecord({ name: 'c1' }), coordinator.secretKey));
  const cases = [
    { key: kvKeys.node('node-a'), value: good, held: undefined, ok: true },
    { key: kvKeys.node('node-a'), value: forged, held: undefined, ok: false, reason: /does not verify/ },
    { key: kvKeys.node('node-b'), value: good, held: undefined, ok: false, reason: /stored under/ },
    { key: kvKeys.node('node-a'), value: good, held: 6, ok: false, reason: /older/ },
    { key: kvKeys.cluster('c1'), value: cluster, held: undefined, ok: true },
    { key: kvKeys.cluster('c1'), value: good, held: undefined, ok: false, reason: /not a valid cluster record/ },
  ];
  for (const c of cases) {
    const pooled = await verifyKvRecord(c.key, c.value, coordinator.publicKey, c.held, true);
    const inline = await verifyKvRecord(c.key, c.value, coordinator.publicKey, c.held, false);
    t.deepEqual(inline, pooled, c.key);
    t.is(inline?.ok, c.ok, c.key);
    if (inline && !inline.ok && c.reason) t.regex(inline.reason, c.reason);
  }
  t.is(await verifyKvRecord('ipam.node-a', good, coordinator.publicKey, undefined, false), undefined);
});
