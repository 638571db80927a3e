// The coordinator's NATS connection: every server of the cluster, reconnect forever once connected
// (the coordinator outlives NATS restarts), authentication and TLS from lib/nats-connect.ts. The first connection is
// retried until it works or `signal` aborts, so the coordinator can start before NATS.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { retryWithBackoff } from '../lib/backoff.ts';
import type { Clock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import { describeNats, natsConnectionOptions } from '../lib/nats-connect.ts';
import type { Logger } from '../lib/logger.ts';
import type { CoordinatorConfig } from './config.ts';
import { COORDINATOR_INBOX_PREFIX } from './nats-permissions.ts';

/** Resolves to the connection, or undefined if `signal` aborted first. */
export async function connectNats(
  config: Pick<CoordinatorConfig, 'nats'>,
  logger: Logger,
  clock: Clock,
  signal: AbortSignal,
): Promise<NatsConnection | undefined> {
  // Secret files are read once, before retrying: an unreadable one will not get better by waiting
  // (NatsConnectError). The reconnect wait is shorter than the agents' 1 s: after a NATS restart the
  // coordinator should be subscribed again before the agents' first heartbeats arrive.
  const options = await natsConnectionOptions(config.nats, 'crosslink-coordinator', { maxReconnectAttempts: -1, reconnectTimeWaitMs: 250, inboxPrefix: COORDINATOR_INBOX_PREFIX });
  const nc = await retryWithBackoff(
    () => connect(options),
    {
      policy: { initialMs: 500, maxMs: 10_000 },
      clock,
      signal,
      onFailure: (err, _failures, retryInMs) => {
        logger.warn({ ...describeNats(config.nats), err: errorMessage(err), retryInMs }, 'cannot connect to NATS yet; retrying');
      },
    },
  );
  if (nc === undefined) return undefined;
  if (signal.aborted) {
    await nc.close();
    return undefined;
  }
  logger.info({ server: nc.getServer() }, 'connected to NATS');
  return nc;
}
