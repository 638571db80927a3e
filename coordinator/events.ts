// The coordinator's events (protocol/events.ts), built from the records it just wrote: pure
// functions, so the registry only says when.
import type { EventInput } from '../protocol/events.ts';
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';

export function nodeJoinedEvent(record: NodeRecord): EventInput {
  return {
    type: 'node-joined',
    severity: 'info',
    node: record.name,
    cluster: record.cluster,
    message: `node ${record.name} joined cluster ${record.cluster} with overlay IP ${record.overlayIp}`,
    details: { overlayIp: record.overlayIp, endpoints: record.endpoints.join(',') || null },
  };
}

export type RemovalReason = 'expired' | 'deregistered' | 'revoked' | 'unenrolled';

const removalType = { expired: 'node-expired', deregistered: 'node-left', revoked: 'node-revoked', unenrolled: 'node-left' } as const;

export function nodeRemovedEvent(record: NodeRecord, reason: RemovalReason, lastSeenAt: number | null, now: number): EventInput {
  const silent = lastSeenAt === null ? '' : ` (last heartbeat ${Math.round((now - lastSeenAt) / 1000)}s ago)`;
  const why = {
    expired: `expired: no heartbeat within the node TTL${silent}`,
    deregistered: 'left the mesh (deregistered)',
    revoked: 'was removed: its identity is revoked',
    unenrolled: `was removed: cluster ${record.cluster} is no longer enrolled`,
  }[reason];
  return {
    type: removalType[reason],
    severity: reason === 'deregistered' ? 'info' : 'warning',
    node: record.name,
    cluster: record.cluster,
    message: `node ${record.name} ${why}`,
    details: { reason, overlayIp: record.overlayIp, lastSeenAt },
  };
}

export function gatewayChangedEvent(record: ClusterRecord, previous: string | null): EventInput {
  const now = record.gateway;
  const message =
    now === null
      ? `cluster ${record.name} has no active gateway${previous === null ? '' : ` (was ${previous})`}: no eligible live node`
      : previous === null
        ? `cluster ${record.name}: ${now} is the active gateway`
        : `cluster ${record.name}: active gateway ${previous} → ${now}`;
  return {
    type: 'gateway-changed',
    severity: now === null || previous !== null ? 'warning' : 'info',
    ...(now === null ? {} : { node: now }),
    cluster: record.name,
    message,
    details: { previous, gateway: now, gatewayEpoch: record.gatewayEpoch },
  };
}
