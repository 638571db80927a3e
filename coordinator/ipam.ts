// Overlay IP allocation, pure. The allocation table lives in the bucket (`ipam.<name>`) and outlives
// node expiry, so a returning node gets its old address and generations stay monotonic.
import { z } from 'zod';
import { cidrContainsIp, cidrLast, formatIp, parseIp, type Cidr } from '../protocol/cidr.ts';
import { Key32 } from '../protocol/messages.ts';

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

export function allocateOverlayIp(input: AllocationInput): IpamDecision {
  const { pool, name, entries, live } = input;
  const own = entries.get(name);
  const used = new Map<bigint, string>();
  for (const [n, e] of entries) {
    if (n === name) continue;
    const v = usableValue(pool, e.ip);
    if (v !== undefined) used.set(v, n);
  }
  for (const ip of input.alsoUsed ?? []) {
    const v = usableValue(pool, ip);
    if (v !== undefined && !used.has(v)) used.set(v, '(live record)');
  }

  if (own) {
    const v = usableValue(pool, own.ip);
    // Keep the address unless the pool changed under it or (after a repair) someone else holds it.
    if (v !== undefined && !used.has(v)) return { kind: 'keep', ip: formatIp(pool.family, v) };
  }

  const { first, last } = usableRange(pool);
  const taken = [...used.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  let candidate = first;
  for (const t of taken) {
    if (t > candidate) break;
    if (t === candidate) candidate++;
  }
  if (candidate <= last) return { kind: 'fresh', ip: formatIp(pool.family, candidate) };

  const reclaimable = [...entries]
    .filter(([n, e]) => n !== name && !live.has(n) && usableValue(pool, e.ip) !== undefined)
    .sort(([an, a], [bn, b]) => (a.releasedAt ?? a.updatedAt) - (b.releasedAt ?? b.updatedAt) || (an < bn ? -1 : an > bn ? 1 : 0));
  const oldest = reclaimable[0];
  if (oldest) {
    const v = usableValue(pool, oldest[1].ip) ?? first;
    return { kind: 'reclaim', ip: formatIp(pool.family, v), from: oldest[0] };
  }
  const size = last - first + 1n;
  return {
    kind: 'exhausted',
    message: `overlay range ${pool.text} is full: all ${size} addresses belong to live nodes; use a larger --overlay-cidr`,
  };
}
