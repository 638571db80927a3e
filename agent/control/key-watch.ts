// How the agent's watchers (MeshWatch, enrollment, policy and service watches) read a key range:
// an injected source, so the agent binary goes through the coordinator's watch broker
// (brokered-watch.ts: agents hold no consumer permission) while tools and tests holding a
// coordinator credential keep the direct nats.js KV watch (this file).
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { initialCount } from '../../lib/kv-initial-count.ts';
import { countKvFilter, type KvFilterCount } from '../../lib/kv-filter-count.ts';
import { readKvAfter, type KvCatchUpPage } from '../../lib/kv-catch-up.ts';
import { CATCHUP_MAX_BYTES } from '../../protocol/watch-broker.ts';

export interface KeyWatchOptions {
  /** One readable key filter (`nodes.>`, `policy.current`, …). */
  readonly key: string;
  /** Start at this revision (stream sequence) instead of the newest value of every key. */
  readonly resumeFromRevision?: number;
}

/** A running watch: entries in stream order; ends (without an error) when stopped or when it broke. */
export interface KeyWatch extends AsyncIterable<KvWatchEntry> {
  stop(): void;
  /** How many entries the initial snapshot holds (undefined: unknown; then a quiet period ends it). */
  initialCount(): Promise<number | undefined>;
}

/** What a filter holds, without reading its records (the MeshWatch audit). */
export type FilterCount = KvFilterCount;

/** A catch-up page request: entries under `filter` after `afterRevision`, at most `limit`. */
export interface CatchUpOptions {
  readonly filter: string;
  readonly afterRevision: number;
  readonly limit: number;
}

export type { KvCatchUpEntry, KvCatchUpPage } from '../../lib/kv-catch-up.ts';

export interface KeyWatchSource {
  watch(o: KeyWatchOptions): Promise<KeyWatch>;
  count(filter: string): Promise<FilterCount>;
  /**
   * What changed after a revision, without a consumer (direct gets): followed while a watch cannot be
   * created (catch-up-watch.ts), e.g. in the seconds after a NATS server loss.
   */
  catchUp(o: CatchUpOptions): Promise<KvCatchUpPage>;
}

export interface DirectWatchOptions {
  readonly nc: NatsConnection;
  readonly bucket: string;
  /** Timeout of the JetStream API requests (default: the library's). */
  readonly timeoutMs?: number;
}

/** The nats.js KV watch on the caller's own credential (it must be allowed to create consumers). */
export function directWatchSource(o: DirectWatchOptions): KeyWatchSource {
  let kv: Promise<KV> | undefined;
  let jsm: JetStreamManager | undefined;
  const bucket = async (): Promise<KV> => {
    kv ??= new Kvm(jetstream(o.nc, o.timeoutMs === undefined ? {} : { timeout: o.timeoutMs })).open(o.bucket, { allow_direct: true });
    return kv.catch((err: unknown) => {
      kv = undefined;
      throw err;
    });
  };
  return {
    async watch(w) {
      const it = await (await bucket()).watch(w.resumeFromRevision === undefined ? { key: w.key } : { key: w.key, resumeFromRevision: w.resumeFromRevision });
      return {
        [Symbol.asyncIterator]: () => it[Symbol.asyncIterator](),
        stop: () => it.stop(),
        initialCount: () => initialCount(it),
      };
    },
    async count(filter) {
      jsm ??= await jetstreamManager(o.nc, { checkAPI: false });
      return countKvFilter(jsm, o.bucket, filter);
    },
    async catchUp(c) {
      // Direct gets whose body names the range: only a credential allowed the body form (not an agent's).
      jsm ??= await jetstreamManager(o.nc, { checkAPI: false, ...(o.timeoutMs === undefined ? {} : { timeout: o.timeoutMs }) });
      return readKvAfter(jsm, o.bucket, c.filter, c.afterRevision, { limit: c.limit, maxBytes: CATCHUP_MAX_BYTES });
    },
  };
}
