// Replay protection for heartbeats: the highest sentAt seen per identity key, in memory on every
// replica (followers receive every heartbeat too, so a new leader knows the marks at once). Keyed
// by the key that signed the heartbeat, so nobody can move another node's mark. Heartbeats are
// not written to the bucket (a write per heartbeat would be churn): after a restart of every
// replica, the persisted registration mark (bindings.ts) is the floor instead. Entries older than
// the clock-skew window are dropped: such heartbeats are refused as stale anyway.
export class HeartbeatMarks {
  private readonly marks = new Map<string, number>();
  private prunedAt = 0;

  constructor(private readonly windowMs: number) {}

  /** True (and the mark moves up) when `sentAt` is above the key's mark; false: a replay or reordering. */
  advance(identityKey: string, sentAt: number, now: number): boolean {
    this.prune(now);
    const mark = this.marks.get(identityKey);
    if (mark !== undefined && sentAt <= mark) return false;
    this.marks.set(identityKey, sentAt);
    return true;
  }

  markOf(identityKey: string): number | undefined {
    return this.marks.get(identityKey);
  }

  get size(): number {
    return this.marks.size;
  }

  private prune(now: number): void {
    if (now - this.prunedAt < this.windowMs) return;
    this.prunedAt = now;
    for (const [k, at] of this.marks) if (now - at > this.windowMs) this.marks.delete(k);
  }
}
