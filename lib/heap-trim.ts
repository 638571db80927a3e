// Keeps a long-running process's V8 heap near its live size: every few seconds it looks at the used
// heap and, once that has grown 2 MiB or 15 % (whichever is more) past what the last full GC left
// live, runs a full GC. Why: V8 schedules its own next full GC about 8 MiB past the live heap whatever the flags
// (measured in the agent at 1,000 peers with --trace-gc: 13.5 MB live, the next full GC at 21-22 MB;
// --optimize-for-size and --heap-growing-percent=10 do not move it), and the pages it commits up to
// there stay resident: at the agent's ~14 MiB live heap that headroom is ~60 % of the heap and
// 5-7 MiB of RSS (docs/benchmarks.md, issue 10 round 19). A full GC of that heap takes 15-40 ms
// and, at the agent's idle allocation rate at 1,000 peers, runs about every 10 s; the 15 % keeps a
// bigger mesh's longer GCs (3,000 peers: ~20-28 MiB live) from running more often than that.
// The GC function is node's `--expose-gc` global (bin/run-compiled gives it to the agent); without
// it (tests run the TypeScript directly) heapTrimFromGlobal returns undefined and nothing runs.
import type { Clock } from './clock.ts';
import { ValidationError, errorMessage } from './errors.ts';
import type { Logger } from './logger.ts';

export interface HeapTrimOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** A full, synchronous garbage collection. */
  readonly gc: () => void;
  /** The V8 heap in use now, in bytes (default: process.memoryUsage().heapUsed). */
  readonly usedHeapBytes?: () => number;
  /** How often the heap is looked at (default 2 s; a look that finds no growth costs no GC). */
  readonly intervalMs?: number;
  /** Growth past the last live size that triggers a collection: at least this (default 2 MiB)... */
  readonly slackBytes?: number;
  /** ...or this share of the live size, if more (default 0.15): a bigger heap costs more per GC, so it is collected less often. */
  readonly slackFraction?: number;
}

export const HEAP_TRIM_DEFAULTS = { intervalMs: 2_000, slackBytes: 2 * 1024 * 1024, slackFraction: 0.15 } as const;

export class HeapTrim {
  private readonly intervalMs: number;
  private readonly slackBytes: number;
  private readonly slackFraction: number;
  private readonly usedHeapBytes: () => number;
  /** What the heap held right after our last collection, lowered when V8's own collections go below it. */
  private live: number | null = null;
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;
  readonly counters = { checks: 0, collections: 0 };

  constructor(private readonly o: HeapTrimOptions) {
    this.intervalMs = o.intervalMs ?? HEAP_TRIM_DEFAULTS.intervalMs;
    this.slackBytes = o.slackBytes ?? HEAP_TRIM_DEFAULTS.slackBytes;
    this.slackFraction = o.slackFraction ?? HEAP_TRIM_DEFAULTS.slackFraction;
    this.usedHeapBytes = o.usedHeapBytes ?? ((): number => process.memoryUsage().heapUsed);
    if (!(Number.isFinite(this.intervalMs) && this.intervalMs > 0)) {
      throw new ValidationError('heap trim intervalMs', this.intervalMs, 'give a number of milliseconds > 0');
    }
    if (!(Number.isFinite(this.slackBytes) && this.slackBytes > 0)) {
      throw new ValidationError('heap trim slackBytes', this.slackBytes, 'give a number of bytes > 0');
    }
    if (!(Number.isFinite(this.slackFraction) && this.slackFraction >= 0)) {
      throw new ValidationError('heap trim slackFraction', this.slackFraction, 'give a share of the live heap >= 0 (0.15 is 15 %)');
    }
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  /** One look at the heap; true when it ran a collection. */
  check(): boolean {
    this.counters.checks++;
    const used = this.usedHeapBytes();
    if (this.live !== null) {
      this.live = Math.min(this.live, used);
      if (used - this.live < Math.max(this.slackBytes, this.live * this.slackFraction)) return false;
    }
    const t0 = this.o.clock.now();
    this.o.gc();
    this.counters.collections++;
    this.live = this.usedHeapBytes();
    this.o.logger.debug({ beforeBytes: used, liveBytes: this.live, ms: this.o.clock.now() - t0 }, 'heap trimmed');
    return true;
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      await this.o.clock.sleep(this.intervalMs, signal);
      if (signal.aborted) break;
      try {
        this.check();
      } catch (err) {
        // A GC function that throws is a programming error; stop trying rather than log every interval.
        this.o.logger.warn({ err: errorMessage(err) }, 'heap trim stopped');
        return;
      }
    }
  }
}

/** A HeapTrim on node's `--expose-gc` global, or undefined when the process was started without it. */
export function heapTrimFromGlobal(options: Omit<HeapTrimOptions, 'gc'>): HeapTrim | undefined {
  const gc = globalThis.gc;
  if (typeof gc !== 'function') return undefined;
  return new HeapTrim({ ...options, gc: () => gc() });
}
