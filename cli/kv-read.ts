// Reads the coordinator's KV directly (no agent needed), with the same verification as the agent:
// the agent's MeshWatch, run until its first full snapshot, then stopped.
import type { NatsConnection } from '@nats-io/transport-node';
import { MeshWatch, type RejectedRecord } from '../agent/control/mesh-watch.ts';
import { systemClock } from '../lib/clock.ts';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { connectNats, type NatsSettings } from '../lib/nats-connect.ts';
import { waitFor } from '../lib/wait.ts';
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';

export interface KvReadOptions {
  readonly nats: NatsSettings;
  readonly coordinatorKey: string;
  readonly bucket: string;
  readonly timeoutMs?: number;
  readonly logger: Logger;
}

export interface KvSnapshot {
  readonly nodes: ReadonlyMap<string, NodeRecord>;
  readonly clusters: ReadonlyMap<string, ClusterRecord>;
  readonly rejected: ReadonlyMap<string, RejectedRecord>;
}

export class KvReadError extends CrosslinkError {
  override name = 'KvReadError';
}

export async function readMeshFromKv(o: KvReadOptions): Promise<KvSnapshot> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  let nc: NatsConnection;
  try {
    nc = await connectNats(o.nats, 'crosslink-cli', { maxReconnectAttempts: 0, reconnectTimeWaitMs: 500 });
  } catch (err) {
    throw new KvReadError(`cannot connect to NATS at ${o.nats.servers.join(',')}: ${errorMessage(err)}`, { cause: err });
  }
  const watch = new MeshWatch({
    nc,
    bucket: o.bucket,
    coordinatorKey: o.coordinatorKey,
    logger: o.logger,
    clock: systemClock,
    debounceMs: 0,
    auditIntervalMs: 0,
    retryMinMs: 200,
    retryMaxMs: 1000,
  });
  try {
    watch.start();
    await waitFor(() => watch.synced, { timeoutMs, intervalMs: 50, what: `the KV bucket "${o.bucket}"` }).catch((err: unknown) => {
      const why = watch.stats().lastError;
      throw new KvReadError(`cannot read the KV bucket "${o.bucket}"${why ? `: ${why}` : ` (${errorMessage(err)})`} — is the coordinator running with --bucket ${o.bucket}?`, { cause: err });
    });
    const snapshot = watch.snapshot();
    return { nodes: new Map(snapshot.nodes), clusters: new Map(snapshot.clusters), rejected: new Map(watch.rejected()) };
  } finally {
    await watch.stop();
    await nc.close();
  }
}
