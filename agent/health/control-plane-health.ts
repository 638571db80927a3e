// Is the control plane answering? Connected to NATS is not enough: the coordinator leader must be
// acknowledging our heartbeats. Heartbeats go out every TTL/4 (±10 %, unanswered ones are retried
// sooner); with no acknowledgement for a whole node TTL (four heartbeats in a row), the coordinator
// is not answering and our record would already have expired. Pure.
import type { ControlPlaneHealth } from '../../protocol/health.ts';

export const ANSWER_TTL_SHARE = 1;

export interface ControlPlaneFacts {
  readonly connected: boolean;
  readonly registered: boolean;
  readonly lastHeartbeatAt: number | null;
  readonly heartbeatIntervalMs: number | null;
  readonly nodeTtlMs: number | null;
  readonly lastError: string | null;
}

/** Longest silence (ms) still counted as answering. */
export function answerWindowMs(f: Pick<ControlPlaneFacts, 'heartbeatIntervalMs' | 'nodeTtlMs'>): number {
  const interval = f.heartbeatIntervalMs ?? 10_000;
  const ttl = f.nodeTtlMs ?? interval * 4;
  return Math.max(ttl * ANSWER_TTL_SHARE, interval * 2);
}

export function controlPlaneHealth(f: ControlPlaneFacts | null, now: number): ControlPlaneHealth {
  const base = { heartbeatIntervalMs: f?.heartbeatIntervalMs ?? null, nodeTtlMs: f?.nodeTtlMs ?? null };
  if (f === null) return { ...base, answering: false, reason: 'not connected to NATS yet' };
  if (!f.connected) return { ...base, answering: false, reason: `NATS disconnected${f.lastError ? `: ${f.lastError}` : ''}` };
  if (!f.registered || f.lastHeartbeatAt === null) return { ...base, answering: false, reason: `not registered${f.lastError ? `: ${f.lastError}` : ''}` };
  const age = now - f.lastHeartbeatAt;
  const window = answerWindowMs(f);
  if (age > window) {
    return {
      ...base,
      answering: false,
      reason: `no heartbeat acknowledged for ${Math.round(age / 1000)}s (node TTL ${Math.round((f.nodeTtlMs ?? 0) / 1000)}s): the coordinator leader is not answering${f.lastError ? ` (${f.lastError})` : ''}`,
    };
  }
  return { ...base, answering: true, reason: `heartbeat acknowledged ${Math.max(0, Math.round(age / 1000))}s ago` };
}
