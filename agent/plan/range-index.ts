// An index of CIDR ranges answering "which is the FIRST range (in insertion order) that overlaps /
// equals this CIDR?" in O(distinct prefix lengths + log n) instead of a scan over every range. Pure.
//
// The route guard holds one range per node endpoint and private address plus the host's addresses
// and routes: 2,000+ ranges at 1,000 nodes, asked about every peer CIDR of the mesh (2,000+). A
// linear scan made every desired-state computation O(nodes²) — 4 M bigint comparisons, ~1 s of an
// agent's CPU per join at 1,000 peers (profiled, docs/benchmarks.md). Two aligned CIDRs overlap
// exactly when one contains the other, so:
//   - ranges that contain the query: mask the query's network to each prefix length present, look
//     the result up (a Map per family and prefix length);
//   - ranges inside the query: their network lies in [query.network, query.last] — a binary search
//     in the networks sorted per family, then a scan of exactly the hits.
// The first hit by insertion order is returned, so answers equal those of the scan it replaces.
import { cidrLast, prefixMask, type Cidr } from '../../protocol/cidr.ts';

const masks = { 4: [] as bigint[], 6: [] as bigint[] };
const maskOf = (family: 4 | 6, prefix: number): bigint => (masks[family][prefix] ??= prefixMask(family, prefix));

export type RangeMatch = 'overlap' | 'exact';

interface Entry<T> {
  readonly range: Cidr;
  readonly value: T;
  readonly order: number;
}

interface FamilyIndex<T> {
  /** prefix length → network → first entry with that range. */
  readonly byPrefix: Map<number, Map<bigint, Entry<T>>>;
  /** Every overlap-mode entry, sorted by network (then order). */
  readonly sorted: Entry<T>[];
}

export class RangeIndex<T> {
  private readonly families = new Map<4 | 6, FamilyIndex<T>>();
  private readonly exact = new Map<string, Entry<T>>();
  private count = 0;
  private dirty = false;

  /** Adds `range`: `overlap` matches any overlapping query, `exact` only the same network and prefix. */
  add(range: Cidr, mode: RangeMatch, value: T): void {
    const entry: Entry<T> = { range, value, order: this.count++ };
    if (mode === 'exact') {
      const key = `${range.family}/${range.prefix}/${range.network}`;
      if (!this.exact.has(key)) this.exact.set(key, entry);
      return;
    }
    let fam = this.families.get(range.family);
    if (!fam) {
      fam = { byPrefix: new Map(), sorted: [] };
      this.families.set(range.family, fam);
    }
    let nets = fam.byPrefix.get(range.prefix);
    if (!nets) {
      nets = new Map();
      fam.byPrefix.set(range.prefix, nets);
    }
    if (!nets.has(range.network)) nets.set(range.network, entry);
    fam.sorted.push(entry);
    this.dirty = true;
  }

  get size(): number {
    return this.count;
  }

  /** The value of the first-added range that matches `c` (overlap-mode: any overlap; exact-mode: same CIDR), or undefined. */
  first(c: Cidr): T | undefined {
    if (this.dirty) this.sort();
    // No closures here: this runs for every peer CIDR of every desired-state computation.
    let best: Entry<T> | undefined = this.exact.size === 0 ? undefined : this.exact.get(`${c.family}/${c.prefix}/${c.network}`);
    const fam = this.families.get(c.family);
    if (fam) {
      // Ranges containing c (same size or larger).
      for (const [prefix, nets] of fam.byPrefix) {
        if (prefix > c.prefix) continue;
        const e = nets.get(c.network & maskOf(c.family, prefix));
        if (e !== undefined && (best === undefined || e.order < best.order)) best = e;
      }
      // Ranges whose network lies inside c (any such range overlaps c).
      const last = cidrLast(c);
      const s = fam.sorted;
      let lo = 0;
      let hi = s.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((s[mid]?.range.network ?? 0n) < c.network) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < s.length; i++) {
        const e = s[i];
        if (e === undefined || e.range.network > last) break;
        if (best === undefined || e.order < best.order) best = e;
      }
    }
    return best?.value;
  }

  private sort(): void {
    for (const fam of this.families.values()) fam.sorted.sort((a, b) => (a.range.network < b.range.network ? -1 : a.range.network > b.range.network ? 1 : a.order - b.order));
    this.dirty = false;
  }
}
