import test from 'ava';
import * as z from 'zod';
import { ProcessRunner } from '../lib/runner.ts';
import { NodeRecord } from '../protocol/messages.ts';
import {
  SignatureError,
  generateSigningKeyPair,
  generateWireguardKeyPair,
  openEnvelopeUnverified,
  signEnvelope,
  signingPublicKeyOf,
  verifyEnvelope,
  wireguardPublicKeyOf,
} from '../protocol/signing.ts';

const Payload = z.object({ hello: z.string() }).strict();

test('sign then verify returns the parsed payload (object, JSON text and bytes)', async (t) => {
  const kp = await generateSigningKeyPair();
  const env = await signEnvelope({ hello: 'world' }, kp.secretKey);
  t.deepEqual(await verifyEnvelope(env, kp.publicKey, Payload), { hello: 'world' });
  t.deepEqual(await verifyEnvelope(JSON.stringify(env), kp.publicKey, Payload), { hello: 'world' });
  t.deepEqual(await verifyEnvelope(new TextEncoder().encode(JSON.stringify(env)), kp.publicKey, Payload), { hello: 'world' });
  t.deepEqual(openEnvelopeUnverified(env), { hello: 'world' });
});

test('signingPublicKeyOf derives the public key from the secret key', async (t) => {
  const kp = await generateSigningKeyPair();
  t.is(await signingPublicKeyOf(kp.secretKey), kp.publicKey);
  await t.throwsAsync(signingPublicKeyOf(Buffer.alloc(32).toString('base64')), { instanceOf: SignatureError });
});

const rejectCases: { name: string; make: (kp: { publicKey: string; secretKey: string }, other: { publicKey: string; secretKey: string }) => Promise<unknown> }[] = [
  {
    name: 'forged signature',
    make: async (kp) => {
      const env = await signEnvelope({ hello: 'world' }, kp.secretKey);
      const sig = Buffer.from(env.sig, 'base64');
      sig[0] = (sig[0] ?? 0) ^ 0xff;
      return { ...env, sig: sig.toString('base64') };
    },
  },
  {
    name: 'signed by another key',
    make: async (_kp, other) => signEnvelope({ hello: 'world' }, other.secretKey),
  },
  {
    name: 'tampered payload',
    make: async (kp) => {
      const env = await signEnvelope({ hello: 'world' }, kp.secretKey);
      return { ...env, payload: Buffer.from(JSON.stringify({ hello: 'mallory' })).toString('base64') };
    },
  },
  { name: 'unsigned record', make: () => Promise.resolve({ hello: 'world' }) },
  { name: 'not JSON', make: () => Promise.resolve('{nope') },
  { name: 'sig missing', make: async (kp) => ({ payload: (await signEnvelope({ hello: 'world' }, kp.secretKey)).payload }) },
];

for (const c of rejectCases) {
  test(`verifyEnvelope rejects: ${c.name}`, async (t) => {
    const kp = await generateSigningKeyPair();
    const other = await generateSigningKeyPair();
    const raw = await c.make(kp, other);
    await t.throwsAsync(verifyEnvelope(raw, kp.publicKey, Payload), { instanceOf: SignatureError });
  });
}

test('verifyEnvelope: a valid signature over the wrong shape is a zod error, not a SignatureError', async (t) => {
  const kp = await generateSigningKeyPair();
  const env = await signEnvelope({ hello: 'world' }, kp.secretKey);
  const err = await t.throwsAsync(verifyEnvelope(env, kp.publicKey, NodeRecord));
  t.false(err instanceof SignatureError);
  t.true(err instanceof z.ZodError);
});

test('verifyEnvelope rejects a verification key of the wrong length', async (t) => {
  const kp = await generateSigningKeyPair();
  const env = await signEnvelope({ hello: 'world' }, kp.secretKey);
  await t.throwsAsync(verifyEnvelope(env, Buffer.alloc(16).toString('base64'), Payload), { instanceOf: SignatureError });
});

test('WireGuard public key derivation matches `wg pubkey`', async (t) => {
  const runner = new ProcessRunner();
  for (let i = 0; i < 3; i++) {
    const kp = await generateWireguardKeyPair();
    const { stdout } = await runner.run(['wg', 'pubkey'], { input: `${kp.privateKey}\n` });
    t.is(stdout.trim(), kp.publicKey);
    t.is(await wireguardPublicKeyOf(kp.privateKey), kp.publicKey);
  }
  // A key made by `wg genkey` derives the same public key here as in wg.
  const { stdout: priv } = await runner.run(['wg', 'genkey']);
  const { stdout: pub } = await runner.run(['wg', 'pubkey'], { input: priv });
  t.is(await wireguardPublicKeyOf(priv.trim()), pub.trim());
});

test('wireguardPublicKeyOf rejects a key of the wrong length', async (t) => {
  await t.throwsAsync(wireguardPublicKeyOf(Buffer.alloc(31).toString('base64')), { instanceOf: SignatureError });
});

test('Ed25519 and X25519 match the RFC 8032 / RFC 7748 vectors (the libsodium key layout: seed ‖ public key)', async (t) => {
  const { ed25519Sign, ed25519Verify } = await import('../protocol/signing.ts');
  const seed = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex');
  const pub = Buffer.from('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'hex');
  const sig = 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b';
  const secretKey = Buffer.concat([seed, pub]).toString('base64');
  t.is(await signingPublicKeyOf(secretKey), pub.toString('base64'));
  t.is(ed25519Sign(new Uint8Array(0), secretKey).toString('hex'), sig);
  t.true(ed25519Verify(new Uint8Array(0), Buffer.from(sig, 'hex'), pub));
  t.false(ed25519Verify(new Uint8Array([1]), Buffer.from(sig, 'hex'), pub));
  t.false(ed25519Verify(new Uint8Array(0), Buffer.from(sig, 'hex'), Buffer.alloc(32, 0xff)), 'a key that is not a point does not verify (no throw)');
  t.false(ed25519Verify(new Uint8Array(0), Buffer.from(sig, 'hex').subarray(1), pub));
  const alice = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex').toString('base64');
  t.is(Buffer.from(await wireguardPublicKeyOf(alice), 'base64').toString('hex'), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
});

test('verifyEnvelope with a key set (signing-key rotation): any key of the set verifies, none of it is refused', async (t) => {
  const [current, previous, other] = await Promise.all([generateSigningKeyPair(), generateSigningKeyPair(), generateSigningKeyPair()]);
  const byPrevious = await signEnvelope({ hello: 'old' }, previous.secretKey);
  t.deepEqual(await verifyEnvelope(byPrevious, [current.publicKey, previous.publicKey], Payload), { hello: 'old' });
  await t.throwsAsync(verifyEnvelope(byPrevious, current.publicKey, Payload), { instanceOf: SignatureError });
  const byOther = await signEnvelope({ hello: 'forged' }, other.secretKey);
  await t.throwsAsync(verifyEnvelope(byOther, [current.publicKey, previous.publicKey], Payload), { instanceOf: SignatureError, message: /any of the 2 keys/ });
});

test('signing keys are cached per secret key: each key keeps signing as itself, across the cache bound and back', async (t) => {
  // 20 keys > the cache's bound of 16: the cache is cleared on the way and keys are rebuilt, never mixed up.
  const keys = await Promise.all(Array.from({ length: 20 }, () => generateSigningKeyPair()));
  for (const round of [1, 2]) {
    for (const [i, kp] of keys.entries()) {
      const env = await signEnvelope({ hello: `${round}-${i}` }, kp.secretKey);
      t.deepEqual(await verifyEnvelope(env, kp.publicKey, Payload), { hello: `${round}-${i}` });
      const other = keys[(i + 1) % keys.length]!;
      await t.throwsAsync(verifyEnvelope(env, other.publicKey, Payload), { instanceOf: SignatureError });
    }
  }
  // A damaged secret key is refused every time (never cached).
  await t.throwsAsync(signEnvelope({ hello: 'x' }, Buffer.alloc(63).toString('base64')), { instanceOf: SignatureError });
  await t.throwsAsync(signEnvelope({ hello: 'x' }, Buffer.alloc(63).toString('base64')), { instanceOf: SignatureError });
});

test('a secret key signs as its seed, never as a damaged embedded public half', async (t) => {
  const [a, b] = await Promise.all([generateSigningKeyPair(), generateSigningKeyPair()]);
  // seed of a ‖ public half of b
  const mixed = Buffer.concat([Buffer.from(a.secretKey, 'base64').subarray(0, 32), Buffer.from(b.publicKey, 'base64')]).toString('base64');
  t.is(await signingPublicKeyOf(mixed), a.publicKey);
  const env = await signEnvelope({ hello: 'mixed' }, mixed);
  t.deepEqual(await verifyEnvelope(env, a.publicKey, Payload), { hello: 'mixed' });
  await t.throwsAsync(verifyEnvelope(env, b.publicKey, Payload), { instanceOf: SignatureError });
});

test('verifyEnvelopeAsync (signature on the thread pool) answers exactly as verifyEnvelope: every rejection, key sets, bad keys, wrong shapes', async (t) => {
  const { verifyEnvelopeAsync, ed25519VerifyAsync } = await import('../protocol/signing.ts');
  const [kp, other, previous] = await Promise.all([generateSigningKeyPair(), generateSigningKeyPair(), generateSigningKeyPair()]);
  const env = await signEnvelope({ hello: 'world' }, kp.secretKey);
  t.deepEqual(await verifyEnvelopeAsync(new TextEncoder().encode(JSON.stringify(env)), kp.publicKey, Payload), { hello: 'world' });
  for (const c of rejectCases) {
    const raw = await c.make(kp, other);
    const sync = await t.throwsAsync(verifyEnvelope(raw, kp.publicKey, Payload), { instanceOf: SignatureError });
    const async = await t.throwsAsync(verifyEnvelopeAsync(raw, kp.publicKey, Payload), { instanceOf: SignatureError }, c.name);
    t.is(async?.message, sync?.message, c.name);
  }
  const byPrevious = await signEnvelope({ hello: 'old' }, previous.secretKey);
  t.deepEqual(await verifyEnvelopeAsync(byPrevious, [kp.publicKey, previous.publicKey], Payload), { hello: 'old' });
  await t.throwsAsync(verifyEnvelopeAsync(byPrevious, [kp.publicKey, other.publicKey], Payload), { instanceOf: SignatureError, message: /any of the 2 keys/ });
  await t.throwsAsync(verifyEnvelopeAsync(env, Buffer.alloc(16).toString('base64'), Payload), { instanceOf: SignatureError, message: /32 bytes/ });
  const wrongShape = await t.throwsAsync(verifyEnvelopeAsync(env, kp.publicKey, NodeRecord));
  t.true(wrongShape instanceof z.ZodError);
  // RFC 8032 test 1 on the thread pool.
  const pub = Buffer.from('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'hex');
  const sig = Buffer.from('e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b', 'hex');
  t.true(await ed25519VerifyAsync(new Uint8Array(0), sig, pub));
  t.false(await ed25519VerifyAsync(new Uint8Array([1]), sig, pub));
  t.false(await ed25519VerifyAsync(new Uint8Array(0), sig, Buffer.alloc(32, 0xff)));
  t.false(await ed25519VerifyAsync(new Uint8Array(0), sig.subarray(1), pub));
});
