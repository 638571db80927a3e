// The small health summary every agent publishes on `<prefix>.health.<node>` (every
// HEALTH_SUMMARY_INTERVAL_MS; O(peers) × ~150 bytes), signed by the node's identity key so a reader
// attributes it to the node whose verified record carries that key. The coordinator keeps the
// latest one per node, for HEALTH_SUMMARY_MAX_AGE_MS, in the stream healthStreamName(bucket);
// `crosslink mesh`, `crosslink graph` and `crosslink diagnose --all` read it.
import * as z from 'zod';
import { NodeName } from './messages.ts';

export const HEALTH_SUMMARY_INTERVAL_MS = 10_000;
/** A summary older than this is dropped from the stream (the node is silent: shown as "no summary"). */
export const HEALTH_SUMMARY_MAX_AGE_MS = 60_000;
/** At most this many peers per summary (a summary stays well under NATS' 1 MiB payload limit). */
export const HEALTH_SUMMARY_MAX_PEERS = 2000;

export const SummaryPeer = z
  .object({
    /** The peer node (for a gateway peer: the gateway). */
    peer: NodeName,
    state: z.enum(['up', 'down', 'pending', 'idle', 'stale', 'never']),
    path: z.enum(['direct', 'relay', 'gateway']),
    via: NodeName.nullable(),
    /** Nodes reached through this peer (a gateway carries its cluster). */
    carries: z.array(NodeName).max(HEALTH_SUMMARY_MAX_PEERS),
    handshakeAgeS: z.number().int().nonnegative().nullable(),
    rttMs: z.number().nonnegative().nullable(),
    rxBytes: z.number().int().nonnegative(),
    txBytes: z.number().int().nonnegative(),
    reason: z.string().max(200).nullable(),
  })
  .strict();
export type SummaryPeer = z.infer<typeof SummaryPeer>;

export const HealthSummary = z
  .object({
    v: z.literal(1),
    node: NodeName,
    cluster: z.string().min(1).max(63),
    at: z.number().int().nonnegative(),
    ready: z.boolean(),
    peers: z.array(SummaryPeer).max(HEALTH_SUMMARY_MAX_PEERS),
  })
  .strict();
export type HealthSummary = z.infer<typeof HealthSummary>;

export function healthSubject(prefix: string, node: string): string {
  return `${prefix}.health.${node}`;
}

export function healthStreamName(bucket: string): string {
  return `${bucket}_health`;
}
