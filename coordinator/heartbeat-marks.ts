// Replay protection for heartbeats: the highest sentAt seen per identity key, in memory on every
// replica (followers receive every heartbeat too, so a new leader knows the marks at once). Keyed
// by the key that signed the heartbeat, so nobody can move another node's mark. Heartbeats are
// not written to the bucket (a write per heartbeat would be churn): after a restart of every
// replica, the persisted registration mark (bindings.ts) is the floor instead. Entries older than
// the clock-skew window are dropped: such heartbeats are refused as stale anyway.
//
// Two tables, as the MAC keys (protocol/heartbeat-mac.ts): marks of keys the replica knows as the
// named node's (bounded by the nodes, pruned by the window) and, apart, marks of any other key,
// bounded at `unknownMax` (oldest out). Anyone with an agent NATS user can sign heartbeats with fresh
// key pairs; before, each left a mark for the whole window (5 min by default: a flood of 10,000 a
// second held millions). A mark of an unknown key pushed out only lets that heartbeat be replayed,
// and an unknown key's heartbeat changes nothing (the registry refuses it, followers do not record
// it): docs/security-review.md.
import { setBounded } from '../lib/bounded-map.ts';

/** How many marks of keys no node is known by a replica keeps (docs/coordinator.md). */
export const UNKNOWN_MARKS_DEFAULT = 4096;

export class HeartbeatMarks {
  private readonly marks = new Map<string, number>();
  private readonly unknown = new Map<string, number>();
  private prunedAt = 0;

  constructor(
    private readonly windowMs: number,
    private readonly unknownMax = UNKNOWN_MARKS_DEFAULT,
  ) {}

  /**
   * True (and the mark moves up) when `sentAt` is above the key's mark; false: a replay or reordering.
   * `known`: the key is the named node's as far as this replica knows (its mark is kept for the window).
   */
  advance(identityKey: string, sentAt: number, now: number, known: boolean): boolean {
    this.prune(now);
    const mark = this.markOf(identityKey);
    if (mark !== undefined && sentAt <= mark) return false;
    if (known) {
      this.marks.set(identityKey, sentAt);
      this.unknown.delete(identityKey);
    } else {
      setBounded(this.unknown, identityKey, sentAt, this.unknownMax);
    }
    return true;
  }

  markOf(identityKey: string): number | undefined {
    return this.marks.get(identityKey) ?? this.unknown.get(identityKey);
  }

  /** Marks held: of known keys, of others. */
  get size(): { readonly known: number; readonly unknown: number } {
    return { known: this.marks.size, unknown: this.unknown.size };
  }

  private prune(now: number): void {
    if (now - this.prunedAt < this.windowMs) return;
    this.prunedAt = now;
    for (const table of [this.marks, this.unknown]) for (const [k, at] of table) if (now - at > this.windowMs) table.delete(k);
  }
}
