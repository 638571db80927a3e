// In-memory liveness: when each node was last heard from. Deliberately not stored in the bucket
// (a write per heartbeat would be churn); a new leader grants every node one TTL of grace instead.
export class Liveness {
  private readonly lastSeen = new Map<string, number>();
  /** The identity key that signed the last sign of life (followers cannot check it against the record). */
  private readonly seenKey = new Map<string, string>();

  /** Records a sign of life signed by `identityKey`; never moves a node's time backwards. */
  touch(name: string, at: number, identityKey?: string): void {
    const prev = this.lastSeen.get(name);
    if (prev === undefined || at > prev) this.lastSeen.set(name, at);
    if (identityKey !== undefined) this.seenKey.set(name, identityKey);
  }

  /**
   * Keeps only the listed nodes, and of those only what was signed by the node's own identity key
   * (a follower records every verified heartbeat; the new leader checks the key here).
   */
  retainMatching(nodes: Iterable<readonly [string, string]>): void {
    const keys = new Map(nodes);
    for (const n of [...this.lastSeen.keys()]) {
      const key = keys.get(n);
      const seen = this.seenKey.get(n);
      if (key === undefined || (seen !== undefined && seen !== key)) this.forget(n);
    }
  }

  /** Treats every listed node as seen at `at` (start, takeover, NATS reconnect): nobody expires for one TTL. */
  graceAll(names: Iterable<string>, at: number): void {
    for (const n of names) this.lastSeen.set(n, at);
  }

  forget(name: string): void {
    this.lastSeen.delete(name);
    this.seenKey.delete(name);
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
