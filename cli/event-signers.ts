// The keys `crosslink events` checks events against (protocol/event-verify.ts): the coordinator key
// given on the command line, and each reporting node's identity key from its node record, read
// from the bucket by direct get (what the agent and reader NATS users may do) and verified with the
// coordinator key. A found key is kept for the run; a miss is asked again next time (the node may
// join later while --follow runs).
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { EventSigners } from '../protocol/event-verify.ts';
import { verifyKvRecord } from '../protocol/kv-record.ts';
import { kvKeys } from '../protocol/subjects.ts';

export function kvEventSigners(nc: NatsConnection, bucket: string, coordinatorKey: string): EventSigners {
  let kv: Promise<KV> | undefined;
  const known = new Map<string, string>();
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
  return {
    coordinator: coordinatorKey,
    async identityOf(name, fresh) {
      if (!fresh && known.has(name)) return known.get(name);
      const found = await read(name).catch(() => undefined);
      if (found === undefined) known.delete(name);
      else known.set(name, found);
      return found;
    },
  };
}
