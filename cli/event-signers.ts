// The keys `crosslink events` checks events against (protocol/event-verify.ts): the coordinator keys
// given on the command line (several during a signing-key rotation), and each reporting node's identity key from its node record, read
// from the bucket by direct get (what the agent and reader NATS users may do) and verified with the
// coordinator key. A found key is trusted for at most KEY_MAX_AGE_MS, then read again: a node revoked
// or released while --follow runs (its record deleted, or its name bound to another key) stops being
// credited within that time. A miss is asked again next time (the node may join later).
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { EventSigners } from '../protocol/event-verify.ts';
import type { VerifyKeys } from '../protocol/signing.ts';
import { verifyKvRecord } from '../protocol/kv-record.ts';
import { kvKeys } from '../protocol/subjects.ts';

/** How long a node's identity key read from the bucket is trusted before it is read again. */
export const KEY_MAX_AGE_MS = 10_000;

/**
 * The lookup `identityOf` over `read` (the record's identity key, or undefined): a key found is reused
 * for `maxAgeMs` on `now()`'s clock, then read again; `fresh` always reads. A failed read rejects
 * and is not cached.
 */
export function cachedIdentityOf(
  read: (name: string) => Promise<string | undefined>,
  now: () => number,
  maxAgeMs = KEY_MAX_AGE_MS,
): EventSigners['identityOf'] {
  const known = new Map<string, { key: string; at: number }>();
  return async (name, fresh) => {
    const hit = known.get(name);
    if (!fresh && hit && now() - hit.at < maxAgeMs) return hit.key;
    // A failed read rejects (the verifier says the record could not be read): never cached.
    const found = await read(name);
    if (found === undefined) known.delete(name);
    else known.set(name, { key: found, at: now() });
    return found;
  };
}

export function kvEventSigners(nc: NatsConnection, bucket: string, coordinatorKey: VerifyKeys, now: () => number = Date.now): EventSigners {
  let kv: Promise<KV> | undefined;
  // Opened on first use; a failed open is tried again on the next lookup.
  const open = (): Promise<KV> =>
    (kv ??= new Kvm(nc).open(bucket, { allow_direct: true }).catch((err: unknown) => {
      kv = undefined;
      throw err;
    }));
  const read = async (name: string): Promise<string | undefined> => {
    const key = kvKeys.node(name);
    const entry = await (await open()).get(key);
    if (!entry || entry.operation !== 'PUT') return undefined;
    const v = await verifyKvRecord(key, entry.value, coordinatorKey);
    return v?.ok === true && v.kind === 'node' ? v.record.identityKey : undefined;
  };
  return { coordinator: coordinatorKey, identityOf: cachedIdentityOf(read, now) };
}
