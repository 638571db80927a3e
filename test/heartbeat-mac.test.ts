// Heartbeat MACs (protocol/heartbeat-mac.ts): the Ed25519 → X25519 conversion against libsodium's
// own answers, the key agreement's symmetry, what a MAC does not verify for, and the coordinator's
// opener for both heartbeat forms (protocol/validate-registration.ts openHeartbeat).
import test from 'ava';
import * as z from 'zod';
import {
  HeartbeatMacError,
  HeartbeatMacKeys,
  coordinatorHeartbeatMacKey,
  edwardsToMontgomery,
  heartbeatBody,
  heartbeatMacMatches,
  macEnvelope,
  macHeartbeat,
  macRefused,
  montgomeryScalar,
  nodeHeartbeatMacKey,
} from '../protocol/heartbeat-mac.ts';
import { Heartbeat } from '../protocol/messages.ts';
import { generateSigningKeyPair, signEnvelopeNow, verifyEnvelopeWithKey, x25519SharedSecret, type SigningKeyPair } from '../protocol/signing.ts';
import { openHeartbeat } from '../protocol/validate-registration.ts';

/**
 * Made once with libsodium-wrappers 0.7 (crypto_sign_seed_keypair, crypto_sign_ed25519_pk_to_curve25519,
 * crypto_sign_ed25519_sk_to_curve25519, crypto_scalarmult); the test does not depend on libsodium.
 * Seeds 2 and 3 are RFC 8032's test vectors 1 and 2.
 */
const VECTORS = [
  { seed: '0000000000000000000000000000000000000000000000000000000000000000', edPublic: 'O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=', xPublic: '5bf55c73b82ebe22be80f3430667af570fae2556a6415e6b30d4065300aa947d', xSecret: '5046adc1dba838867b2bbbfdd0c3423e58b57970b5267a90f57960924a87f156' },
  { seed: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', edPublic: '11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=', xPublic: 'd85e07ec22b0ad881537c2f44d662d1a143cf830c57aca4305d85c7a90f6b62e', xSecret: '307c83864f2833cb427a2ef1c00a013cfdff2768d980c0a3a520f006904de94f' },
  { seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', edPublic: 'PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=', xPublic: '25c704c594b88afc00a76b69d1ed2b984d7e22550f3ed0802d04fbcd07d38d47', xSecret: '68bd9ed75882d52815a97585caf4790a7f6c6b3b7f821c5e259a24b02e502e51' },
] as const;
/** crypto_scalarmult(sk_to_curve25519(vector 2), pk_to_curve25519(vector 3)). */
const SHARED_2_3 = '5166f24a6918368e2af831a4affadd97af0ac326bdf143596c045967cc00230e';

const pair = (v: (typeof VECTORS)[number]): SigningKeyPair => ({
  publicKey: v.edPublic,
  secretKey: Buffer.concat([Buffer.from(v.seed, 'hex'), Buffer.from(v.edPublic, 'base64')]).toString('base64'),
});
const clamped = (k: Buffer): string => {
  const c = Buffer.from(k);
  c[0] = (c[0] ?? 0) & 248;
  c[31] = ((c[31] ?? 0) & 127) | 64;
  return c.toString('hex');
};
const heartbeat = (kp: SigningKeyPair, o: Partial<Heartbeat> = {}): Heartbeat => ({ v: 1, name: 'node-a', identityKey: kp.publicKey, generation: 3, sentAt: 1_700_000_000_000, ...o });

test('Ed25519 → X25519 as libsodium converts: public u, secret scalar (clamped) and the shared secret', (t) => {
  for (const v of VECTORS) {
    t.is(edwardsToMontgomery(Buffer.from(v.edPublic, 'base64')).toString('hex'), v.xPublic, v.seed);
    t.is(clamped(montgomeryScalar(pair(v).secretKey)), v.xSecret, v.seed);
  }
  const [, a, b] = VECTORS;
  t.is(x25519SharedSecret(montgomeryScalar(pair(a).secretKey), edwardsToMontgomery(Buffer.from(b.edPublic, 'base64'))).toString('hex'), SHARED_2_3);
  // The sign bit of x is not part of u.
  const flipped = Buffer.from(a.edPublic, 'base64');
  flipped[31] = (flipped[31] ?? 0) ^ 0x80;
  t.is(edwardsToMontgomery(flipped).toString('hex'), a.xPublic);
});

test('the neutral point, a non-canonical y and a low-order point agree no key', (t) => {
  const neutral = Buffer.alloc(32);
  neutral[0] = 1;
  t.throws(() => edwardsToMontgomery(neutral), { instanceOf: HeartbeatMacError, message: /neutral/ });
  const p = Buffer.from('edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex'); // y = 2^255 − 19
  t.throws(() => edwardsToMontgomery(p), { instanceOf: HeartbeatMacError, message: /canonical/ });
  // y = 0 is a point of order 4 (u = 1): X25519 with a clamped scalar gives all zeros.
  const coordinator = pair(VECTORS[1]);
  t.throws(() => coordinatorHeartbeatMacKey(coordinator, Buffer.alloc(32).toString('base64')), { instanceOf: HeartbeatMacError });
  t.is(new HeartbeatMacKeys(coordinator).keyFor(Buffer.alloc(32).toString('base64'), 'node-a'), null);
  t.is(new HeartbeatMacKeys(coordinator).keyFor(neutral.toString('base64'), 'node-a'), null);
});

test('the node and the coordinator agree the same K for random key pairs; another coordinator key gives another K', async (t) => {
  const coordinator = await generateSigningKeyPair();
  const other = await generateSigningKeyPair();
  for (let i = 0; i < 16; i++) {
    const node = await generateSigningKeyPair();
    const k = nodeHeartbeatMacKey(node, coordinator.publicKey);
    t.is(k.length, 32);
    t.true(k.equals(coordinatorHeartbeatMacKey(coordinator, node.publicKey)), `pair ${i}`);
    t.false(k.equals(nodeHeartbeatMacKey(node, other.publicKey)), 'K is bound to the coordinator key');
    t.false(k.equals(coordinatorHeartbeatMacKey(other, node.publicKey)));
  }
});

test('a MAC verifies only its payload bytes under its K: not a changed byte, not another node\'s K, not another coordinator\'s', async (t) => {
  const coordinator = await generateSigningKeyPair();
  const other = await generateSigningKeyPair();
  const a = await generateSigningKeyPair();
  const b = await generateSigningKeyPair();
  const ka = nodeHeartbeatMacKey(a, coordinator.publicKey);
  const payload = Buffer.from(JSON.stringify(heartbeat(a)));
  const mac = macHeartbeat(payload, ka).toString('base64');
  t.true(heartbeatMacMatches(payload, mac, coordinatorHeartbeatMacKey(coordinator, a.publicKey)));
  for (let i = 0; i < payload.length; i += 7) {
    const changed = Buffer.from(payload);
    changed[i] = (changed[i] ?? 0) ^ 1;
    t.false(heartbeatMacMatches(changed, mac, ka), `byte ${i} changed`);
  }
  // Node A's K over node B's heartbeat: the coordinator checks it with B's K.
  const forB = Buffer.from(JSON.stringify(heartbeat(b, { name: 'node-b' })));
  t.false(heartbeatMacMatches(forB, macHeartbeat(forB, ka).toString('base64'), coordinatorHeartbeatMacKey(coordinator, b.publicKey)));
  t.false(heartbeatMacMatches(payload, macHeartbeat(payload, nodeHeartbeatMacKey(a, other.publicKey)).toString('base64'), ka));
  t.false(heartbeatMacMatches(payload, mac.slice(0, 40), ka), 'a truncated MAC');
});

test('openHeartbeat: a MAC heartbeat and a signed one open to the same heartbeat; forgeries are refused naming the field', async (t) => {
  const coordinator = await generateSigningKeyPair();
  const keys = new HeartbeatMacKeys(coordinator);
  const a = await generateSigningKeyPair();
  const b = await generateSigningKeyPair();
  const hb = heartbeat(a);
  const mac = { coordinatorKey: coordinator.publicKey, key: nodeHeartbeatMacKey(a, coordinator.publicKey) };
  t.deepEqual(openHeartbeat(heartbeatBody(hb, a, mac), Heartbeat, keys), { ok: true, value: hb, form: 'mac' });
  t.deepEqual(openHeartbeat(heartbeatBody(hb, a, undefined), Heartbeat, keys), { ok: true, value: hb, form: 'signed' });

  const env = macEnvelope(hb, mac);
  const flipped = Buffer.from(env.mac, 'base64');
  flipped[5] = (flipped[5] ?? 0) ^ 0x10;
  t.like(openHeartbeat(JSON.stringify({ ...env, mac: flipped.toString('base64') }), Heartbeat, keys), { ok: false, error: { code: 'unauthorized', field: 'mac' } });
  // B claims A's name and key with B's own K.
  const byB = macEnvelope(hb, { coordinatorKey: coordinator.publicKey, key: nodeHeartbeatMacKey(b, coordinator.publicKey) });
  t.like(openHeartbeat(JSON.stringify(byB), Heartbeat, keys), { ok: false, error: { code: 'unauthorized', field: 'mac' } });
  // A payload changed under a valid MAC.
  const other = Buffer.from(JSON.stringify({ ...hb, generation: 4 })).toString('base64');
  t.like(openHeartbeat(JSON.stringify({ ...env, payload: other }), Heartbeat, keys), { ok: false, error: { code: 'unauthorized', field: 'mac' } });
  // Made for another coordinator key: refused naming both keys, and what to send instead.
  const rotated = await generateSigningKeyPair();
  const stale = macEnvelope(hb, { coordinatorKey: rotated.publicKey, key: nodeHeartbeatMacKey(a, rotated.publicKey) });
  const refused = openHeartbeat(JSON.stringify(stale), Heartbeat, keys);
  if (refused.ok) return t.fail('a MAC for another coordinator key was accepted');
  t.like(refused.error, { code: 'unauthorized', field: 'coordinatorKey' });
  t.true(refused.error.message.includes(rotated.publicKey) && refused.error.message.includes(coordinator.publicKey), refused.error.message);
  t.regex(refused.error.message, /signed heartbeat/);
  // Another coordinator key in the envelope with this coordinator's K does not pass either.
  t.like(openHeartbeat(JSON.stringify({ ...env, coordinatorKey: rotated.publicKey }), Heartbeat, keys), { ok: false, error: { field: 'coordinatorKey' } });
  // Shapes: strict, both fields required, the payload still the strict Heartbeat.
  t.like(openHeartbeat(JSON.stringify({ ...env, sig: signEnvelopeNow(hb, a.secretKey).sig }), Heartbeat, keys), { ok: false, error: { code: 'invalid' } });
  t.like(openHeartbeat(JSON.stringify({ payload: env.payload, mac: env.mac }), Heartbeat, keys), { ok: false, error: { code: 'invalid', field: 'coordinatorKey' } });
  t.like(openHeartbeat(JSON.stringify(macEnvelope({ ...hb, extra: 1 } as Heartbeat, mac)), Heartbeat, keys), { ok: false, error: { code: 'invalid' } });
  // A signed heartbeat signed by another key is still refused as before.
  t.like(openHeartbeat(JSON.stringify(signEnvelopeNow(hb, b.secretKey)), Heartbeat, keys), { ok: false, error: { code: 'unauthorized', field: 'sig' } });
});

test('macRefused: invalid and unauthorized fall back to signing; a revocation, clock skew or new epoch do not', (t) => {
  t.true(macRefused({ code: 'invalid', message: 'not a signed envelope' }));
  t.true(macRefused({ code: 'unauthorized', field: 'coordinatorKey', message: 'rotated' }));
  t.false(macRefused({ code: 'unauthorized', message: 'revoked', revoked: true }));
  for (const code of ['stale', 'stale-epoch', 'epoch-required', 'unknown-node', 'unavailable'] as const) t.false(macRefused({ code, message: code }), code);
});

test('HeartbeatMacKeys: K agreed once per identity key; over the bound the oldest goes first (nodes\' keys and unknown ones alike)', async (t) => {
  const coordinator = await generateSigningKeyPair();
  const nodes = await Promise.all([1, 2, 3].map(() => generateSigningKeyPair()));
  const [n1, n2, n3] = nodes.map((n) => n.publicKey) as [string, string, string];
  for (const knows of [() => true, () => false]) {
    const keys = new HeartbeatMacKeys(coordinator, { max: 2, unknownMax: 2, knows });
    const k1 = keys.keyFor(n1, 'n1');
    t.true(k1?.equals(coordinatorHeartbeatMacKey(coordinator, n1)));
    t.is(keys.keyFor(n1, 'n1'), k1, 'the same object: not agreed again');
    keys.keyFor(n2, 'n2');
    const k2 = keys.keyFor(n2, 'n2');
    t.is(keys.agreements, 2);
    keys.keyFor(n3, 'n3');
    t.is(keys.keyFor(n2, 'n2'), k2, 'the newer entry stays');
    t.is(keys.agreements, 3);
    t.not(keys.keyFor(n1, 'n1'), k1, 'the oldest was dropped and is agreed again');
    t.is(keys.agreements, 4);
    t.true(keys.keyFor(n1, 'n1')?.equals(k1 ?? Buffer.alloc(0)));
  }
});

test('HeartbeatMacKeys: a flood of keys nobody knows never pushes out a node\'s K; a key first unknown is kept as a node\'s once known, without agreeing again', async (t) => {
  const coordinator = await generateSigningKeyPair();
  const known = new Map<string, string>(); // name → identity key, as the registry would say
  const agreed: string[] = [];
  const keys = new HeartbeatMacKeys(coordinator, { max: 2, unknownMax: 3, knows: (name, key) => known.get(name) === key, onAgreed: (kind) => agreed.push(kind) });
  const [a, b, late] = await Promise.all([1, 2, 3].map(() => generateSigningKeyPair())) as [SigningKeyPair, SigningKeyPair, SigningKeyPair];
  known.set('node-a', a.publicKey);
  known.set('node-b', b.publicKey);
  const ka = keys.keyFor(a.publicKey, 'node-a');
  const kb = keys.keyFor(b.publicKey, 'node-b');
  t.deepEqual(agreed, ['node', 'node']);

  // The adversary: fresh key pairs (each a valid MAC key for its holder), under made-up names and
  // under the real nodes' names — more than either bound.
  const flood = await Promise.all(Array.from({ length: 8 }, () => generateSigningKeyPair()));
  for (const [i, f] of flood.entries()) keys.keyFor(f.publicKey, i % 2 === 0 ? `evil-${i}` : 'node-a');
  t.deepEqual(agreed.slice(2), Array<string>(8).fill('unknown'), 'each made-up key costs one agreement, counted as unknown');
  t.is(keys.keyFor(a.publicKey, 'node-a'), ka, "node-a's K is still kept");
  t.is(keys.keyFor(b.publicKey, 'node-b'), kb, "node-b's K is still kept");
  t.is(keys.agreements, 10, 'the real nodes needed no new agreement');
  // The unknown table keeps the last three: the newest made-up key is not agreed again, the oldest is.
  keys.keyFor(flood[7]?.publicKey ?? '', 'node-a');
  t.is(keys.agreements, 10);
  keys.keyFor(flood[0]?.publicKey ?? '', 'evil-0');
  t.is(keys.agreements, 11);

  // A node the replica holds no record of yet (a follower's copy behind): kept apart, then moved.
  const kl = keys.keyFor(late.publicKey, 'node-late');
  t.is(agreed.at(-1), 'unknown');
  known.set('node-late', late.publicKey);
  t.is(keys.keyFor(late.publicKey, 'node-late'), kl, 'moved to the nodes\' table without a second agreement');
  t.is(keys.agreements, 12);
  for (const f of flood) keys.keyFor(f.publicKey, 'node-late');
  t.is(keys.keyFor(late.publicKey, 'node-late'), kl, 'and no longer pushed out by unknown keys');
  // The nodes' table is bounded too: a third known node pushes out the oldest (node-a).
  const agreementsBefore = keys.agreements;
  t.is(keys.keyFor(b.publicKey, 'node-b'), kb);
  t.is(keys.keyFor(a.publicKey, 'node-a')?.equals(ka ?? Buffer.alloc(0)), true);
  t.is(keys.agreements, agreementsBefore + 1, 'node-a was the oldest of three known keys over a bound of two');
});

test('verifyEnvelopeWithKey names the key of a rotation set that verified (the key an agent agrees its MAC key with)', async (t) => {
  const old = await generateSigningKeyPair();
  const current = await generateSigningKeyPair();
  const env = signEnvelopeNow({ v: 1 }, current.secretKey);
  t.like(await verifyEnvelopeWithKey(env, [old.publicKey, current.publicKey], z.object({ v: z.literal(1) })), { key: current.publicKey, value: { v: 1 } });
  t.like(await verifyEnvelopeWithKey(signEnvelopeNow({ v: 1 }, old.secretKey), [old.publicKey, current.publicKey], z.object({ v: z.literal(1) })), { key: old.publicKey });
  await t.throwsAsync(verifyEnvelopeWithKey(env, old.publicKey, z.object({ v: z.literal(1) })));
});
