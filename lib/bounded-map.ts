// Tables keyed by values a peer chooses (identity keys, names) must not grow without bound: an entry
// goes in at the end, and the oldest entry (the Map's first, by insertion) goes out when it is full.

/** Sets `key` in `table`, dropping the oldest entry first when `table` already holds `max` others. */
export function setBounded<K, V>(table: Map<K, V>, key: K, value: V, max: number): void {
  if (!table.has(key) && table.size >= max) {
    const oldest = table.keys().next();
    if (oldest.done !== true) table.delete(oldest.value);
  }
  table.set(key, value);
}
