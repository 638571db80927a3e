// Binary search over arrays kept sorted by a comparator: where an item is or would go. Used to keep
// sorted lists up to date one item at a time instead of re-sorting them (agent/plan/incremental-plan.ts).

/** The first index whose element is not less than `probe` (the insertion point), by `cmp`. */
export function lowerBound<T, P>(sorted: readonly T[], probe: P, cmp: (element: T, probe: P) => number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const e = sorted[mid] as T;
    if (cmp(e, probe) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of an element equal to `probe` by `cmp`, or -1. */
export function indexOfSorted<T, P>(sorted: readonly T[], probe: P, cmp: (element: T, probe: P) => number): number {
  const i = lowerBound(sorted, probe, cmp);
  return i < sorted.length && cmp(sorted[i] as T, probe) === 0 ? i : -1;
}
