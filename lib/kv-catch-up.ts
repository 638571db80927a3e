// Reads what changed in a KV key range after a revision WITHOUT a consumer: direct gets with
// `next_by_subj` (the first message under the range at or after a sequence), answered by any replica
// of a bucket with allow_direct (nats.js's Kvm.create sets it on nats-server ≥ 2.9) — no JetStream
// meta leader, no stream leader, no consumer create. That is what is still served in the 10–20 s after
// a NATS server loss when creating a consumer is refused or times out (docs/benchmarks.md round 21).
// nats-server 2.9 answers one message per direct get (batch gets came with 2.11), so a page costs one
// request per entry plus one that finds nothing. One implementation for the coordinator's watch broker
// (agents' `catchup` requests, coordinator/watch-broker.ts) and the direct watch source's own catch-up
// (agent/control/key-watch.ts, tools holding a coordinator credential).
import type { JetStreamManager } from '@nats-io/jetstream';
import type { KvWatchEntry } from '@nats-io/kv';

export type KvCatchUpOperation = 'PUT' | 'DEL' | 'PURGE';

/** One stream message under the range, as a KV watch would deliver it. */
export interface KvCatchUpEntry {
  readonly key: string;
  /** Stream sequence (the KV revision). */
  readonly revision: number;
  readonly operation: KvCatchUpOperation;
  readonly value: Uint8Array;
  /** When the server stored it (ms since the epoch). */
  readonly createdMs: number;
}

export interface KvCatchUpPage {
  /** In revision order, all after `afterRevision`. */
  readonly entries: readonly KvCatchUpEntry[];
  /** The page stopped at its entry or byte limit: more may follow (ask again after the last entry). */
  readonly more: boolean;
}

export interface KvCatchUpLimits {
  /** At most this many entries. */
  readonly limit: number;
  /** Stop once the values add up to this many bytes (at least one entry is always returned). */
  readonly maxBytes: number;
}

/** The entries of `filter` (e.g. `nodes.>`) in `bucket` with a revision above `afterRevision`, a page at a time. */
export async function readKvAfter(jsm: JetStreamManager, bucket: string, filter: string, afterRevision: number, o: KvCatchUpLimits): Promise<KvCatchUpPage> {
  const stream = `KV_${bucket}`;
  const prefix = `$KV.${bucket}.`;
  const next_by_subj = `${prefix}${filter}`;
  const entries: KvCatchUpEntry[] = [];
  let seq = afterRevision + 1;
  let bytes = 0;
  while (entries.length < o.limit && bytes < o.maxBytes) {
    const m = await jsm.direct.getMessage(stream, { seq, next_by_subj });
    if (m === null) return { entries, more: false };
    const op = m.header.get('KV-Operation');
    entries.push({
      key: m.subject.slice(prefix.length),
      revision: m.seq,
      operation: op === 'DEL' || op === 'PURGE' ? op : 'PUT',
      value: m.data,
      createdMs: m.time.getTime(),
    });
    bytes += m.data.length;
    seq = m.seq + 1;
  }
  return { entries, more: true };
}

/** Every entry of `filter` in `bucket` (all pages): a small range (e.g. `enrollments.>`) read without a consumer. */
export async function readKvRange(jsm: JetStreamManager, bucket: string, filter: string, pageLimit = 256): Promise<KvCatchUpEntry[]> {
  const out: KvCatchUpEntry[] = [];
  for (let after = 0; ; ) {
    const page = await readKvAfter(jsm, bucket, filter, after, { limit: pageLimit, maxBytes: Number.POSITIVE_INFINITY });
    out.push(...page.entries);
    const last = page.entries.at(-1);
    if (!page.more || last === undefined) return out;
    after = last.revision;
  }
}

/** The KvWatchEntry a watch would have delivered for a catch-up entry. */
export function catchUpWatchEntry(bucket: string, e: KvCatchUpEntry, isUpdate: boolean): KvWatchEntry {
  const decoder = new TextDecoder();
  const value = e.value;
  return {
    bucket,
    key: e.key,
    rawKey: e.key,
    value,
    created: new Date(e.createdMs),
    revision: e.revision,
    delta: 0,
    operation: e.operation,
    length: value.length,
    isUpdate,
    // KvEntry's json<T>() is the caller's assertion, as in nats.js.
    json: () => JSON.parse(decoder.decode(value)) as never,
    string: (): string => decoder.decode(value),
  };
}
