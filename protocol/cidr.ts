// IPv4/IPv6 address and CIDR arithmetic on bigints. Pure; used by validation, IPAM and topology.

export interface Cidr {
  readonly family: 4 | 6;
  /** Network address (host bits cleared). */
  readonly network: bigint;
  readonly prefix: number;
  /** Canonical text, e.g. "10.1.0.0/24". */
  readonly text: string;
}

const V4_BITS = 32;
const V6_BITS = 128;

export function parseIp(text: string): { family: 4 | 6; value: bigint } | undefined {
  if (text.includes(':')) {
    const v = parseIpv6(text);
    return v === undefined ? undefined : { family: 6, value: v };
  }
  const v = ipv4Number(text);
  return v === undefined ? undefined : { family: 4, value: BigInt(v) };
}

/** A strict dotted quad as an unsigned 32-bit number (no bigint: the route guard's IPv4 path is all numbers). */
export function ipv4Number(text: string): number | undefined {
  // Dotted quad of decimal octets without leading zeros ("0" alone is fine). A character loop, not
  // split + regex: route tables and desired states parse thousands of addresses per reconcile.
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || dots === 3) return undefined;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots++;
      continue;
    }
    if (c < 48 || c > 57) return undefined;
    if (digits > 0 && part === 0) return undefined; // a leading zero
    part = part * 10 + (c - 48);
    digits++;
    if (part > 255) return undefined;
  }
  if (digits === 0 || dots !== 3) return undefined;
  return value * 256 + part;
}

function parseIpv6(text: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parseGroups = (s: string): number[] | undefined => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parseGroups(halves[0] ?? '');
  const tail = halves.length === 2 ? parseGroups(halves[1] ?? '') : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(g);
  return v;
}

export function formatIp(family: 4 | 6, value: bigint): string {
  if (family === 4) {
    const n = Number(value & 0xffffffffn);
    return `${Math.floor(n / 16777216)}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  }
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((value >> BigInt(i * 16)) & 0xffffn).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLen).join(':')}`;
}

export function bitsOf(family: 4 | 6): number {
  return family === 4 ? V4_BITS : V6_BITS;
}

/** Masks per family and prefix length, computed once (parseCidr runs thousands of times per desired state). */
const MASKS: Record<4 | 6, bigint[]> = { 4: [], 6: [] };

/** Prefix-length text: "0" or 1–3 digits without a leading zero (a character loop: parseCidr is hot). */
function parsePrefix(text: string): number | undefined {
  const n = text.length;
  if (n === 0 || n > 3 || (n > 1 && text.charCodeAt(0) === 48)) return undefined;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return undefined;
    v = v * 10 + (c - 48);
  }
  return v;
}

/** Parses "a.b.c.d/n" or "x::/n"; a bare address is a host route (/32 or /128). Host bits must be zero unless `allowHostBits`. */
export function parseCidr(text: string, options: { allowHostBits?: boolean } = {}): Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash >= 0 && text.indexOf('/', slash + 1) >= 0) return undefined;
  const addr = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIp(addr);
  if (!ip) return undefined;
  const bits = bitsOf(ip.family);
  let prefix = bits;
  if (slash >= 0) {
    const p = parsePrefix(text.slice(slash + 1));
    if (p === undefined || p > bits) return undefined;
    prefix = p;
  }
  const network = ip.value & prefixMask(ip.family, prefix);
  if (network !== ip.value && !options.allowHostBits) return undefined;
  // IPv4 input parsed strictly (no leading zeros) and without host bits is already canonical text.
  const canonical = ip.family === 4 && network === ip.value ? (slash >= 0 ? text : `${text}/32`) : `${formatIp(ip.family, network)}/${prefix}`;
  return { family: ip.family, network, prefix, text: canonical };
}

/** An IPv4 range as plain numbers: network (host bits cleared, unsigned 32-bit) and prefix length. */
export interface Ipv4Range {
  readonly network: number;
  readonly prefix: number;
}

/** `ip` with the host bits of a /`prefix` cleared, unsigned. */
export function ipv4Network(ip: number, prefix: number): number {
  return prefix === 0 ? 0 : (ip & (0xffffffff << (32 - prefix))) >>> 0;
}

/**
 * "a.b.c.d/n" (a bare address is a /32) as numbers, host bits cleared: exactly the IPv4 inputs that
 * parseCidr(text, { allowHostBits: true }) accepts, undefined for everything else (IPv6 included).
 * No bigint and no text: the route guard asks about every peer CIDR of every desired state.
 */
export function parseIpv4Range(text: string): Ipv4Range | undefined {
  const slash = text.indexOf('/');
  if (slash >= 0 && text.indexOf('/', slash + 1) >= 0) return undefined;
  const ip = ipv4Number(slash < 0 ? text : text.slice(0, slash));
  if (ip === undefined) return undefined;
  let prefix = V4_BITS;
  if (slash >= 0) {
    const p = parsePrefix(text.slice(slash + 1));
    if (p === undefined || p > V4_BITS) return undefined;
    prefix = p;
  }
  return { network: ipv4Network(ip, prefix), prefix };
}

export function prefixMask(family: 4 | 6, prefix: number): bigint {
  const cached = MASKS[family][prefix];
  if (cached !== undefined) return cached;
  const bits = BigInt(bitsOf(family));
  const all = (1n << bits) - 1n;
  const mask = (all << (bits - BigInt(prefix))) & all;
  if (Number.isInteger(prefix) && prefix >= 0 && prefix <= Number(bits)) MASKS[family][prefix] = mask;
  return mask;
}

export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(bitsOf(c.family) - c.prefix);
}

export function cidrLast(c: Cidr): bigint {
  return c.network + cidrSize(c) - 1n;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  return a.network <= cidrLast(b) && b.network <= cidrLast(a);
}

export function cidrContainsIp(c: Cidr, family: 4 | 6, ip: bigint): boolean {
  return c.family === family && ip >= c.network && ip <= cidrLast(c);
}

/** Canonical host route text for an address: "10.0.0.1/32" or "fd00::1/128". */
export function hostCidr(ipText: string): string {
  const ip = parseIp(ipText);
  if (!ip) throw new Error(`not an IP address: ${ipText}`);
  // IPv4 parsed strictly (no leading zeros) is already canonical.
  return ip.family === 4 ? `${ipText}/32` : `${formatIp(ip.family, ip.value)}/${bitsOf(ip.family)}`;
}

/** Normalises a CIDR's text (e.g. "fd00:0::/64" → "fd00::/64"); returns undefined if invalid. */
export function canonicalCidr(text: string): string | undefined {
  return parseCidr(text)?.text;
}

/** Parses "host:port" or "[v6]:port". Host must be an IP literal (names are resolved elsewhere, never here). */
export function parseEndpoint(text: string): { host: string; family: 4 | 6; port: number } | undefined {
  if (text.startsWith('[')) {
    const m = /^\[([0-9a-fA-F:.]+)\]:([0-9]{1,5})$/.exec(text);
    if (!m || m[1] === undefined || m[2] === undefined) return undefined;
    const ip = parseIp(m[1]);
    const port = Number(m[2]);
    if (!ip || port < 1 || port > 65535) return undefined;
    return { host: formatIp(ip.family, ip.value), family: ip.family, port };
  }
  // "a.b.c.d:port" without a regex (the route guard parses every node's endpoints per desired state).
  const colon = text.indexOf(':');
  if (colon < 0 || text.indexOf(':', colon + 1) >= 0) return undefined;
  const host = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  if (portText.length < 1 || portText.length > 5) return undefined;
  let port = 0;
  for (let i = 0; i < portText.length; i++) {
    const c = portText.charCodeAt(i);
    if (c < 48 || c > 57) return undefined;
    port = port * 10 + (c - 48);
  }
  // The strict dotted quad (no leading zeros) is its own canonical text.
  if (port < 1 || port > 65535 || ipv4Number(host) === undefined) return undefined;
  return { host, family: 4, port };
}

export function formatEndpoint(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
