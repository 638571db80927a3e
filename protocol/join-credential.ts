// The join credential of a cluster: a per-cluster Ed25519 key the operator creates with
// `crosslink-coordinator cluster add` and hands to that cluster's agents as a secret file. Its public
// half is in the coordinator-signed cluster definition; an agent signs every registration with it
// (besides its identity key), so only holders of cluster A's credential can register into A, and
// never into B. The file: {"kind":"crosslink-join-credential","v":1,"cluster":"<name>","secretKey":"<base64 64 bytes>"}.
import * as z from 'zod';
import { ClusterName } from './messages.ts';
import { ed25519Sign, ed25519Verify, generateSigningKeyPair, signingPublicKeyOf } from './signing.ts';

export const JoinCredentialFile = z
  .object({
    kind: z.literal('crosslink-join-credential'),
    v: z.literal(1),
    cluster: ClusterName,
    /** Never log. */
    secretKey: z.string().regex(/^[A-Za-z0-9+/]{86}==$/, 'must be a 64-byte Ed25519 secret key in base64'),
  })
  .strict();
export type JoinCredentialFile = z.infer<typeof JoinCredentialFile>;

export interface JoinCredential {
  readonly cluster: string;
  /** base64, 32 bytes; what the cluster definition records. */
  readonly publicKey: string;
  /** base64, 64 bytes. Never log. */
  readonly secretKey: string;
}

export async function generateJoinCredential(cluster: string): Promise<JoinCredential> {
  const kp = await generateSigningKeyPair();
  return { cluster, publicKey: kp.publicKey, secretKey: kp.secretKey };
}

export function formatJoinCredential(c: JoinCredential): string {
  const file: JoinCredentialFile = { kind: 'crosslink-join-credential', v: 1, cluster: c.cluster, secretKey: c.secretKey };
  return `${JSON.stringify(file, null, 2)}\n`;
}

/** Parses the file's text; throws an Error naming what is wrong (never the secret). */
export async function parseJoinCredential(text: string): Promise<JoinCredential> {
  let json: unknown;
  try {
    json = JSON.parse(text) as unknown;
  } catch {
    throw new Error('is not JSON; a join credential file is written by `crosslink-coordinator cluster add --credential-out FILE`');
  }
  const parsed = JoinCredentialFile.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`field ${issue?.path.join('.') || '(root)'} ${issue?.message ?? 'is invalid'}; a join credential file is written by \`crosslink-coordinator cluster add\``);
  }
  const publicKey = await signingPublicKeyOf(parsed.data.secretKey);
  return { cluster: parsed.data.cluster, publicKey, secretKey: parsed.data.secretKey };
}

const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));

/** The join signature: Ed25519 over the exact payload bytes of the registration envelope. */
export function joinSign(payloadBase64: string, secretKey: string): Promise<string> {
  try {
    return Promise.resolve(ed25519Sign(unb64(payloadBase64), secretKey).toString('base64'));
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

export function joinVerify(payloadBase64: string, joinSig: string, publicKey: string): Promise<boolean> {
  return Promise.resolve(ed25519Verify(unb64(payloadBase64), unb64(joinSig), unb64(publicKey)));
}
