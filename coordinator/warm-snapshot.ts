// A follower's decoded copy of the bucket, kept current by one KV watch (every key's current value,
// then each change, in stream order; re-created from the next revision if it ends: watchKeys), so a
// takeover hands the new term what a full read would return without reading the bucket again — at
// 1,000 nodes that read was 0.7–1.5 s of a failover under load (docs/benchmarks.md, round 20).
// The copy is taken "as of" a stream sequence the caller reads after it took the lease: the copy is
// then at least as fresh as a read started at that moment. If the watch has not got there within a
// bound (stalled, reconnecting), take() says so and the caller reads the bucket as before.
import type { KV, KvWatchEntry } from '@nats-io/kv';
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { watchKeys } from './revocation-watch.ts';
import type { AnyRecord, Snapshot, StateStore } from './store.ts';

export interface WarmSnapshotDeps {
  readonly kv: KV;
  /** Decodes entries (the same checks as a full read: StateStore.decodeAny) and builds the snapshot. */
  readonly store: Pick<StateStore, 'decodeAny' | 'snapshotOf'>;
  readonly clock: Clock;
  readonly logger: Logger;
}

export class WarmSnapshot {
  private readonly current = new Map<string, AnyRecord>();
  /** The highest stream sequence applied to `current`. */
  private applied = 0;
  private ended = false;
  private readonly abort = new AbortController();
  private readonly following: Promise<void>;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly deps: WarmSnapshotDeps) {
    this.following = watchKeys({ kv: deps.kv, clock: deps.clock, logger: deps.logger, signal: this.abort.signal }, '>', 'bucket (warm copy)', (e) => this.apply(e));
  }

  /** The highest bucket revision the copy holds. */
  get revision(): number {
    return this.applied;
  }

  /** The identity key of node `name`'s record in the copy (as far as it got); undefined: no record. */
  identityKeyOf(name: string): string | undefined {
    const r = this.current.get(kvKeys.node(name));
    return r?.kind === 'node' ? r.record.value.identityKey : undefined;
  }

  /**
   * Stops following and returns the copy once it holds every revision up to `revision` — or
   * undefined if it does not within `timeoutMs` (or was taken or stopped before): read the bucket.
   */
  async take(revision: number, timeoutMs: number): Promise<Snapshot | undefined> {
    if (this.ended) return undefined;
    const reached = await this.until(revision, timeoutMs);
    if (this.ended) return undefined;
    this.ended = true;
    this.abort.abort();
    return reached ? this.deps.store.snapshotOf(this.current) : undefined;
  }

  /** Stops following (the copy is dropped); resolves once the watch has ended. */
  async stop(): Promise<void> {
    this.ended = true;
    this.abort.abort();
    for (const w of this.waiters) w();
    await this.following;
  }

  private async apply(e: KvWatchEntry): Promise<void> {
    if (this.ended) return;
    const decoded = e.operation === 'PUT' ? await this.deps.store.decodeAny(e) : undefined;
    if (this.ended) return;
    // A later value (also a malformed one) or a delete marker replaces what came before, as in a full read.
    if (decoded === undefined) this.current.delete(e.key);
    else this.current.set(e.key, decoded);
    this.applied = Math.max(this.applied, e.revision);
    for (const w of this.waiters) w();
  }

  private until(revision: number, timeoutMs: number): Promise<boolean> {
    if (this.applied >= revision) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = new AbortController();
      const check = (): void => {
        if (this.applied < revision && !this.ended) return;
        this.waiters.delete(check);
        timer.abort();
        resolve(this.applied >= revision);
      };
      this.waiters.add(check);
      void this.deps.clock.sleep(timeoutMs, timer.signal).then(() => {
        if (timer.signal.aborted) return;
        this.waiters.delete(check);
        resolve(this.applied >= revision);
      });
    });
  }
}
