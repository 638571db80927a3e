// NATS connection status streams for tests of the watchers: a real connection whose status events the
// test says (`say({ type: 'reconnect', server })`), everything else passed to it — what a watcher
// sees when its client moved to another server, without moving it; and a stand-in connection whose
// status stream never says anything (for watchers run on a fake watch source).
import type { NatsConnection, Status } from '@nats-io/transport-node';

export interface ScriptedStatus {
  readonly nc: NatsConnection;
  /** Delivers `s` to every status stream opened on `nc` and not stopped. */
  say(s: Status): void;
  /** Status streams opened on `nc` and not stopped yet (each a listener of the connection). */
  open(): number;
}

export function scriptedStatus(real: NatsConnection): ScriptedStatus {
  const sinks = new Set<(s: Status) => void>();
  const status = (): AsyncIterable<Status> & { stop(): void } => {
    const pending: Status[] = [];
    let wake: (() => void) | undefined;
    let stopped = false;
    const sink = (s: Status): void => {
      pending.push(s);
      wake?.();
    };
    sinks.add(sink);
    return {
      stop: () => {
        stopped = true;
        sinks.delete(sink);
        wake?.();
      },
      async *[Symbol.asyncIterator]() {
        while (!stopped) {
          const s = pending.shift();
          if (s) {
            yield s;
            continue;
          }
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
      },
    };
  };
  const nc = new Proxy(real, {
    get: (target, prop) => {
      if (prop === 'status') return status;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...args: unknown[]) => unknown).bind(target) : v;
    },
  });
  return {
    nc,
    say: (s) => {
      for (const sink of sinks) sink(s);
    },
    open: () => sinks.size,
  };
}

/** A connection whose status stream never says anything (nothing else on it may be used). */
export const quietConnection = (): NatsConnection =>
  ({
    status: () => ({
      [Symbol.asyncIterator]: () => ({ next: () => new Promise<IteratorResult<never>>(() => undefined) }),
      stop: () => undefined,
    }),
  }) as unknown as NatsConnection;
