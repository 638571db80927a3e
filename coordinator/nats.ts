// The coordinator's NATS connection: every server of the cluster, reconnect forever once connected
// (the coordinator outlives NATS restarts), optional .creds authentication. The first connection is
// retried until it works or `signal` aborts, so the coordinator can start before NATS.
import { readFile } from 'node:fs/promises';
import { connect, credsAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { retryWithBackoff } from '../lib/backoff.ts';
import type { Clock } from '../lib/clock.ts';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { CoordinatorConfig } from './config.ts';

/** Resolves to the connection, or undefined if `signal` aborted first. */
export async function connectNats(
  config: Pick<CoordinatorConfig, 'natsServers' | 'natsCreds'>,
  logger: Logger,
  clock: Clock,
  signal: AbortSignal,
): Promise<NatsConnection | undefined> {
  let creds: Uint8Array | undefined;
  if (config.natsCreds !== null) {
    try {
      creds = new Uint8Array(await readFile(config.natsCreds));
    } catch (err) {
      throw new CrosslinkError(`--nats-creds: cannot read ${config.natsCreds}: ${errorMessage(err)}`, { cause: err });
    }
  }
  const nc = await retryWithBackoff(
    () =>
      connect({
        servers: [...config.natsServers],
        name: 'crosslink-coordinator',
        maxReconnectAttempts: -1,
        // Shorter than the agents' 1 s: after a NATS restart the coordinator should be subscribed
        // again before the agents' first heartbeats arrive, or they fail with "no responders".
        reconnectTimeWait: 250,
        timeout: 5000,
        ...(creds ? { authenticator: credsAuthenticator(creds) } : {}),
      }),
    {
      policy: { initialMs: 500, maxMs: 10_000 },
      clock,
      signal,
      onFailure: (err, _failures, retryInMs) => {
        logger.warn({ servers: config.natsServers, err: errorMessage(err), retryInMs }, 'cannot connect to NATS yet; retrying');
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
