// The registry's tables with the indexes a registration needs, kept in step on every set/delete:
// WireGuard key → names, pod CIDRs by prefix length → names, cluster → names, and who holds which
// overlay address. A new registration then looks at the few nodes it could conflict with instead
// of every live node, so it costs about the same at 100 nodes as at 10 000.
import { cidrLast, parseCidr, prefixMask, type Cidr } from '../protocol/cidr.ts';
import type { NodeRecord, RegistrationRequest } from '../protocol/messages.ts';
import { NameIndex } from '../lib/name-index.ts';
import type { AddressIndex, IpamEntry } from './ipam.ts';
import type { StoredIpam, StoredRecord } from './store.ts';
import { compareBigint } from '../lib/compare.ts';
import { lowerBound } from '../lib/sorted-array.ts';

/** Networks of one family and prefix length: by network for exact lookups, sorted for ranges. */
interface PrefixBucket {
  readonly byNetwork: NameIndex<bigint>;
  /** The keys of byNetwork, ascending. */
  readonly sorted: bigint[];
}

/**
 * Pod CIDRs → the names that hold them. Two CIDRs overlap iff the shorter one contains the other:
 * a held CIDR as broad as the query or broader is found by masking the query to its length; a
 * narrower one lies in the query's range, found by binary search. Cost: one lookup per prefix
 * length in use (a handful), not one comparison per node.
 */
export class PodCidrIndex {
  private readonly buckets = new Map<string, PrefixBucket>();
  /** Prefix lengths in use per family. */
  private readonly lengths = new Map<4 | 6, Set<number>>([
    [4, new Set()],
    [6, new Set()],
  ]);

  add(cidr: Cidr, name: string): void {
    const id = `${cidr.family}/${cidr.prefix}`;
    let bucket = this.buckets.get(id);
    if (!bucket) {
      bucket = { byNetwork: new NameIndex(), sorted: [] };
      this.buckets.set(id, bucket);
      this.lengths.get(cidr.family)?.add(cidr.prefix);
    }
    if (bucket.byNetwork.add(cidr.network, name)) bucket.sorted.splice(lowerBound(bucket.sorted, cidr.network, compareBigint), 0, cidr.network);
  }

  remove(cidr: Cidr, name: string): void {
    const id = `${cidr.family}/${cidr.prefix}`;
    const bucket = this.buckets.get(id);
    if (!bucket?.byNetwork.delete(cidr.network, name)) return;
    bucket.sorted.splice(lowerBound(bucket.sorted, cidr.network, compareBigint), 1);
    if (bucket.sorted.length > 0) return;
    this.buckets.delete(id);
    this.lengths.get(cidr.family)?.delete(cidr.prefix);
  }

  /** Names holding a CIDR that overlaps `c`. */
  overlapping(c: Cidr): Set<string> {
    const out = new Set<string>();
    for (const prefix of this.lengths.get(c.family) ?? []) {
      const bucket = this.buckets.get(`${c.family}/${prefix}`);
      if (!bucket) continue;
      if (prefix <= c.prefix) {
        for (const n of bucket.byNetwork.names(c.network & prefixMask(c.family, prefix))) out.add(n);
        continue;
      }
      const last = cidrLast(c);
      for (let i = lowerBound(bucket.sorted, c.network, compareBigint); i < bucket.sorted.length; i++) {
        const network = bucket.sorted[i];
        if (network === undefined || network > last) break;
        for (const n of bucket.byNetwork.names(network)) out.add(n);
      }
    }
    return out;
  }
}

function addTo(index: Map<string, Set<string>>, key: string, name: string): void {
  let names = index.get(key);
  if (!names) index.set(key, (names = new Set()));
  names.add(name);
}

function removeFrom(index: Map<string, Set<string>>, key: string, name: string): void {
  const names = index.get(key);
  if (names?.delete(name) && names.size === 0) index.delete(key);
}

/** Pod CIDRs of a record as parsed CIDRs (unparseable text is left out, as the validator does). */
function podCidrsOf(record: NodeRecord): Cidr[] {
  return record.podCidrs.flatMap((text) => parseCidr(text) ?? []);
}

/** Live node records by name (a Map's interface), with the indexes above kept in step. */
export class NodeTable implements Iterable<[string, StoredRecord<NodeRecord>]> {
  private readonly byName = new Map<string, StoredRecord<NodeRecord>>();
  /** Nearly always one name per key: a NameIndex, not a Set per key (~2 MiB at 10,000 nodes). */
  private readonly byPublicKey = new NameIndex<string>();
  private readonly byCluster = new Map<string, Set<string>>();
  private readonly pods = new PodCidrIndex();

  /** `addresses`: shared with the ipam table; a live record holds its overlay address. */
  constructor(private readonly addresses: AddressIndex) {}

  get size(): number {
    return this.byName.size;
  }

  get(name: string): StoredRecord<NodeRecord> | undefined {
    return this.byName.get(name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  keys(): MapIterator<string> {
    return this.byName.keys();
  }

  values(): MapIterator<StoredRecord<NodeRecord>> {
    return this.byName.values();
  }

  [Symbol.iterator](): MapIterator<[string, StoredRecord<NodeRecord>]> {
    return this.byName[Symbol.iterator]();
  }

  set(name: string, stored: StoredRecord<NodeRecord>): this {
    this.unindex(name);
    this.byName.set(name, stored);
    const r = stored.value;
    this.byPublicKey.add(r.publicKey, name);
    addTo(this.byCluster, r.cluster, name);
    for (const c of podCidrsOf(r)) this.pods.add(c, name);
    this.addresses.hold(r.overlayIp, name);
    return this;
  }

  delete(name: string): boolean {
    this.unindex(name);
    return this.byName.delete(name);
  }

  /** How many live members a cluster has (the node limit's count: an index lookup, no scan). */
  memberCount(cluster: string): number {
    return this.byCluster.get(cluster)?.size ?? 0;
  }

  /** Records of one cluster's live members. */
  members(cluster: string): NodeRecord[] {
    // A plain loop: this runs on every registration, over every member of the cluster (spread plus
    // flatMap allocated two arrays and one per member).
    const out: NodeRecord[] = [];
    for (const n of this.byCluster.get(cluster) ?? []) {
      const rec = this.byName.get(n);
      if (rec) out.push(rec.value);
    }
    return out;
  }

  /**
   * The live records a registration could conflict with: the name's own record (identity binding),
   * nodes with the same WireGuard key, nodes whose pod CIDRs overlap the request's. Validating
   * against these finds exactly what validating against every live node would.
   */
  candidatesFor(req: Pick<RegistrationRequest, 'name' | 'publicKey' | 'podCidrs'>): NodeRecord[] {
    const names = new Set(this.byPublicKey.names(req.publicKey));
    for (const text of req.podCidrs) {
      const c = parseCidr(text);
      if (c) for (const n of this.pods.overlapping(c)) names.add(n);
    }
    names.delete(req.name);
    const own = this.byName.get(req.name)?.value;
    // Sorted, so a rejection names the same node whatever the insertion order.
    const others = [...names].sort().flatMap((n) => this.byName.get(n)?.value ?? []);
    return own ? [own, ...others] : others;
  }

  private unindex(name: string): void {
    const old = this.byName.get(name)?.value;
    if (!old) return;
    this.byPublicKey.delete(old.publicKey, name);
    removeFrom(this.byCluster, old.cluster, name);
    for (const c of podCidrsOf(old)) this.pods.remove(c, name);
    this.addresses.release(old.overlayIp, name);
  }
}

/** The ipam table by name (a Map's interface); every entry holds its address in the shared index. */
export class IpamTable implements Iterable<[string, StoredIpam]> {
  private readonly byName = new Map<string, StoredIpam>();

  constructor(private readonly addresses: AddressIndex) {}

  get size(): number {
    return this.byName.size;
  }

  get(name: string): StoredIpam | undefined {
    return this.byName.get(name);
  }

  [Symbol.iterator](): MapIterator<[string, StoredIpam]> {
    return this.byName[Symbol.iterator]();
  }

  set(name: string, stored: StoredIpam): this {
    this.delete(name);
    this.byName.set(name, stored);
    this.addresses.hold(stored.value.ip, name);
    return this;
  }

  delete(name: string): boolean {
    const old = this.byName.get(name);
    if (!old) return false;
    this.addresses.release(old.value.ip, name);
    return this.byName.delete(name);
  }

  clear(): void {
    for (const name of [...this.byName.keys()]) this.delete(name);
  }

  /** Entries of names `isLive` says are gone (reclaim candidates when the pool is full). */
  *released(isLive: (name: string) => boolean): Generator<readonly [string, IpamEntry]> {
    for (const [name, stored] of this.byName) if (!isLive(name)) yield [name, stored.value];
  }
}
