import test from 'ava';
import { z } from 'zod';
import { ExecaRunner } from '../lib/runner.ts';
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
  const runner = new ExecaRunner();
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
