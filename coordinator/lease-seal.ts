// The leader lease as a signed envelope (finding 3): sealed with the coordinator's signing key,
// opened only with our key set (current and --previous-public-key). Every replica shares the key,
// so replicas recognise each other's leases; a lease written by anyone else counts as absent.
import { SignedEnvelope } from '../protocol/messages.ts';
import { SignatureError, signEnvelope, verifyEnvelope, type SigningKeyPair } from '../protocol/signing.ts';
import { LeaseValue, type LeaseSeal } from './lease.ts';

export function leaseSeal(signingKey: SigningKeyPair, previousKeys: readonly string[]): LeaseSeal {
  return {
    seal: async (value) => JSON.stringify(await signEnvelope(value, signingKey.secretKey)),
    open: async (raw) => {
      const env = SignedEnvelope.safeParse(raw);
      if (!env.success) return undefined;
      for (const publicKey of [signingKey.publicKey, ...previousKeys]) {
        try {
          return await verifyEnvelope(env.data, publicKey, LeaseValue);
        } catch (err) {
          if (!(err instanceof SignatureError)) return undefined;
        }
      }
      return undefined;
    },
  };
}
