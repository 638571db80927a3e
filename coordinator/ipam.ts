// Overlay IP allocation, pure (the index is plain data the caller keeps in step). The allocation table lives in the bucket (`ipam.<name>`) and outlives
// node expiry, so a returning node gets its old address and generations stay monotonic.
import * as z from 'zod';
import { cidrContainsIp, cidrLast, formatIp, parseIp, type Cidr } from '../protocol/cidr.ts';
import { Key32 } from '../protocol/messages.ts';
import { compareText } from '../lib/compare.ts';

export const IpamEntry = z
  .object({
    v: z.literal(1),
    ip: z.string().refine((s) => parseIp(s) !== undefined, 'must be an IP address'),
    /** Identity key of the node that last held the name (informational after expiry: a new identity may take the name). */
    identityKey: Key32,
    /** Highest NodeRecord generation written for this name while it was live; the next record gets more. */
    generation: z.number().int().nonnegative(),
    updatedAt: z.number().int().nonnegative(),
    /** When the node record went away (expiry or deregistration); absent while the node is live. */
    releasedAt: z.number().int().nonnegative().optional(),
  })
  .strict();
export type IpamEntry = z.infer<typeof IpamEntry>;

export type IpamDecision =
  /** The name already holds a usable address. */
  | { readonly kind: 'keep'; readonly ip: string }
  /** The lowest free address. */
  | { readonly kind: 'fresh'; readonly ip: string }
  /** The pool is full: take the address of the name that went away the longest ago. */
  | { readonly kind: 'reclaim'; readonly ip: string; readonly from: string }
  | { readonly kind: 'exhausted'; readonly message: string };

export interface AllocationInput {
  readonly pool: Cidr;
  readonly name: string;
  readonly entries: ReadonlyMap<string, IpamEntry>;
  /** Names with a live node record; their addresses are never reclaimed. */
  readonly live: ReadonlySet<string>;
  /** Addresses in use that may lack an ipam entry (live records written before a crash). */
  readonly alsoUsed?: Iterable<string>;
}

/** First and last assignable address: IPv4 skips network and broadcast, IPv6 the subnet-router anycast address. */
export function usableRange(pool: Cidr): { first: bigint; last: bigint } {
  const last = cidrLast(pool);
  if (pool.family === 4) {
    if (pool.prefix >= 31) return { first: pool.network, last };
    return { first: pool.network + 1n, last: last - 1n };
  }
  if (pool.prefix >= 127) return { first: pool.network, last };
  return { first: pool.network + 1n, last };
}

function usableValue(pool: Cidr, ipText: string): bigint | undefined {
  const ip = parseIp(ipText);
  if (!ip || !cidrContainsIp(pool, ip.family, ip.value)) return undefined;
  const { first, last } = usableRange(pool);
  return ip.value >= first && ip.value <= last ? ip.value : undefined;
}

/**
 * Who holds which address of one pool (ipam entries and live records alike), and the lowest free
 * address. The registry keeps it up to date where its tables change, so an allocation looks up
 * single addresses instead of copying, parsing and sorting the whole table: a registration storm
 * costs amortised O(1) per address, not O(N).
 */
export class AddressIndex {
  /** Address → the names holding it, with how many holds each (its ipam entry and/or its live record). */
  private readonly holders = new Map<bigint, Map<string, number>>();
  private readonly first: bigint;
  private readonly last: bigint;
  /** Every usable address below it is held (by someone): the search for a free one starts here. */
  private cursor: bigint;

  constructor(readonly pool: Cidr) {
    const { first, last } = usableRange(pool);
    this.first = first;
    this.last = last;
    this.cursor = first;
  }

  /** The address as a number if it is usable in this pool, else undefined. */
  usable(ipText: string): bigint | undefined {
    return usableValue(this.pool, ipText);
  }

  /** `name` holds `ipText` once more (addresses outside the pool are ignored). */
  hold(ipText: string, name: string): void {
    const v = this.usable(ipText);
    if (v === undefined) return;
    let names = this.holders.get(v);
    if (!names) this.holders.set(v, (names = new Map<string, number>()));
    names.set(name, (names.get(name) ?? 0) + 1);
  }

  /** Undoes one `hold(ipText, name)`. */
  release(ipText: string, name: string): void {
    const v = this.usable(ipText);
    if (v === undefined) return;
    const names = this.holders.get(v);
    const count = names?.get(name);
    if (!names || count === undefined) return;
    if (count > 1) names.set(name, count - 1);
    else names.delete(name);
    if (names.size > 0) return;
    this.holders.delete(v);
    if (v < this.cursor) this.cursor = v;
  }

  /** Whether a name other than `name` holds address `v`. */
  isUsedByOther(v: bigint, name: string): boolean {
    const names = this.holders.get(v);
    return names !== undefined && names.size > (names.has(name) ? 1 : 0);
  }

  /** The lowest usable address no name but `except` holds, or undefined when the pool is full. */
  lowestFree(except: string): bigint | undefined {
    // Addresses only `except` holds count as free for it (as in a scan that leaves its own entries
    // out), but they are held, so the cursor may pass them for everyone else.
    for (let v = this.cursor; v <= this.last; v++) {
      const names = this.holders.get(v);
      if (!names) return v;
      if (names.size === 1 && names.has(except)) return v;
      if (v === this.cursor) this.cursor = v + 1n;
    }
    return undefined;
  }

  /** Number of usable addresses in the pool. */
  get size(): bigint {
    return this.last - this.first + 1n;
  }
}

export interface AllocationLookup {
  readonly name: string;
  /** The name's own ipam entry, if any. */
  readonly own: IpamEntry | undefined;
  readonly addresses: AddressIndex;
  /** Ipam entries of names without a live record: read only when the pool is full (reclaim). */
  readonly released: () => Iterable<readonly [string, IpamEntry]>;
}

/** The allocation decision from indexes: O(1) lookups (amortised) unless the pool is full. */
export function decideOverlayIp(input: AllocationLookup): IpamDecision {
  const { name, own, addresses } = input;
  const pool = addresses.pool;
  if (own) {
    const v = addresses.usable(own.ip);
    // Keep the address unless the pool changed under it or (after a repair) someone else holds it.
    if (v !== undefined && !addresses.isUsedByOther(v, name)) return { kind: 'keep', ip: formatIp(pool.family, v) };
  }
  const free = addresses.lowestFree(name);
  if (free !== undefined) return { kind: 'fresh', ip: formatIp(pool.family, free) };

  const reclaimable = [...input.released()]
    .filter(([n, e]) => n !== name && addresses.usable(e.ip) !== undefined)
    .sort(([an, a], [bn, b]) => (a.releasedAt ?? a.updatedAt) - (b.releasedAt ?? b.updatedAt) || compareText(an, bn));
  const oldest = reclaimable[0];
  if (oldest) {
    const v = addresses.usable(oldest[1].ip) ?? usableRange(pool).first;
    return { kind: 'reclaim', ip: formatIp(pool.family, v), from: oldest[0] };
  }
  return {
    kind: 'exhausted',
    message: `overlay range ${pool.text} is full: all ${addresses.size} addresses belong to live nodes; use a larger --overlay-cidr`,
  };
}

/** Marks the holder of an `alsoUsed` address (a live record without an ipam entry, name unknown). */
const UNNAMED_LIVE_RECORD = '\u0000(live record)';

/** The allocation decision from a whole table (builds the index first: O(N); for one-off callers and tests). */
export function allocateOverlayIp(input: AllocationInput): IpamDecision {
  const { pool, name, entries, live } = input;
  const addresses = new AddressIndex(pool);
  for (const [n, e] of entries) addresses.hold(e.ip, n);
  for (const ip of input.alsoUsed ?? []) addresses.hold(ip, UNNAMED_LIVE_RECORD);
  return decideOverlayIp({
    name,
    own: entries.get(name),
    addresses,
    released: () => [...entries].filter(([n]) => !live.has(n)),
  });
}
