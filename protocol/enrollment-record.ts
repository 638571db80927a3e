// Which `enrollments.<cluster>` values a reader (an agent, `policy test`) may believe: a
// ClusterDefinition signed by a trusted coordinator key, stored under its own name, and not older
// than the definition the reader already holds (a replayed wider enrollment must not come back).
// A definition carries nothing secret: pod ranges, topology and the PUBLIC half of the join key.
import { errorMessage } from '../lib/errors.ts';
import { ClusterDefinition } from './messages.ts';
import { SignatureError, verifyEnvelope, type VerifyKeys } from './signing.ts';
import { enrollmentNameFromKey } from './subjects.ts';

export type EnrollmentVerdict = { readonly ok: true; readonly name: string; readonly definition: ClusterDefinition } | { readonly ok: false; readonly reason: string };

/**
 * Verifies one stored value under `key` (undefined when the key is not an enrollment key).
 * `heldUpdatedAt` is the `updatedAt` of the definition the reader holds for that cluster, if any.
 */
export async function verifyEnrollment(key: string, value: Uint8Array | string, trustedKeys: VerifyKeys, heldUpdatedAt?: number): Promise<EnrollmentVerdict | undefined> {
  const name = enrollmentNameFromKey(key);
  if (name === undefined) return undefined;
  let definition: ClusterDefinition;
  try {
    definition = await verifyEnvelope(value, trustedKeys, ClusterDefinition);
  } catch (err) {
    return { ok: false, reason: err instanceof SignatureError ? err.message : `signed but not a valid cluster definition: ${errorMessage(err).slice(0, 200)}` };
  }
  if (definition.name !== name) return { ok: false, reason: `definition names ${JSON.stringify(definition.name)} but is stored under ${JSON.stringify(key)}` };
  if (heldUpdatedAt !== undefined && definition.updatedAt < heldUpdatedAt) {
    return { ok: false, reason: `definition of ${name} updated at ${definition.updatedAt} is older than the one we hold (${heldUpdatedAt}; replay?)` };
  }
  return { ok: true, name, definition };
}
