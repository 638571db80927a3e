// Which node and cluster records of the coordinator's KV bucket a reader may believe: the value
// must carry the coordinator's signature, the record's name must match its key (a genuine record
// copied under another key is refused), and its generation must not go backwards from the one the
// reader holds (a replay). Shared by the agent's MeshWatch and the CLI's direct KV read.
import type { VerifyKeys } from './signing.ts';
import { errorMessage } from '../lib/errors.ts';
import { ClusterRecord, NodeRecord } from './messages.ts';
import { SignatureError, verifyEnvelope, verifyEnvelopeAsync } from './signing.ts';
import { clusterNameFromKey, nodeNameFromKey } from './subjects.ts';

/** A KV value a reader refused, kept so the CLI can flag it. */
export interface RejectedRecord {
  readonly key: string;
  readonly revision: number;
  readonly reason: string;
}

/** The kind and name a bucket key stands for; undefined for keys that are not node/cluster records. */
export function recordKeyOf(key: string): { readonly kind: 'node' | 'cluster'; readonly name: string } | undefined {
  const node = nodeNameFromKey(key);
  if (node !== undefined) return { kind: 'node', name: node };
  const cluster = clusterNameFromKey(key);
  return cluster === undefined ? undefined : { kind: 'cluster', name: cluster };
}

export type KvRecordVerdict =
  | { readonly ok: true; readonly kind: 'node'; readonly name: string; readonly record: NodeRecord }
  | { readonly ok: true; readonly kind: 'cluster'; readonly name: string; readonly record: ClusterRecord }
  | { readonly ok: false; readonly reason: string };

/**
 * Verifies one stored value under `key` (a node or cluster key: see recordKeyOf). `heldGeneration`
 * is the generation the reader already holds for that name, if any. `onThreadPool`: the signature
 * is checked on libuv's thread pool (bulk reads, many side by side), else on this thread (one live
 * entry: no thread round trip). Same checks, same verdicts.
 */
export async function verifyKvRecord(
  key: string,
  value: Uint8Array,
  coordinatorKey: VerifyKeys,
  heldGeneration?: number,
  onThreadPool = true,
): Promise<KvRecordVerdict | undefined> {
  const check = onThreadPool ? verifyEnvelopeAsync : verifyEnvelope;
  const at = recordKeyOf(key);
  if (!at) return undefined;
  let verdict: KvRecordVerdict;
  try {
    verdict =
      at.kind === 'node'
        ? { ok: true, kind: 'node', name: at.name, record: await check(value, coordinatorKey, NodeRecord) }
        : { ok: true, kind: 'cluster', name: at.name, record: await check(value, coordinatorKey, ClusterRecord) };
  } catch (err) {
    const reason = err instanceof SignatureError ? err.message : `signed but not a valid ${at.kind} record: ${errorMessage(err).slice(0, 200)}`;
    return { ok: false, reason };
  }
  if (verdict.record.name !== at.name) {
    return { ok: false, reason: `record names ${JSON.stringify(verdict.record.name)} but is stored under ${JSON.stringify(key)}` };
  }
  return judgeGeneration(verdict, heldGeneration);
}

/**
 * The replay check alone, for a verdict verifyKvRecord made without `heldGeneration` (the watch
 * verifies entries as they arrive, side by side, and judges each against what it holds when it
 * applies it, in order).
 */
export function judgeGeneration(verdict: KvRecordVerdict, heldGeneration: number | undefined): KvRecordVerdict {
  if (verdict.ok && heldGeneration !== undefined && verdict.record.generation < heldGeneration) {
    return { ok: false, reason: `generation ${verdict.record.generation} is older than the ${heldGeneration} we hold (replay?)` };
  }
  return verdict;
}
