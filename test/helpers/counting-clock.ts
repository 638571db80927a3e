// The system clock, counting finished sleeps by length: a test on real time can wait for "the loop
// that sleeps N ms went round twice more" (an observable condition) instead of sleeping itself.
import { systemClock, type Clock } from '../../lib/clock.ts';

export class CountingClock implements Clock {
  private readonly done = new Map<number, number>();
  now(): number {
    return systemClock.now();
  }
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    await systemClock.sleep(ms, signal);
    if (!signal?.aborted) this.done.set(ms, (this.done.get(ms) ?? 0) + 1);
  }
  /** Sleeps of exactly `ms` that ran to their end. */
  slept(ms: number): number {
    return this.done.get(ms) ?? 0;
  }
}
