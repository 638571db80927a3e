// The leader removes every DURABLE consumer on the bucket's stream within moments of its creation.
// Crosslink creates none (KV watches are ordered, ephemeral consumers), but on nats-server 2.9 an
// agent credential can: a durable is created on the same subject as a KV watch
// (`$JS.API.CONSUMER.CREATE.KV_<b>.<name>.<filter>`) and differs only in `durable_name` in the body,
// which subject permissions cannot see (docs/security.md). The server's consumer-created advisory
// triggers a check within milliseconds; a periodic sweep catches what an advisory missed (leader
// change, reconnect). Each removal is logged and published as a `consumer-removed` event. The first
// sweep of a term waits half to one sweep interval (random): a new leader's first moments belong to
// the fleet's re-heartbeat (its "leader up" announcement), and the advisories cover the meantime.
import type { Clock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { EventInput, EventPublisher } from '../protocol/events.ts';

/** What the reaper needs of a consumer (a nats.js ConsumerInfo fits). */
export interface ConsumerView {
  readonly name: string;
  readonly config: {
    readonly durable_name?: string | undefined;
    readonly filter_subject?: string | undefined;
    readonly deliver_subject?: string | undefined;
    /** Nanoseconds; how long the server keeps an unused non-durable consumer. */
    readonly inactive_threshold?: number | undefined;
  };
}

/**
 * The longest inactivity threshold Crosslink's own consumers use (nats.js watches: 5 min; the
 * MeshWatch audit: 60 s), with room. A non-durable consumer asking for more is as lasting as a
 * durable one (an agent credential could ask for a year), so the reaper treats it the same.
 */
export const MAX_OWN_INACTIVE_THRESHOLD_NS = 10 * 60 * 1e9;

/** A consumer no Crosslink component creates: durable, or an ephemeral meant to outlive its reader. */
export function isRogueConsumer(config: ConsumerView['config']): boolean {
  if (config.durable_name !== undefined && config.durable_name !== '') return true;
  return (config.inactive_threshold ?? 0) > MAX_OWN_INACTIVE_THRESHOLD_NS;
}

/** The consumer API of one stream (test fakes implement it; `natsConsumerApi` adapts nats.js). */
export interface ConsumerApi {
  /** Every consumer of the stream. */
  list(): Promise<readonly ConsumerView[]>;
  /** null when the consumer does not exist (any other failure, e.g. no such stream, throws). */
  info(name: string): Promise<ConsumerView | null>;
  /** false when the consumer did not exist (gone already: another replica, a concurrent sweep). */
  delete(name: string): Promise<boolean>;
}

/** The advisory subject for consumers created on `stream` (the last token is the consumer's name). */
export function consumerCreatedAdvisory(stream: string): string {
  return `$JS.EVENT.ADVISORY.CONSUMER.CREATED.${stream}.*`;
}

export interface ConsumerReaperDeps {
  readonly stream: string;
  readonly api: ConsumerApi;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly events?: EventPublisher | undefined;
  /** Full sweep period (the advisories do the fast path). Default 60 s. */
  readonly sweepIntervalMs?: number;
  /** In [0, 1): where in the second half of the first interval the first sweep falls. Default Math.random. */
  readonly random?: () => number;
  /** Consumer checks in flight at once (a mass restart creates thousands of watch consumers). Default 4. */
  readonly concurrency?: number;
  /** Advisories waiting beyond this are dropped and left to the sweep. Default 10,000. */
  readonly maxQueued?: number;
}

export function consumerRemovedEvent(stream: string, c: ConsumerView, how: 'advisory' | 'sweep'): EventInput {
  return {
    type: 'consumer-removed',
    severity: 'warning',
    message: `removed durable consumer ${c.name} on ${stream} (filter ${c.config.filter_subject ?? 'none'}): Crosslink creates none; a NATS credential with consumer-create rights made it`,
    details: { stream, consumer: c.name, filter: c.config.filter_subject ?? null, deliverSubject: c.config.deliver_subject ?? null, found: how },
  };
}

export class ConsumerReaper {
  private readonly abort = new AbortController();
  private loop: Promise<void> = Promise.resolve();
  private removedCount = 0;
  private readonly queue: string[] = [];
  /** Advisory checks running (stop() waits for them). */
  private readonly checks = new Set<Promise<void>>();
  private droppedCount = 0;

  constructor(private readonly deps: ConsumerReaperDeps) {}

  /** Consumers removed so far. */
  get removed(): number {
    return this.removedCount;
  }

  /** Advisories dropped because the queue was full (their consumers are checked by the next sweep); the first drop is logged once. */
  get dropped(): number {
    return this.droppedCount;
  }

  /**
   * An advisory said `name` was created: checked soon, at most `concurrency` at a time, so a burst of
   * creates (agents restarting) never becomes a burst of info requests. Never throws.
   */
  enqueue(name: string): void {
    if (this.abort.signal.aborted) return;
    if (this.queue.length >= (this.deps.maxQueued ?? 10_000)) {
      if (this.droppedCount++ === 0) this.deps.logger.warn({ stream: this.deps.stream }, 'consumer reaper: too many new consumers at once; the rest are left to the next sweep');
      return;
    }
    this.queue.push(name);
    this.drain();
  }

  private drain(): void {
    while (this.checks.size < (this.deps.concurrency ?? 4) && this.queue.length > 0) {
      const name = this.queue.shift() ?? '';
      const check: Promise<void> = this.onCreated(name)
        .catch((err: unknown) => this.deps.logger.warn({ stream: this.deps.stream, consumer: name, err: errorMessage(err) }, 'consumer reaper: checking a new consumer failed (the sweep goes on)'))
        .finally(() => {
          this.checks.delete(check);
          this.drain();
        });
      this.checks.add(check);
    }
  }

  /** When the first sweep runs after start(): half to one sweep interval (see the file comment). */
  get firstSweepDelayMs(): number {
    const interval = this.deps.sweepIntervalMs ?? 60_000;
    return Math.round(interval / 2 + (interval / 2) * (this.deps.random ?? Math.random)());
  }

  /** Sweeps after firstSweepDelayMs, then every sweepIntervalMs until stop(). */
  start(): void {
    const firstDelay = this.firstSweepDelayMs;
    this.loop = (async () => {
      const signal = this.abort.signal;
      await this.deps.clock.sleep(firstDelay, signal);
      while (!signal.aborted) {
        await this.sweep().catch((err: unknown) => this.deps.logger.warn({ stream: this.deps.stream, err: errorMessage(err) }, 'consumer reaper: sweep failed'));
        await this.deps.clock.sleep(this.deps.sweepIntervalMs ?? 60_000, signal);
      }
    })();
  }

  /** Ends the sweeps and waits for the checks in flight; nothing is removed once it resolves. */
  async stop(): Promise<void> {
    this.abort.abort();
    this.queue.length = 0;
    await Promise.all([this.loop, ...this.checks]);
  }

  /** A consumer was created (from the advisory's subject): removes it if durable. */
  async onCreated(name: string): Promise<void> {
    if (this.abort.signal.aborted) return;
    let c: ConsumerView | null;
    try {
      c = await this.deps.api.info(name);
    } catch (err) {
      this.deps.logger.warn({ stream: this.deps.stream, consumer: name, err: errorMessage(err) }, 'consumer reaper: cannot read a new consumer; the next sweep checks it');
      return;
    }
    if (c !== null) await this.removeIfRogue(c, 'advisory');
  }

  /** Removes every durable consumer of the stream; returns how many. */
  async sweep(): Promise<number> {
    let all: readonly ConsumerView[];
    try {
      all = await this.deps.api.list();
    } catch (err) {
      this.deps.logger.warn({ stream: this.deps.stream, err: errorMessage(err) }, 'consumer reaper: cannot list consumers; retrying at the next sweep');
      return 0;
    }
    let n = 0;
    for (const c of all) {
      if (this.abort.signal.aborted) break;
      if (await this.removeIfRogue(c, 'sweep')) n++;
    }
    return n;
  }

  private async removeIfRogue(c: ConsumerView, how: 'advisory' | 'sweep'): Promise<boolean> {
    // The library hands back a consumer info without `config` for a consumer that vanished between
    // the advisory and the info request (an agent's ordered watch consumer): nothing to remove.
    const config = c.config as ConsumerView['config'] | undefined;
    if (config === undefined) return false;
    if (!isRogueConsumer(config)) return false;
    const { stream, logger } = this.deps;
    // Stopped while this check read the consumer: the term is over, its successor removes it.
    if (this.abort.signal.aborted) return false;
    try {
      // Gone already (another replica, a concurrent sweep) is no failure and no removal of ours.
      if (!(await this.deps.api.delete(c.name))) return false;
    } catch (err) {
      logger.warn({ stream, consumer: c.name, err: errorMessage(err) }, 'consumer reaper: could not remove a durable consumer; retrying at the next sweep');
      return false;
    }
    this.removedCount++;
    logger.warn({ stream, consumer: c.name, filter: config.filter_subject ?? null, deliverSubject: config.deliver_subject ?? null, durable: config.durable_name !== undefined && config.durable_name !== '', found: how }, 'removed a durable or long-lived consumer on the bucket stream (Crosslink creates none)');
    this.deps.events?.publish(consumerRemovedEvent(stream, c, how));
    return true;
  }
}
