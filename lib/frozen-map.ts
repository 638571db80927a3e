// An immutable Map: the snapshot components hand to each other (the KV watch's view of the mesh).
// ReadonlyMap stops mutation at compile time only; this also refuses it at run time, so a consumer
// can never change what another consumer of the same snapshot sees.
export class FrozenMap<K, V> extends Map<K, V> {
  constructor(entries: Iterable<readonly [K, V]> = []) {
    super();
    for (const [k, v] of entries) super.set(k, v);
    Object.freeze(this);
  }

  override set(key: K): this {
    throw new TypeError(`FrozenMap: cannot set ${String(key)}; snapshots are immutable`);
  }

  override delete(key: K): boolean {
    throw new TypeError(`FrozenMap: cannot delete ${String(key)}; snapshots are immutable`);
  }

  override clear(): void {
    throw new TypeError('FrozenMap: cannot clear; snapshots are immutable');
  }
}

/** A frozen copy of `entries` as a ReadonlyMap. */
export function frozenMap<K, V>(entries: Iterable<readonly [K, V]>): ReadonlyMap<K, V> {
  return new FrozenMap(entries);
}

/** Freezes a plain JSON-like value and everything it holds (records parsed from the KV). Returns it. */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value;
  for (const v of Object.values(value)) deepFreeze(v);
  return Object.freeze(value);
}
