// The agent's periodic resync (every --resync-interval, default 30 s): the reconciler re-plans and
// re-applies everything and the policy enforcer its table, whatever the watches said — the backstop
// for drift nothing reported. On the agent's injected clock (lib/clock-timer.ts every()), not a bare
// setInterval, so a ManualClock drives it in tests; it ends for good when the agent's abort signal
// aborts (shutdown), including a signal aborted before it started.
import type { Clock } from '../lib/clock.ts';
import { ClockTimer } from '../lib/clock-timer.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';

export interface PeriodicResyncOptions {
  readonly clock: Clock;
  readonly intervalMs: number;
  /** What one resync does (the agent: a reconcile request and the policy's resync). */
  readonly resync: () => void;
  /** The agent's abort signal: the resync stops when it aborts. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
}

/** Starts the resync: the first at one interval of clock time from now, then every interval. */
export function startPeriodicResync(o: PeriodicResyncOptions): ClockTimer {
  const timer = new ClockTimer({ clock: o.clock, fire: o.resync, onError: (err) => o.logger.error({ err: errorMessage(err) }, 'periodic resync failed'), signal: o.signal });
  timer.every(o.intervalMs);
  return timer;
}
