// A warning that may repeat every few seconds (a retry loop) is logged at warn once per interval;
// the repeats go to debug, and the next warn says how many were held back. The same for lines at
// info that someone else can make repeat at will (a coordinator refusing requests: `log('info', …)`).
// Keys must come from a bounded set (a kind of message and a code, never a name a peer chose).
import type { Clock } from './clock.ts';
import type { Logger } from './logger.ts';

/** Logs the first occurrence at `warn` and repeats within `intervalMs` at `debug`, with a count. */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();
  constructor(
    private readonly logger: Logger,
    private readonly clock: Clock,
    private readonly intervalMs = 60_000,
  ) {}

  warn(key: string, fields: Record<string, unknown>, message: string): void {
    this.log('warn', key, fields, message);
  }

  /** Logs the first occurrence of `key` within `intervalMs` at `level`, the repeats at debug (the next one at `level` counts them). */
  log(level: 'info' | 'warn', key: string, fields: Record<string, unknown>, message: string): void {
    const now = this.clock.now();
    const prev = this.last.get(key);
    if (prev && now - prev.at < this.intervalMs) {
      prev.suppressed++;
      this.logger.debug(fields, message);
      return;
    }
    this.last.set(key, { at: now, suppressed: 0 });
    this.logger[level](prev && prev.suppressed > 0 ? { ...fields, suppressedSinceLast: prev.suppressed } : fields, message);
  }

  /** Forget a key so the next occurrence is logged at warn again (e.g. after a recovery). */
  reset(key: string): void {
    this.last.delete(key);
  }
}
