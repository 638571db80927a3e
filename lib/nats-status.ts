// Connection status events of a NATS connection as a plain callback (agent and bench watch them).
import type { NatsConnection, Status } from '@nats-io/transport-node';

/**
 * Calls `listener` for every connection status event until the returned function is called or the
 * connection closes. (Breaking out of `for await` only happens on the next event, so we stop the
 * underlying queued iterator directly when it offers `stop`.)
 */
export function onConnectionStatus(nc: NatsConnection, listener: (status: Status) => void): () => void {
  const iterable = nc.status();
  let stopped = false;
  void (async () => {
    try {
      for await (const s of iterable) {
        if (stopped) break;
        listener(s);
      }
    } catch {
      // The iterator ends with an error when the connection closes badly; nothing to do.
    }
  })();
  return () => {
    stopped = true;
    const stoppable = iterable as Partial<{ stop: () => void }>;
    if (typeof stoppable.stop === 'function') stoppable.stop();
  };
}
