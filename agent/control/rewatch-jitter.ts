// When a watcher of the coordinator's bucket re-creates its watch after a NATS reconnect: at a random
// moment within a short window (lib/backoff.ts spreadWithin), so agents that lost the same server do
// not all create their consumers on JetStream in the same instant. MeshWatch and the range watches
// (the service and enrollment watches, range-resume.ts) take the same options and default.
import { spreadWithin, type Random } from '../../lib/backoff.ts';

/** The default window of the re-watch after a reconnect (ms). */
export const REWATCH_JITTER_MS = 2000;

export interface RewatchJitterOptions {
  /**
   * After a reconnect, re-create the watch after a random delay in [0, this) (default 2000 ms; 0:
   * at once), so agents that lost the same server do not all hit JetStream in the same instant.
   */
  readonly rewatchJitterMs?: number;
  /** Random source in [0, 1) for the jitter (tests). */
  readonly random?: Random;
}

/** The delay before the re-watch after a reconnect. */
export function rewatchDelayMs(o: RewatchJitterOptions): number {
  return spreadWithin(o.rewatchJitterMs ?? REWATCH_JITTER_MS, (o.random ?? Math.random)());
}
