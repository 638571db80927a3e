// Leader election on a KV key. The leader renews with compare-and-set every ttl/3; a follower takes
// the lease when it is absent, or when it has watched the same lease revision go unrenewed for a full
// TTL on its own clock (so clock differences between replicas cannot cause a premature takeover),
// counted from when its read of that revision returned (the renewal was sent before that). A
// follower reads the lease every FOLLOWER_POLL_MS and wakes exactly when the revision it watches
// would expire, so a dead leader is replaced ≈ TTL after its last renewal, not up to two polls later.
// The leader stops writing as soon as a renewal fails by CAS or when its last successful renewal is a
// TTL old, which happens before any follower can take over.
// A lapse is not a loss: while the bucket takes no writes (a NATS stream electing a new leader takes
// 4–9 s, longer than a short lease) nobody can take the lease, so the lapsed leader keeps its term
// (not writing, answering "unavailable") and renews by compare-and-set as soon as writes pass again:
// if that succeeds nobody else led meanwhile, and it serves on without a reload or a new epoch. A
// follower whose watched lease expired while its holder still answers the presence probe (alive,
// only the bucket is stuck) waits up to LAPSE_GRACE_MS more before taking over. Both are bounded by
// LAPSE_GRACE_MS, and neither weakens safety: the compare-and-set decides, and holds() stays false
// for the whole lapse.
// With a `seal` (the coordinator's signing key set), the lease is a signed envelope: a lease written
// by anyone else does not verify and counts as absent, so it is taken over at once; a bucket writer
// can at worst make the leader step down for one renewal interval, never hold leadership. And a
// takeover is harmless anyway: a new leader re-signs only what verifies with our key set.
import type { KV } from '@nats-io/kv';
import * as z from 'zod';
import type { Clock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { isCasConflict } from './store.ts';

export const LeaseValue = z.object({
  holder: z.string().min(1),
  renewedAt: z.number(),
  ttlMs: z.number().int().positive(),
});
export type LeaseValue = z.infer<typeof LeaseValue>;

/** How often a follower reads the lease (TTL/3 if shorter): it learns of a renewal at most this late. */
export const FOLLOWER_POLL_MS = 250;

/**
 * How long past its expiry a lapsed lease is kept (by its holder) and deferred to (by a follower
 * that still sees the holder answer): covers a NATS stream's leader election (nats-server's
 * election timeout is 4–9 s) and the first renewal after it.
 */
export const LAPSE_GRACE_MS = 10_000;

export interface LeaseEvents {
  onAcquired(): void;
  onLost(reason: string): void;
}

/** Signs a lease value, and opens one (undefined: not signed by our key set, or malformed). */
export interface LeaseSeal {
  seal(value: LeaseValue): Promise<string>;
  open(raw: unknown): Promise<LeaseValue | undefined>;
}

export interface LeaseOptions {
  readonly holder: string;
  readonly seal?: LeaseSeal;
  readonly ttlMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** True while `holder` answers as the serving leader (the presence probe): a follower defers to it for LAPSE_GRACE_MS past expiry. */
  readonly holderAnswers?: (holder: string) => boolean;
}

export class LeaderLease {
  private leader = false;
  private revision = 0;
  /** Local time until which our lease is certainly valid (start of the last successful renewal + TTL). */
  private validUntil = 0;
  /** The other holder's lease as we last saw it, since when (our clock, when the read returned) it has not changed, and its TTL. */
  private observed: { revision: number; since: number; ttlMs: number; deferred?: boolean } | undefined;
  /** Counts acquisitions, so work started under an earlier term cannot write under a later one. */
  private termNumber = 0;
  /** The lease revision written when the current (or last) term began (the coordinator epoch's first part). */
  private takenAt = 0;
  private firstRoundDone: () => void = () => undefined;
  /** Resolves once the first campaign round has finished (we lead, or know someone else does, or it failed). */
  readonly firstRound: Promise<void> = new Promise((resolve) => {
    this.firstRoundDone = resolve;
  });

  constructor(
    private readonly kv: KV,
    private readonly opts: LeaseOptions,
  ) {}

  get holder(): string {
    return this.opts.holder;
  }

  /** True while we hold a lease that cannot have expired. Check before every write. */
  holds(): boolean {
    return this.leader && this.opts.clock.now() < this.validUntil;
  }

  /** True while we lead but our last renewal is older than the TTL (one in flight, slow under load): we may not write, and must not go silent. */
  lapsed(): boolean {
    return this.leader && !this.holds();
  }

  /** The number of the current (or last) term; pass it to holdsTerm. */
  get term(): number {
    return this.termNumber;
  }

  /** The lease revision our current (or last) term began with. */
  get termRevision(): number {
    return this.takenAt;
  }

  /** Like holds(), but only for the given term (a lease lost and re-acquired is a new term). */
  holdsTerm(term: number): boolean {
    return this.termNumber === term && this.holds();
  }

  get intervalMs(): number {
    return Math.max(100, Math.floor(this.opts.ttlMs / 3));
  }

  /** Campaigns and renews until `signal` aborts. Never throws. */
  async run(events: LeaseEvents, signal: AbortSignal): Promise<void> {
    if (signal.aborted) this.firstRoundDone();
    while (!signal.aborted) {
      try {
        if (this.leader) await this.renew(events);
        else await this.campaign(events);
      } catch (err) {
        this.opts.logger.debug({ err: errorMessage(err) }, 'lease round failed');
      }
      // Lapsed: keep the term (not writing) and retry the renewal soon; give up after the grace.
      const lapsed = this.lapsed();
      if (lapsed && !signal.aborted && this.opts.clock.now() >= this.validUntil + LAPSE_GRACE_MS) this.lose(events, `could not renew the lease within ${LAPSE_GRACE_MS} ms of its expiry`);
      this.firstRoundDone();
      if (signal.aborted) break;
      await this.opts.clock.sleep(this.leader ? (lapsed ? Math.min(this.intervalMs, FOLLOWER_POLL_MS) : this.intervalMs) : this.followerSleepMs(), signal);
    }
  }

  /**
   * A follower's next look: a poll period (a released lease is taken within it), or sooner when the
   * lease it watches expires sooner — then exactly at its expiry. Once that moment has passed (the
   * take failed), a poll period again, never a busy loop.
   */
  private followerSleepMs(): number {
    const poll = Math.min(this.intervalMs, FOLLOWER_POLL_MS);
    const o = this.observed;
    if (!o) return poll;
    const untilExpiry = o.since + o.ttlMs - this.opts.clock.now();
    return untilExpiry > 0 ? Math.min(poll, untilExpiry) : poll;
  }

  /** Gives the lease up (clean shutdown) so a follower takes over at once. */
  async release(): Promise<void> {
    if (!this.leader) return;
    this.leader = false;
    const revision = this.revision;
    try {
      await this.kv.delete(kvKeys.lease, { previousSeq: revision });
    } catch (err) {
      this.opts.logger.warn({ err: errorMessage(err) }, 'could not release the leader lease; a follower takes over after the lease TTL');
    }
  }

  private value(now: number): Promise<string> {
    const v: LeaseValue = { holder: this.opts.holder, renewedAt: now, ttlMs: this.opts.ttlMs };
    return this.opts.seal ? this.opts.seal.seal(v) : Promise.resolve(JSON.stringify(v));
  }

  private async read(raw: unknown): Promise<LeaseValue | undefined> {
    if (this.opts.seal) return this.opts.seal.open(raw);
    const parsed = LeaseValue.safeParse(raw);
    return parsed.success ? parsed.data : undefined;
  }

  private async renew(events: LeaseEvents): Promise<void> {
    const start = this.opts.clock.now();
    try {
      this.revision = await this.kv.update(kvKeys.lease, await this.value(start), this.revision, this.intervalMs);
      if (this.leader) this.validUntil = start + this.opts.ttlMs;
    } catch (err) {
      if (isCasConflict(err)) this.lose(events, 'the lease was taken over by another replica');
      else throw err;
    }
  }

  private async campaign(events: LeaseEvents): Promise<void> {
    const start = this.opts.clock.now();
    const entry = await this.kv.get(kvKeys.lease);
    // A revision first seen in this read was written no later than now, and its writer timed its TTL
    // from before it sent the write: counting ours from now can only end after the writer's own.
    // (Counting from `start` could end early: the renewal may reach the server after our read left.)
    const seenAt = this.opts.clock.now();
    if (entry === null || entry.operation !== 'PUT') {
      await this.take(events, start, undefined, 'no leader');
      return;
    }
    let current: LeaseValue | undefined;
    try {
      current = await this.read(entry.json<unknown>());
    } catch {
      current = undefined;
    }
    if (!current) {
      if (this.opts.seal) this.opts.logger.warn({ revision: entry.revision }, 'the lease is malformed or not signed by our key set (written by someone else): taking it over');
      await this.take(events, start, entry.revision, this.opts.seal ? 'lease not signed by our key set' : 'lease value is malformed');
      return;
    }
    if (current.holder === this.opts.holder) {
      // Our own lease from before a NATS outage or restart: nobody else can hold it, renew it.
      await this.take(events, start, entry.revision, 'resuming our own lease');
      return;
    }
    if (this.observed?.revision !== entry.revision) {
      this.observed = { revision: entry.revision, since: seenAt, ttlMs: current.ttlMs };
      return;
    }
    const overdue = start - this.observed.since - current.ttlMs;
    if (overdue >= 0 && overdue < LAPSE_GRACE_MS && this.opts.holderAnswers?.(current.holder) === true) {
      if (!this.observed.deferred) this.opts.logger.info({ holder: current.holder }, 'the lease expired but its holder still answers (the bucket may be electing a leader): waiting');
      this.observed.deferred = true;
      return;
    }
    if (overdue >= 0) {
      await this.take(events, start, entry.revision, `lease of ${current.holder} unrenewed for ${start - this.observed.since} ms`);
    }
  }

  private async take(events: LeaseEvents, start: number, revision: number | undefined, why: string): Promise<void> {
    const value = await this.value(start);
    try {
      this.revision = revision === undefined ? await this.kv.create(kvKeys.lease, value) : await this.kv.update(kvKeys.lease, value, revision, this.intervalMs);
    } catch (err) {
      if (isCasConflict(err)) {
        this.observed = undefined;
        return; // someone else won the race
      }
      throw err;
    }
    this.leader = true;
    this.termNumber++;
    this.takenAt = this.revision;
    this.observed = undefined;
    this.validUntil = start + this.opts.ttlMs;
    this.opts.logger.info({ holder: this.opts.holder, why }, 'became leader');
    events.onAcquired();
  }

  private lose(events: LeaseEvents, reason: string): void {
    if (!this.leader) return;
    this.leader = false;
    this.observed = undefined;
    this.opts.logger.warn({ holder: this.opts.holder, reason }, 'lost leadership');
    events.onLost(reason);
  }
}
