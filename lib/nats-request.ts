// A NATS request that ends when the connection it was sent on is lost. nats.js keeps a request
// waiting across a disconnect until its timeout, but the request (or its reply) went down with the
// old connection: after a reconnect to another server of the cluster nothing answers it, so the
// caller would wait out its whole timeout (5 s for the agent's registration) before retrying.
import type { Msg, NatsConnection, Payload, RequestOptions } from '@nats-io/transport-node';
import { CrosslinkError } from './errors.ts';
import { onConnectionStatus } from './nats-status.ts';

/**
 * The connection dropped while the request was in flight: no reply will come. The coordinator may
 * or may not have received it (a registration may have been applied): the retry must be safe to
 * repeat, and is a fresh request once the connection is back (nats.js discards what is published
 * while it dials).
 */
export class ConnectionLostError extends CrosslinkError {
  override name = 'ConnectionLostError';
  constructor(
    readonly subject: string,
    readonly server: string | undefined,
  ) {
    super(`the NATS connection${server === undefined ? '' : ` to ${server}`} was lost while the request to ${subject} was in flight; its reply cannot come`);
  }
}

/** What requestUntilDisconnect needs of a connection (tests pass a fake). */
export type RequestConnection = Pick<NatsConnection, 'request' | 'status'>;

/**
 * `nc.request(subject, payload, opts)`, ended with a ConnectionLostError at the connection's next
 * `disconnect` status instead of at its timeout. Only a disconnect after the call counts (one that
 * came before it is not this request's loss). The status listener is
 * removed as soon as the request settles either way (one per request in flight, none after). The
 * abandoned nats.js request still ends at its own timeout (its rejection is consumed here).
 */
export async function requestUntilDisconnect(nc: RequestConnection, subject: string, payload: Payload, opts: RequestOptions): Promise<Msg> {
  let lose: (err: ConnectionLostError) => void = () => undefined;
  const lost = new Promise<never>((_, reject) => {
    lose = reject;
  });
  const stopListening = onConnectionStatus(nc, (s) => {
    if (s.type === 'disconnect') lose(new ConnectionLostError(subject, s.server));
  });
  try {
    const request = nc.request(subject, payload, opts);
    // Abandoned at a disconnect, it still rejects at its own timeout: nobody is waiting for that.
    request.catch(() => undefined);
    return await Promise.race([request, lost]);
  } finally {
    stopListening();
  }
}
