// An index of CIDR ranges answering "which is the FIRST range (in insertion order) that overlaps /
// equals this CIDR?" in O(distinct prefix lengths + log n) instead of a scan over every range. Pure.
//
// The route guard holds one range per node endpoint and private address plus the host's addresses
// and routes: 2,000+ ranges at 1,000 nodes, asked about every peer CIDR of the mesh (2,000+). A
// linear scan made every desired-state computation O(nodes²) — 4 M bigint comparisons, ~1 s of an
// agent's CPU per join at 1,000 peers (profiled, docs/benchmarks.md). Two aligned CIDRs overlap
// exactly when one contains the other, so:
//   - ranges inside the query (the query's own range included): their network lies in
//     [query.network, query.last] — a binary search in the networks sorted per family, then a scan
//     of exactly the hits;
//   - larger ranges that contain the query: mask the query's network to each shorter prefix length
//     present, look the result up (a Map per family and prefix length). A host range (/32, /128)
//     contains a query only if it IS the query, which the sorted search already finds: host ranges
//     (the bulk: every node's underlay addresses) are kept out of these maps.
// The first hit by insertion order is returned, so answers equal those of the scan it replaces.
// IPv4 is kept as plain numbers end to end (`addIpv4`/`firstIpv4` take numbers, `add`/`first`
// convert once): no bigint arithmetic and no bigint Map keys on the path every peer CIDR takes.
import { cidrLast, prefixMask, type Cidr } from '../../protocol/cidr.ts';
import { lowerBound } from '../../lib/sorted-array.ts';

const masks6: bigint[] = [];
const mask6 = (prefix: number): bigint => (masks6[prefix] ??= prefixMask(6, prefix));
const mask4 = (prefix: number): number => (prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);
const TWO32 = 2 ** 32;

export type RangeMatch = 'overlap' | 'exact';

interface Entry<T, N> {
  readonly network: N;
  readonly value: T;
  readonly order: number;
}

interface Family<T, N> {
  /** prefix length (shorter than a host's) → network → first entry with that range. */
  readonly containers: Map<number, Map<N, Entry<T, N>>>;
  /** prefix length → network → first exact-mode entry with that range. */
  readonly exact: Map<number, Map<N, Entry<T, N>>>;
  /** Every overlap-mode entry, sorted by network once all are added. */
  sorted: Entry<T, N>[];
  dirty: boolean;
}

const family = <T, N>(): Family<T, N> => ({ containers: new Map(), exact: new Map(), sorted: [], dirty: false });

function put<T, N>(byPrefix: Map<number, Map<N, Entry<T, N>>>, prefix: number, entry: Entry<T, N>): void {
  let nets = byPrefix.get(prefix);
  if (nets === undefined) byPrefix.set(prefix, (nets = new Map<N, Entry<T, N>>()));
  if (!nets.has(entry.network)) nets.set(entry.network, entry);
}

/** Order of entries by network address (the sorted lists' order; lowerBound finds the first one at or above an address). */
const byNetwork4 = <T>(e: Entry<T, number>, network: number): number => e.network - network;
const byNetwork6 = <T>(e: Entry<T, bigint>, network: bigint): number => (e.network < network ? -1 : e.network > network ? 1 : 0);

function older<T, N>(a: Entry<T, N> | undefined, b: Entry<T, N> | undefined): Entry<T, N> | undefined {
  return a === undefined || (b !== undefined && b.order < a.order) ? b : a;
}

export class RangeIndex<T> {
  private readonly v4 = family<T, number>();
  private readonly v6 = family<T, bigint>();
  private count = 0;

  /** Adds `range`: `overlap` matches any overlapping query, `exact` only the same network and prefix. */
  add(range: Cidr, mode: RangeMatch, value: T): void {
    if (range.family === 4) {
      this.addIpv4(Number(range.network), range.prefix, mode, value);
      return;
    }
    this.insert(this.v6, range.network, range.prefix, 128, mode, value);
  }

  /** `add` for an IPv4 range given as numbers (network with host bits cleared, unsigned). */
  addIpv4(network: number, prefix: number, mode: RangeMatch, value: T): void {
    this.insert(this.v4, network, prefix, 32, mode, value);
  }

  private insert<N>(fam: Family<T, N>, network: N, prefix: number, bits: number, mode: RangeMatch, value: T): void {
    const entry: Entry<T, N> = { network, value, order: this.count++ };
    if (mode === 'exact') {
      put(fam.exact, prefix, entry);
      return;
    }
    if (prefix < bits) put(fam.containers, prefix, entry);
    fam.sorted.push(entry);
    fam.dirty = true;
  }

  get size(): number {
    return this.count;
  }

  /** The value of the first-added range that matches `c` (overlap-mode: any overlap; exact-mode: same CIDR), or undefined. */
  first(c: Cidr): T | undefined {
    return c.family === 4 ? this.firstIpv4(Number(c.network), c.prefix) : this.firstIpv6(c);
  }

  /** `first` for an IPv4 query given as numbers (network with host bits cleared, unsigned). */
  firstIpv4(network: number, prefix: number): T | undefined {
    // No closures here: this runs for every peer CIDR of every desired-state computation.
    const fam = this.v4;
    if (fam.dirty) {
      fam.sorted.sort((a, b) => byNetwork4(a, b.network));
      fam.dirty = false;
    }
    let best = fam.exact.size === 0 ? undefined : fam.exact.get(prefix)?.get(network);
    for (const [p, nets] of fam.containers) {
      if (p < prefix) best = older(best, nets.get((network & mask4(p)) >>> 0));
    }
    const last = network + TWO32 / 2 ** prefix - 1;
    const s = fam.sorted;
    for (let i = lowerBound(s, network, byNetwork4); i < s.length; i++) {
      const e = s[i] as Entry<T, number>;
      if (e.network > last) break;
      if (best === undefined || e.order < best.order) best = e;
    }
    return best?.value;
  }

  private firstIpv6(c: Cidr): T | undefined {
    const fam = this.v6;
    if (fam.dirty) {
      fam.sorted.sort((a, b) => byNetwork6(a, b.network));
      fam.dirty = false;
    }
    let best = fam.exact.size === 0 ? undefined : fam.exact.get(c.prefix)?.get(c.network);
    for (const [p, nets] of fam.containers) {
      if (p < c.prefix) best = older(best, nets.get(c.network & mask6(p)));
    }
    const last = cidrLast(c);
    const s = fam.sorted;
    for (let i = lowerBound(s, c.network, byNetwork6); i < s.length; i++) {
      const e = s[i] as Entry<T, bigint>;
      if (e.network > last) break;
      if (best === undefined || e.order < best.order) best = e;
    }
    return best?.value;
  }
}
