// The revision of the newest message (a delete marker too) under each of a bucket's key ranges, by
// direct get: answered by any replica (the stream leader may be the server just lost), and allowed
// to agents (coordinator/nats-permissions.ts pins direct gets to the readable ranges). What the
// agent's watchers compare with what they applied (agent/control/progress-monitor.ts) and look at
// before a resume (watch-progress.ts bucketRenumbered).
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

/** A look-up of `filters` in `bucket` (its JetStream manager made on first use): per range, the newest revision; 0 if none. */
export function kvLastRevisions(nc: NatsConnection, bucket: string, filters: readonly string[]): () => Promise<number[]> {
  let manager: JetStreamManager | undefined;
  const stream = `KV_${bucket}`;
  return async () => {
    manager ??= await jetstreamManager(nc, { checkAPI: false });
    const jsm = manager;
    return Promise.all(
      filters.map(async (filter) => {
        const last_by_subj = `$KV.${bucket}.${filter}`;
        // A bucket without allow_direct takes the API path.
        const m = await jsm.direct.getMessage(stream, { last_by_subj }).catch(() => jsm.streams.getMessage(stream, { last_by_subj }));
        return m?.seq ?? 0;
      }),
    );
  };
}
