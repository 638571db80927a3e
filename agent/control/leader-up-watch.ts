// The agent's ear for "leader up" (protocol/leader-up.ts): a core subscription; an announcement
// counts only if it verifies with the coordinator key set, is within the clock-skew window of our
// clock and is newer than the last one accepted (a replayed announcement changes nothing). Without
// the subscribe permission (accounts rendered by an older `crosslink-coordinator nats-config`, before
// it exported the announcement to agents: docs/security.md) the agent simply heartbeats at its own
// schedule: one warning, nothing else breaks.
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Clock } from '../../lib/clock.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { LeaderUp } from '../../protocol/leader-up.ts';
import { verifyEnvelope, type VerifyKeys } from '../../protocol/signing.ts';

export interface LeaderUpWatchOptions {
  readonly nc: NatsConnection;
  readonly subject: string;
  readonly coordinatorKey: VerifyKeys;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Announcements further than this from our clock are ignored; default 5 min (the coordinator's default --max-clock-skew). */
  readonly maxSkewMs?: number;
}

/** Calls `onLeaderUp` for each accepted announcement until the returned function is called. */
export function watchLeaderUp(o: LeaderUpWatchOptions, onLeaderUp: (a: LeaderUp) => void): () => void {
  let lastAt = -1;
  let warned = false;
  const maxSkewMs = o.maxSkewMs ?? 300_000;
  const accept = async (data: Uint8Array): Promise<void> => {
    let a: LeaderUp;
    try {
      a = await verifyEnvelope(data, o.coordinatorKey, LeaderUp);
    } catch (err) {
      o.logger.debug({ err: errorMessage(err) }, 'ignored a leader-up announcement that does not verify');
      return;
    }
    if (Math.abs(a.at - o.clock.now()) > maxSkewMs || a.at <= lastAt) {
      o.logger.debug({ epoch: a.epoch, at: a.at }, 'ignored a stale or reordered leader-up announcement');
      return;
    }
    lastAt = a.at;
    onLeaderUp(a);
  };
  let sub: Subscription | undefined;
  try {
    sub = o.nc.subscribe(o.subject, {
      callback: (err, msg) => {
        if (err) {
          if (!warned) o.logger.warn({ err: errorMessage(err), subject: o.subject }, 'cannot hear leader-up announcements (NATS accounts rendered by an older crosslink-coordinator nats-config? re-render them); heartbeats keep their own schedule and retries');
          warned = true;
          return;
        }
        accept(msg.data).catch((e: unknown) => o.logger.error({ err: errorMessage(e) }, 'handling a leader-up announcement failed'));
      },
    });
  } catch (err) {
    o.logger.warn({ err: errorMessage(err) }, 'cannot subscribe to leader-up announcements');
  }
  return () => {
    try {
      sub?.unsubscribe();
    } catch {
      // connection already closed
    }
  };
}
