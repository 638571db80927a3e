// In-memory liveness: when each node was last heard from. Deliberately not stored in the bucket
// (a write per heartbeat would be churn); a new leader grants every node one TTL of grace instead.
export class Liveness {
  private readonly lastSeen = new Map<string, number>();

  /** Records a sign of life; never moves a node's time backwards. */
  touch(name: string, at: number): void {
    const prev = this.lastSeen.get(name);
    if (prev === undefined || at > prev) this.lastSeen.set(name, at);
  }

  /** Treats every listed node as seen at `at` (start, takeover, NATS reconnect): nobody expires for one TTL. */
  graceAll(names: Iterable<string>, at: number): void {
    for (const n of names) this.lastSeen.set(n, at);
  }

  /** Drops every name not listed (e.g. names only ever seen in heartbeats of unregistered nodes). */
  retainOnly(names: Iterable<string>): void {
    const keep = new Set(names);
    for (const n of [...this.lastSeen.keys()]) if (!keep.has(n)) this.lastSeen.delete(n);
  }

  forget(name: string): void {
    this.lastSeen.delete(name);
  }

  lastSeenAt(name: string): number | undefined {
    return this.lastSeen.get(name);
  }

  /** Names (from `names`) silent for at least `ttlMs`. A name never seen counts as seen now. */
  expired(names: Iterable<string>, now: number, ttlMs: number): string[] {
    const out: string[] = [];
    for (const n of names) {
      const at = this.lastSeen.get(n);
      if (at === undefined) this.lastSeen.set(n, now);
      else if (now - at >= ttlMs) out.push(n);
    }
    return out.sort();
  }
}
