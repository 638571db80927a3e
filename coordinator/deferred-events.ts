// Events off the reply's critical path: the registry publishes `node-joined` (and removals, gateway
// changes) in the middle of handling a request, before its reply. Published there, each event left in
// a socket write of its own ahead of the reply (the NATS client flushes once per microtask batch).
// Deferred to the next turn of the event loop, the reply goes first and the events of one turn leave
// together in one write (docs/benchmarks.md, issue 7 round 18). Order is kept; nothing is dropped:
// the coordinator's stop() flushes what is still queued before the NATS connection is closed.
import type { EventInput, EventPublisher } from '../protocol/events.ts';

/** Runs `run` later (default: setImmediate, after the current I/O callback and its microtasks). */
export type Schedule = (run: () => void) => void;

export const nextTurn: Schedule = (run) => {
  setImmediate(run);
};

export interface DeferredEventPublisher extends EventPublisher {
  /** Publishes everything still queued, now (in order); the scheduled turn then finds nothing. */
  flush(): void;
}

export function deferredEvents(inner: EventPublisher, schedule: Schedule = nextTurn): DeferredEventPublisher {
  let queue: EventInput[] = [];
  let scheduled = false;
  const drain = (): void => {
    scheduled = false;
    const batch = queue;
    queue = [];
    for (const e of batch) inner.publish(e);
  };
  return {
    publish(event: EventInput): void {
      queue.push(event);
      if (!scheduled) {
        scheduled = true;
        schedule(drain);
      }
    },
    flush(): void {
      const batch = queue;
      queue = [];
      for (const e of batch) inner.publish(e);
    },
  };
}
