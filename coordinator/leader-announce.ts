// Publishes "leader up" (protocol/leader-up.ts) once a term serves: signed by the coordinator key,
// so agents act only on a real coordinator's word. Best effort: an agent that misses it is heard
// at its own next heartbeat (or retry) anyway.
import type { NatsConnection } from '@nats-io/transport-node';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { LeaderUp, leaderUpSpreadMs } from '../protocol/leader-up.ts';
import { signEnvelope, type SigningKeyPair } from '../protocol/signing.ts';

export interface LeaderAnnouncement {
  readonly nc: NatsConnection;
  readonly subject: string;
  readonly signingKey: SigningKeyPair;
  readonly holder: string;
  readonly epoch: string;
  readonly at: number;
  /** Live nodes the new leader knows (sets the spread). */
  readonly nodes: number;
  readonly heartbeatIntervalMs: number;
  readonly logger: Logger;
}

/** Signs and publishes the announcement; never throws. */
export async function announceLeader(a: LeaderAnnouncement): Promise<void> {
  try {
    const value = LeaderUp.parse({ kind: 'leader-up', v: 1, holder: a.holder, epoch: a.epoch, at: a.at, spreadMs: leaderUpSpreadMs(a.nodes, a.heartbeatIntervalMs) });
    a.nc.publish(a.subject, JSON.stringify(await signEnvelope(value, a.signingKey.secretKey)));
    a.logger.info({ epoch: a.epoch, nodes: a.nodes, spreadMs: value.spreadMs }, 'announced the new leader: agents heartbeat within the spread');
  } catch (err) {
    a.logger.warn({ err: errorMessage(err) }, 'could not announce the new leader (agents are heard at their next heartbeat)');
  }
}
