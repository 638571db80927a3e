// When the agent's next heartbeat is due, as pure functions of what the last one met (tested on
// tables and a manual clock). Randomness is injected: `random` in [0, 1).
//
// Built on lib/backoff.ts, not beside it: the interval's ±10 % is lib's `jittered`, and the retries
// of an unanswered heartbeat are lib's `backoffDelay` (1 s doubling to 3 s, ±50 %) entered only after
// FLAT_RETRIES at its first delay. What stays here is the heartbeat's own: the flat start, the cap at
// one interval, the immediate re-sends after `stale-epoch`, and the two spreads (after a reconnect,
// after "leader up"), which are a uniform moment within a window, not a delay jittered around a
// value.
import { backoffDelay, jittered, spreadWithin, type BackoffPolicy } from '../../lib/backoff.ts';

/** What one heartbeat exchange came to. */
export type HeartbeatOutcome =
  /** The coordinator answered (ok, or a refusal a retry cannot fix): next one an interval later. */
  | 'answered'
  /** No answer, or `unavailable` (the coordinator is restarting or failing over): retried soon. */
  | 'unanswered'
  /** `stale-epoch`: a new leader took over; re-signed with its epoch at once. */
  | 'resend';

/** Re-signing after `stale-epoch` happens at once at most this often in a row (two replicas disagreeing must not make us spin). */
export const MAX_IMMEDIATE_RESENDS = 2;

/**
 * When the next heartbeat is due, `random` in [0, 1). Every interval is stretched or shrunk by up
 * to 10 %, and the heartbeat after a NATS reconnect waits a random part of half an interval:
 * agents that lost the same server reconnect in the same instant, and without the spread their
 * heartbeats would arrive together (before the coordinator itself has reconnected) on every
 * interval from then on.
 */
export function heartbeatDelayMs(kind: 'interval' | 'after-reconnect', intervalMs: number, random: number): number {
  return kind === 'interval' ? jittered(intervalMs, INTERVAL_JITTER, random) : spreadWithin(intervalMs / 2, random);
}

/** The spread of a normal interval: ±10 %. */
const INTERVAL_JITTER = 0.1;

/** Unanswered heartbeats retried at the backoff's first delay before it grows (≈ 5 s of an outage). */
export const FLAT_RETRIES = 5;

/** The backoff of unanswered heartbeats once the flat retries are used up: 1 s, 2 s, then 3 s, each ×0.5–1.5. */
export const HEARTBEAT_RETRY_BACKOFF: BackoffPolicy = { initialMs: 1000, maxMs: 3000, jitter: 0.5 };

/**
 * When to retry a heartbeat that got no answer (no responders, timeout, `unavailable`: the
 * coordinator is restarting or failing over), `failures` ≥ 1 in a row, `random` in [0, 1): 1 s
 * ×0.5–1.5 for the first five, then 2 s and 3 s ×0.5–1.5 (a long outage), never later than a
 * normal interval. A restart or failover takes a few seconds, and a node retrying at a growing
 * delay could land its answered heartbeat up to ~4 s after the new leader serves; flat retries
 * keep that under ~1.5 s. Spread ×0.5–1.5, so the fleet's retries are no burst: ≈ N per second
 * while the coordinator is away, the same order as a heartbeat interval's worth.
 */
export function heartbeatRetryDelayMs(failures: number, intervalMs: number, random: number): number {
  const backoffFailures = Math.max(1, failures - FLAT_RETRIES + 1);
  return Math.min(intervalMs, backoffDelay(HEARTBEAT_RETRY_BACKOFF, backoffFailures, () => random));
}

/** The delay until the next heartbeat after `outcome` (`failures`/`resends`: that outcome in a row, counting this one). */
export function nextHeartbeatDelayMs(outcome: HeartbeatOutcome, o: { readonly failures: number; readonly resends: number; readonly intervalMs: number; readonly random: number }): number {
  if (outcome === 'answered') return heartbeatDelayMs('interval', o.intervalMs, o.random);
  if (outcome === 'resend' && o.resends <= MAX_IMMEDIATE_RESENDS) return 0;
  return heartbeatRetryDelayMs(outcome === 'resend' ? o.resends - MAX_IMMEDIATE_RESENDS : o.failures, o.intervalMs, o.random);
}

/**
 * When a node heartbeats after a new leader announced itself (coordinator "leader up"): at a random
 * moment within `spreadMs` — the leader picks the spread from its node count, so the fleet's
 * heartbeats arrive at a bounded rate — unless it is due sooner anyway.
 */
export function announcedHeartbeatDelayMs(spreadMs: number, random: number): number {
  return spreadWithin(spreadMs, random);
}
