// The policy's KV keys and the verification of a stored policy record: signed by a coordinator key
// (any of the keys the caller trusts: the current one and, after a rotation, previous ones).
import { errorMessage } from '../../lib/errors.ts';
import { SignatureError, verifyEnvelope } from '../signing.ts';
import { PolicyRecord } from './document.ts';

export const policyKeys = {
  current: 'policy.current',
  /** One per version (the bucket keeps one revision per key, so history lives under its own keys). */
  history: (version: number) => `policy.history.${String(version).padStart(10, '0')}`,
  historyFilter: 'policy.history.>',
} as const;

/** How many versions `policy.history.*` keeps. */
export const POLICY_HISTORY_KEEP = 20;

export type VerifiedPolicy = { readonly ok: true; readonly record: PolicyRecord } | { readonly ok: false; readonly reason: string };

/** Verifies `raw` (the KV value) with each trusted key in turn; the reason says why it was refused. */
export async function verifyPolicyRecord(raw: unknown, trustedKeys: readonly string[]): Promise<VerifiedPolicy> {
  let last = 'no coordinator key to verify it with';
  for (const key of trustedKeys) {
    try {
      return { ok: true, record: await verifyEnvelope(raw, key, PolicyRecord) };
    } catch (err) {
      last = err instanceof SignatureError ? err.message : `not a valid policy record: ${errorMessage(err).slice(0, 300)}`;
      if (!(err instanceof SignatureError)) break;
    }
  }
  return { ok: false, reason: last };
}
