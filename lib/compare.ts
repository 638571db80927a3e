// The one name order: UTF-16 code-unit order, the order of `[...].sort()` on strings. Locale-free,
// so the agent, coordinator and CLI list names alike on every machine (localeCompare would not:
// it depends on the locale and orders "-" and digits differently).
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Compares objects by their `name`. */
export function byName(a: { readonly name: string }, b: { readonly name: string }): number {
  return compareText(a.name, b.name);
}

/** Ascending order of bigints (addresses and network numbers). */
export function compareBigint(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
