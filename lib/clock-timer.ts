// A timer on the injected clock (lib/clock.ts), re-armable and cancellable, one-shot (arm) or
// periodic (every): what a module that takes a Clock uses instead of a bare setTimeout or
// setInterval, so a ManualClock drives it in tests. Each
// arming is a clock.sleep with its own AbortController; re-arming or cancelling aborts it, and a
// sleep that ended by an abort never fires. An error thrown (or rejected) by the callback goes to
// onError, never dropped.
import type { Clock } from './clock.ts';

export interface ClockTimerOptions {
  readonly clock: Clock;
  /** Called once per arming that ran its full time (each period, for every()). */
  readonly fire: () => unknown;
  /** What fire() threw or rejected with. */
  readonly onError: (err: unknown) => void;
  /** Cancels the timer for good when it aborts (its owner stopped). */
  readonly signal?: AbortSignal;
}

export class ClockTimer {
  private armed: AbortController | undefined;

  constructor(private readonly o: ClockTimerOptions) {}

  /** Armed and not yet fired or cancelled. */
  get pending(): boolean {
    return this.armed !== undefined;
  }

  /** Fires `ms` of clock time from now; an earlier arming is cancelled (pushed back, not doubled). */
  arm(ms: number): void {
    this.schedule(ms, false);
  }

  /** Fires every `ms` of clock time (as setInterval: the next period starts as one fires) until cancelled. */
  every(ms: number): void {
    this.schedule(ms, true);
  }

  cancel(): void {
    this.armed?.abort();
    this.armed = undefined;
  }

  private schedule(ms: number, repeat: boolean): void {
    this.cancel();
    const owner = this.o.signal;
    if (owner?.aborted) return;
    const arming = new AbortController();
    this.armed = arming;
    // The owner's signal is listened to only while armed: a short-lived timer of a long-lived owner
    // (a probe's expiry, one per probe) must not leave a listener on the owner's signal behind.
    const ownerStopped = (): void => {
      if (this.armed === arming) this.cancel();
    };
    owner?.addEventListener('abort', ownerStopped, { once: true });
    this.o.clock
      .sleep(ms, arming.signal)
      .then(async () => {
        owner?.removeEventListener('abort', ownerStopped);
        if (arming.signal.aborted) return;
        if (repeat) this.schedule(ms, true);
        else this.armed = undefined;
        await this.o.fire();
      })
      .catch(this.o.onError);
  }
}
