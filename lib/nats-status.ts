// Connection status events of a NATS connection as a plain callback (agent and bench watch them).
import type { NatsConnection, Status } from '@nats-io/transport-node';
import type { Clock } from './clock.ts';

/**
 * Calls `listener` for every connection status event until the returned function is called or the
 * connection closes. (Breaking out of `for await` only happens on the next event, so we stop the
 * underlying queued iterator directly when it offers `stop`.)
 */
export function onConnectionStatus(nc: Pick<NatsConnection, 'status'>, listener: (status: Status) => void): () => void {
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

/**
 * Resolves true at the connection's next status of `type` (e.g. the `reconnect` after a request was
 * lost with the connection: it takes a network round trip, so listening from the moment the loss is
 * seen misses nothing), false after `timeoutMs` on `clock`. The listener is removed either way.
 */
export async function nextConnectionStatus(nc: Pick<NatsConnection, 'status'>, type: Status['type'], o: { readonly clock: Clock; readonly timeoutMs: number }): Promise<boolean> {
  const seen = new AbortController();
  const stop = onConnectionStatus(nc, (s) => {
    if (s.type === type) seen.abort();
  });
  try {
    await o.clock.sleep(o.timeoutMs, seen.signal);
  } finally {
    stop();
  }
  return seen.signal.aborted;
}
