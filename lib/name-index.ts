// Key → the names holding it, for indexes where nearly every key has exactly one name (a node's
// WireGuard key, its pod CIDR). A lone name is stored as the string itself; a Set only from the
// second name on. On V8 an empty-ish Set or Map costs ~150–200 bytes (its hash table), so a Set per
// key was ~2 MiB per index at 10,000 nodes (heap snapshot of the coordinator, docs/benchmarks.md).

export class NameIndex<K> {
  private readonly byKey = new Map<K, string | Set<string>>();

  get size(): number {
    return this.byKey.size;
  }

  has(key: K): boolean {
    return this.byKey.has(key);
  }

  /** The names holding `key` (empty if none). A fresh iterable: safe to change the index meanwhile. */
  names(key: K): readonly string[] {
    const v = this.byKey.get(key);
    return v === undefined ? [] : typeof v === 'string' ? [v] : [...v];
  }

  /** How many names hold `key`, and whether `name` is one of them, without copying. */
  count(key: K): number {
    const v = this.byKey.get(key);
    return v === undefined ? 0 : typeof v === 'string' ? 1 : v.size;
  }

  holds(key: K, name: string): boolean {
    const v = this.byKey.get(key);
    return v === undefined ? false : typeof v === 'string' ? v === name : v.has(name);
  }

  /** Adds `name` under `key`; true if the key is new. */
  add(key: K, name: string): boolean {
    const v = this.byKey.get(key);
    if (v === undefined) {
      this.byKey.set(key, name);
      return true;
    }
    if (typeof v === 'string') {
      if (v !== name) this.byKey.set(key, new Set([v, name]));
    } else v.add(name);
    return false;
  }

  /** Removes `name` from `key`; true if that left the key without names (it is then gone). */
  delete(key: K, name: string): boolean {
    const v = this.byKey.get(key);
    if (v === undefined) return false;
    if (typeof v === 'string') {
      if (v !== name) return false;
      this.byKey.delete(key);
      return true;
    }
    if (!v.delete(name)) return false;
    if (v.size === 1) this.byKey.set(key, v.values().next().value ?? name);
    return false;
  }
}
