// How many keys a KV key range holds and the revision of its newest message, without reading a
// record: a direct get of the last message under the range, and the pending count of an ephemeral
// consumer (last value per subject) that is created and deleted without delivering anything. One
// implementation for the MeshWatch audit's direct source (agent/control/key-watch.ts) and the
// coordinator's watch broker answering agents' `count` requests (coordinator/watch-broker.ts).
import { AckPolicy, DeliverPolicy, type JetStreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';

export interface KvFilterCount {
  /** Keys under the range (one per subject, delete markers included). */
  readonly keys: number;
  /** Revision of the newest message under the range; 0 if none. */
  readonly lastRevision: number;
}

/** Counts `filter` (e.g. `nodes.>`) in `bucket`; `name` names the short-lived consumer (else the server does). */
export async function countKvFilter(jsm: JetStreamManager, bucket: string, filter: string, o: { readonly name?: string; readonly inactiveMs?: number } = {}): Promise<KvFilterCount> {
  const stream = `KV_${bucket}`;
  const subject = `$KV.${bucket}.${filter}`;
  const last = await jsm.streams.getMessage(stream, { last_by_subj: subject });
  const consumer = await jsm.consumers.add(stream, {
    ...(o.name === undefined ? {} : { name: o.name }),
    filter_subject: subject,
    deliver_policy: DeliverPolicy.LastPerSubject,
    ack_policy: AckPolicy.None,
    mem_storage: true,
    num_replicas: 1,
    // Cleaned up by the server should the delete below not arrive.
    inactive_threshold: nanos(o.inactiveMs ?? 60_000),
  });
  try {
    return { keys: consumer.num_pending, lastRevision: last?.seq ?? 0 };
  } finally {
    await jsm.consumers.delete(stream, consumer.name).catch(() => undefined);
  }
}
