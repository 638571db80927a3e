// A manually advanced Clock for tests (a test fake: it lives under test/, never in the production tree).
import type { Clock } from '../../lib/clock.ts';
import { waitFor } from '../../lib/wait.ts';

/** Manually advanced clock for tests. `sleep` resolves when `advance` passes its deadline, or at
 *  once when its signal aborts (as systemClock's does). */
export class ManualClock implements Clock {
  private t: number;
  private waiters: { at: number; resolve: () => void }[] = [];
  constructor(private readonly start = 1_700_000_000_000) {
    this.t = start;
  }
  now(): number {
    return this.t;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve();
      };
      const waiter = {
        at: this.t + ms,
        resolve: (): void => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
  /** True once something sleeps until exactly `at`: a test advances only after the sleeper is armed (an observable condition, not a real-time sleep). */
  hasSleeperAt(at: number): boolean {
    return this.waiters.some((w) => w.at === at);
  }
  /** When the pending sleeps are due, earliest first. */
  get wakeups(): number[] {
    return this.waiters.map((w) => w.at).sort((a, b) => a - b);
  }
  /** Number of pending sleeps. */
  get sleepers(): number {
    return this.waiters.length;
  }
  /** Advances to `at` once something sleeps until exactly then (`what`: the sleeper meant, for the timeout's message). */
  async advanceWhenArmed(at: number, what: string): Promise<void> {
    const rel = (ms: number): string => `t+${ms - this.start}`;
    await waitFor(() => this.hasSleeperAt(at), { timeoutMs: 10_000, intervalMs: 20, what: `a sleeper armed for ${what} (${rel(at)} ms; armed: ${this.wakeups.map(rel).join(', ')})` });
    this.advanceTo(at);
  }
  advanceTo(at: number): void {
    this.advance(at - this.t);
  }
  advance(ms: number): void {
    this.t += ms;
    const due = this.waiters.filter((w) => w.at <= this.t);
    this.waiters = this.waiters.filter((w) => w.at > this.t);
    for (const w of due) w.resolve();
  }
}
