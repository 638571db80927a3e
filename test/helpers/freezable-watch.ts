// A KV watch whose deliveries can be held back without an error or an end (frozen): what a client
// sees when the server holding its consumer left the NATS cluster. A test fake for the agent's
// stall detection (agent/control/progress-monitor.ts) and its users.
import type { KvWatchEntry } from '@nats-io/kv';
import type { KeyWatch, KeyWatchOptions, KeyWatchSource } from '../../agent/control/key-watch.ts';

export class FreezableWatch implements KeyWatch {
  frozen = false;
  /** Entries this watch passed on. */
  yielded = 0;
  constructor(private readonly inner: KeyWatch) {}
  stop(): void {
    this.inner.stop();
  }
  initialCount(): Promise<number | undefined> {
    return this.inner.initialCount();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<KvWatchEntry> {
    for await (const e of this.inner) {
      if (this.frozen) continue;
      this.yielded++;
      yield e;
    }
  }
}

/**
 * A source whose every watch is freezable, whose creates can be refused (as the broker refuses them for
 * 10–20 s after a NATS server loss) or held (a slow create); remembers what it was asked and what it made.
 */
export class FreezingSource implements KeyWatchSource {
  readonly created: FreezableWatch[] = [];
  /** Every create asked for (refused and held ones too). */
  readonly asked: KeyWatchOptions[] = [];
  refuse = false;
  /** What a refused create throws. */
  refusal: () => Error = () => new Error('cannot create the watch: timeout');
  /** While set, a create waits for it after asking the inner source (its start revision fixed when asked). */
  hold: Promise<void> | undefined;
  /** Catch-up pages asked for. */
  catchUps = 0;
  constructor(private readonly inner: KeyWatchSource) {}
  async watch(o: KeyWatchOptions): Promise<KeyWatch> {
    this.asked.push(o);
    if (this.refuse) throw this.refusal();
    const inner = await this.inner.watch(o);
    await this.hold;
    const w = new FreezableWatch(inner);
    this.created.push(w);
    return w;
  }
  count(filter: string): ReturnType<KeyWatchSource['count']> {
    return this.inner.count(filter);
  }
  catchUp(o: Parameters<KeyWatchSource['catchUp']>[0]): ReturnType<KeyWatchSource['catchUp']> {
    this.catchUps++;
    return this.inner.catchUp(o);
  }
}
