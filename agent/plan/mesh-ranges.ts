// The mesh's CIDRs (overlay /32s, pod CIDRs) and underlay addresses (endpoints, private addresses)
// as counted sets that can be updated one node at a time, answering the two overlap questions the
// incremental planner asks before it may skip a full computation (agent/plan/incremental-plan.ts):
// "does any mesh CIDR contain this address?" and "does any underlay address lie inside this CIDR?".
// Updates and queries cost O(prefix lengths present) and O(log n) — not O(nodes); a whole mesh's
// addresses are added in one batch (one sort), not one sorted insert each (O(n²) moves).
import { cidrLast, prefixMask, type Cidr } from '../../protocol/cidr.ts';
import { compareBigint } from '../../lib/compare.ts';
import { lowerBound } from '../../lib/sorted-array.ts';

export interface Address {
  readonly family: 4 | 6;
  readonly value: bigint;
}


export class MeshRanges {
  /** family → prefix length → network → how many CIDRs of the mesh are exactly it. */
  private readonly cidrs = new Map<4 | 6, Map<number, Map<bigint, number>>>();
  /** family → underlay addresses, sorted, one entry per occurrence. */
  private readonly addresses = new Map<4 | 6, bigint[]>();

  addCidr(c: Cidr): void {
    let byPrefix = this.cidrs.get(c.family);
    if (!byPrefix) this.cidrs.set(c.family, (byPrefix = new Map<number, Map<bigint, number>>()));
    let nets = byPrefix.get(c.prefix);
    if (!nets) byPrefix.set(c.prefix, (nets = new Map<bigint, number>()));
    nets.set(c.network, (nets.get(c.network) ?? 0) + 1);
  }

  removeCidr(c: Cidr): void {
    const nets = this.cidrs.get(c.family)?.get(c.prefix);
    const n = nets?.get(c.network);
    if (nets === undefined || n === undefined) return;
    if (n > 1) nets.set(c.network, n - 1);
    else nets.delete(c.network);
  }

  /** How many CIDRs of the mesh are exactly `c`. */
  cidrCount(c: Cidr): number {
    return this.cidrs.get(c.family)?.get(c.prefix)?.get(c.network) ?? 0;
  }

  /** Some CIDR of the mesh contains `a`. */
  hasCidrContaining(a: Address): boolean {
    const byPrefix = this.cidrs.get(a.family);
    if (!byPrefix) return false;
    for (const [prefix, nets] of byPrefix) if ((nets.get(a.value & prefixMask(a.family, prefix)) ?? 0) > 0) return true;
    return false;
  }

  addAddress(a: Address): void {
    const list = this.listOf(a.family);
    list.splice(lowerBound(list, a.value, compareBigint), 0, a.value);
  }

  /** Adds many addresses at once: appended, then each family's list sorted once. */
  addAddresses(batch: Iterable<Address>): void {
    const touched = new Set<bigint[]>();
    for (const a of batch) {
      const list = this.listOf(a.family);
      list.push(a.value);
      touched.add(list);
    }
    for (const list of touched) list.sort(compareBigint);
  }

  private listOf(family: 4 | 6): bigint[] {
    let list = this.addresses.get(family);
    if (!list) this.addresses.set(family, (list = []));
    return list;
  }

  removeAddress(a: Address): void {
    const list = this.addresses.get(a.family);
    if (!list) return;
    const i = lowerBound(list, a.value, compareBigint);
    if (list[i] === a.value) list.splice(i, 1);
  }

  /** Some underlay address lies inside `c`. */
  hasAddressInside(c: Cidr): boolean {
    const list = this.addresses.get(c.family);
    if (!list) return false;
    const v = list[lowerBound(list, c.network, compareBigint)];
    return v !== undefined && v <= cidrLast(c);
  }
}
