// Reads the coordinator's KV directly (no agent needed), with the same verification as the agent's
// MeshWatch (protocol/kv-record.ts): every node and cluster key read once, each value verified.
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { connectNats, type NatsSettings } from '../lib/nats-connect.ts';
import { verifyKvRecord, type RejectedRecord } from '../protocol/kv-record.ts';
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';
import { kvKeys } from '../protocol/subjects.ts';
import type { VerifyKeys } from '../protocol/signing.ts';

export interface KvReadOptions {
  readonly nats: NatsSettings;
  readonly coordinatorKey: VerifyKeys;
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
  try {
    return await readVerified(nc, o, timeoutMs);
  } finally {
    await nc.close();
  }
}

async function readVerified(nc: NatsConnection, o: KvReadOptions, timeoutMs: number): Promise<KvSnapshot> {
  const nodes = new Map<string, NodeRecord>();
  const clusters = new Map<string, ClusterRecord>();
  const rejected = new Map<string, RejectedRecord>();
  try {
    const kv = await new Kvm(nc).open(o.bucket, { timeout: timeoutMs });
    const keys: string[] = [];
    for (const filter of [kvKeys.nodesFilter, kvKeys.clustersFilter]) for await (const k of await kv.keys(filter)) keys.push(k);
    for (const key of keys.sort()) {
      const e = await kv.get(key);
      if (!e || e.operation !== 'PUT') continue;
      const v = await verifyKvRecord(key, e.value, o.coordinatorKey);
      if (v === undefined) continue;
      if (!v.ok) rejected.set(key, { key, revision: e.revision, reason: v.reason });
      else if (v.kind === 'node') nodes.set(v.name, v.record);
      else clusters.set(v.name, v.record);
    }
  } catch (err) {
    throw new KvReadError(`cannot read the KV bucket "${o.bucket}": ${errorMessage(err)} — is the coordinator running with --bucket ${o.bucket}?`, { cause: err });
  }
  o.logger.debug({ bucket: o.bucket, nodes: nodes.size, clusters: clusters.size, rejected: rejected.size }, 'read the mesh from KV');
  return { nodes, clusters, rejected };
}
