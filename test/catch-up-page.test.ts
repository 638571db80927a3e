// A catch-up page (coordinator/catch-up-page.ts → agent/control/catch-up-verify.ts), adversarially:
// agents share `_INBOX.`, so a reply may be forged into another agent's inbox. A page is taken only
// when the coordinator signed it for THIS request, every value matches its signed hash, revisions
// ascend above the asked one and every key lies in the filter.
import test from 'ava';
import { openCatchUpPage, keyInFilter } from '../agent/control/catch-up-verify.ts';
import { signedCatchUpPage } from '../coordinator/catch-up-page.ts';
import type { KvCatchUpEntry } from '../lib/kv-catch-up.ts';
import { generateSigningKeyPair, signEnvelope } from '../protocol/signing.ts';
import type { CatchUpReply } from '../protocol/watch-broker.ts';

const enc = new TextEncoder();
const entry = (key: string, revision: number, value = key, operation: KvCatchUpEntry['operation'] = 'PUT'): KvCatchUpEntry => ({ key, revision, operation, value: enc.encode(value), createdMs: 1_700_000_000_000 + revision });
const asked = { filter: 'nodes.>', afterRevision: 10, limit: 5, nonce: 'nonce-0001' };
const request = { kind: 'catchup' as const, ...asked };

async function page(entries: KvCatchUpEntry[], secretKey: string, req = request): Promise<Extract<CatchUpReply, { ok: true }>> {
  const r = await signedCatchUpPage(req, { entries, more: false }, secretKey);
  if (!r.ok) throw new Error('refused');
  return r;
}

test('a signed page for this request opens to its entries; values, operations and times intact', async (t) => {
  const k = await generateSigningKeyPair();
  const p = await openCatchUpPage(await page([entry('nodes.a', 11), entry('nodes.b', 13, '', 'DEL')], k.secretKey), asked, k.publicKey);
  t.deepEqual(p.entries.map((e) => [e.key, e.revision, e.operation, new TextDecoder().decode(e.value), e.createdMs]), [
    ['nodes.a', 11, 'PUT', 'nodes.a', 1_700_000_000_011],
    ['nodes.b', 13, 'DEL', '', 1_700_000_000_013],
  ]);
  t.false(p.more);
  // A rotation: any key of the set verifies.
  const old = await generateSigningKeyPair();
  t.is((await openCatchUpPage(await page([entry('nodes.a', 11)], k.secretKey), asked, [old.publicKey, k.publicKey])).entries.length, 1);
});

test('forgeries are refused: another key, another request (nonce, revision, filter), a swapped value, a value list out of step, revisions not ascending, a key outside the filter, more entries than asked', async (t) => {
  const k = await generateSigningKeyPair();
  const forger = await generateSigningKeyPair();
  const good = await page([entry('nodes.a', 11), entry('nodes.b', 12)], k.secretKey);
  await t.throwsAsync(openCatchUpPage(await page([entry('nodes.a', 11)], forger.secretKey), asked, k.publicKey), { name: 'SignatureError' });
  await t.throwsAsync(openCatchUpPage(good, { ...asked, nonce: 'nonce-0002' }, k.publicKey), { name: 'CatchUpPageError', message: /another request/ });
  await t.throwsAsync(openCatchUpPage(good, { ...asked, afterRevision: 9 }, k.publicKey), { name: 'CatchUpPageError', message: /another request/ });
  await t.throwsAsync(openCatchUpPage(good, { ...asked, filter: 'clusters.>' }, k.publicKey), { name: 'CatchUpPageError', message: /another request/ });
  await t.throwsAsync(openCatchUpPage({ ...good, values: [good.values[1] ?? '', good.values[0] ?? ''] }, asked, k.publicKey), { name: 'CatchUpPageError', message: /does not match its signed hash/ });
  await t.throwsAsync(openCatchUpPage({ ...good, values: good.values.slice(1) }, asked, k.publicKey), { name: 'CatchUpPageError', message: /1 values for 2 entries/ });
  // Pages the coordinator would never sign, signed by its key anyway (to check the agent's own checks).
  const signedRaw = async (entries: object[]): Promise<Extract<CatchUpReply, { ok: true }>> => ({ ok: true, page: await signEnvelope({ filter: asked.filter, afterRevision: asked.afterRevision, nonce: asked.nonce, entries, more: false }, k.secretKey), values: entries.map(() => '') });
  const e = (key: string, revision: number): object => ({ key, revision, operation: 'PUT', created: 0, sha256: '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=' });
  await t.throwsAsync(openCatchUpPage(await signedRaw([e('nodes.a', 12), e('nodes.b', 12)]), asked, k.publicKey), { name: 'CatchUpPageError', message: /must ascend/ });
  await t.throwsAsync(openCatchUpPage(await signedRaw([e('nodes.a', 10)]), asked, k.publicKey), { name: 'CatchUpPageError', message: /must ascend above 10/ });
  await t.throwsAsync(openCatchUpPage(await signedRaw([e('ipam.a', 11)]), asked, k.publicKey), { name: 'CatchUpPageError', message: /outside nodes\.>/ });
  await t.throwsAsync(openCatchUpPage(await signedRaw([11, 12, 13, 14, 15, 16].map((r) => e(`nodes.n${r}`, r))), asked, k.publicKey), { name: 'CatchUpPageError', message: /at most 5/ });
});

test('keys in a filter: a range takes only keys under it; a single key only itself', (t) => {
  t.true(keyInFilter('nodes.a', 'nodes.>'));
  t.false(keyInFilter('nodes.', 'nodes.>'));
  t.false(keyInFilter('nodesx.a', 'nodes.>'));
  t.false(keyInFilter('ipam.a', 'nodes.>'));
  t.true(keyInFilter('policy.current', 'policy.current'));
  t.false(keyInFilter('policy.current.x', 'policy.current'));
});

test('a page is cut so its signed index stays under the envelope limit; the rest is marked as more', async (t) => {
  const k = await generateSigningKeyPair();
  const long = 'x'.repeat(400);
  const entries = Array.from({ length: 200 }, (_, i) => entry(`nodes.${long}${i}`, 11 + i));
  const r = await page(entries, k.secretKey, { ...request, limit: 256 });
  t.true(r.page.payload.length <= 65_536);
  const p = await openCatchUpPage(r, { ...asked, limit: 256 }, k.publicKey);
  t.true(p.entries.length > 0 && p.entries.length < 200, `${p.entries.length} entries`);
  t.true(p.more);
});
