// Equality of plain JSON data (what JSON.parse returns and what records are built from): primitives,
// arrays and plain objects, compared by value; key order does not matter. node:util's
// isDeepStrictEqual answers the same for such data but handles every JavaScript type (prototypes,
// symbols, Maps, cycles) and costs ~20 µs a call on a node record until V8 has optimised it — on the
// registration path of a freshly started coordinator, each time (issue 7). This costs ~2–6 µs.

/** Plain JSON data equal by value (objects: the same own enumerable keys with equal values). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  for (const k of ka) if (!Object.hasOwn(rb, k) || !jsonEqual(ra[k], rb[k])) return false;
  return true;
}
