// Encryption check: capture on the internet segment (tcpdump on the inet bridge), then prove that no
// packet there carries a pod/overlay address in its IP header, and that WireGuard UDP was seen.
import { cidrContainsIp, parseCidr, type Cidr } from '../protocol/cidr.ts';
import { Child } from '../lib/child-process.ts';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';
import type { Runner } from '../lib/runner.ts';

export interface Capture {
  readonly file: string;
  /** SIGTERM tcpdump and wait for it to flush and exit. */
  stop(): Promise<void>;
}

/** Starts tcpdump in `ns` on `iface` writing `file`; resolves once it is listening. */
export async function startCapture(ns: string, iface: string, file: string, timeoutMs = 10_000): Promise<Capture> {
  // -s 128: IP + UDP headers and the WireGuard message header are all we look at.
  const child = Child.start(['ip', 'netns', 'exec', ns, 'tcpdump', '-i', iface, '-n', '-U', '-s', '128', '-w', file]);
  const stop = async (): Promise<void> => {
    await child.stop({ graceMs: 5000 });
  };
  try {
    await child.waitForLine('listening on', { timeoutMs });
  } catch (err) {
    await stop();
    throw new CrosslinkError(`tcpdump did not start listening: ${errorMessage(err)}`, { cause: err });
  }
  return { file, stop };
}

export interface CapturedPacket {
  readonly src: string;
  readonly dst: string;
  readonly protocol: number;
  /** IP total length (the header field: the whole packet even when the capture was truncated). */
  readonly length: number;
  /** Decoded from the bytes: a UDP datagram whose payload starts with a WireGuard message header. */
  readonly wireguard: boolean;
  readonly summary: string;
}

export interface CaptureAnalysis {
  readonly packets: number;
  readonly ipv4: number;
  readonly wireguard: number;
  /** Largest WireGuard packet (IP total length): ~MTU + 60 when full-size inner packets crossed. */
  readonly largestWireguard: number;
  /** Packets whose IP source or destination lies in a forbidden (pod/overlay) range. */
  readonly leaks: readonly CapturedPacket[];
}

/** Reads a pcap with `tcpdump -r -n -x` (IP header and payload bytes in hex). */
export async function readCapture(runner: Runner, file: string): Promise<string> {
  const r = await runner.run(['tcpdump', '-r', file, '-n', '-x'], { timeoutMs: 60_000 });
  return r.stdout;
}

/** Pure: splits `tcpdump -n -x` output into packets, decodes IPv4 headers from the bytes. */
export function parseTcpdump(text: string): { packets: number; ipv4: CapturedPacket[] } {
  const out: CapturedPacket[] = [];
  let packets = 0;
  let summary = '';
  let hex: string[] = [];
  const flush = (): void => {
    if (summary === '') return;
    packets++;
    const bytes = hex.join('').match(/../g)?.map((h) => parseInt(h, 16)) ?? [];
    const p = decodeIpv4(bytes, summary);
    if (p) out.push(p);
  };
  for (const line of text.split('\n')) {
    const m = /^\s+0x[0-9a-f]+:\s+(.*)$/.exec(line);
    if (m?.[1] !== undefined) {
      hex.push(m[1].replace(/\s+/g, ''));
      continue;
    }
    if (line.trim() === '') continue;
    flush();
    summary = line;
    hex = [];
  }
  flush();
  return { packets, ipv4: out };
}

function decodeIpv4(b: readonly number[], summary: string): CapturedPacket | undefined {
  const v = b[0];
  if (v === undefined || v >> 4 !== 4 || b.length < 20) return undefined;
  const ihl = (v & 0x0f) * 4;
  const ip = (o: number): string => b.slice(o, o + 4).join('.');
  const protocol = b[9] ?? 0;
  const fragOffset = (((b[6] ?? 0) & 0x1f) << 8) | (b[7] ?? 0);
  const payload = ihl + 8;
  // WireGuard messages: type 1-4 followed by three reserved zero bytes.
  const wireguard =
    protocol === 17 && fragOffset === 0 && b.length >= payload + 4 && (b[payload] ?? 0) >= 1 && (b[payload] ?? 0) <= 4 && b[payload + 1] === 0 && b[payload + 2] === 0 && b[payload + 3] === 0;
  return { src: ip(12), dst: ip(16), protocol, length: ((b[2] ?? 0) << 8) | (b[3] ?? 0), wireguard, summary };
}

export function analyzeCapture(text: string, forbidden: readonly string[]): CaptureAnalysis {
  const ranges: Cidr[] = forbidden.map((f) => {
    const c = parseCidr(f);
    if (!c) throw new CrosslinkError(`not a CIDR: ${f}`);
    return c;
  });
  const inRange = (addr: string): boolean => {
    const c = parseCidr(addr);
    return c !== undefined && ranges.some((r) => cidrContainsIp(r, 4, c.network));
  };
  const { packets, ipv4 } = parseTcpdump(text);
  const wg = ipv4.filter((p) => p.wireguard);
  return {
    packets,
    ipv4: ipv4.length,
    wireguard: wg.length,
    largestWireguard: Math.max(0, ...wg.map((p) => p.length)),
    leaks: ipv4.filter((p) => inRange(p.src) || inRange(p.dst)),
  };
}

/** The verdict: encrypted iff WireGuard was seen and nothing carried a pod/overlay address in the clear. */
export function encryptionVerdict(a: CaptureAnalysis): { ok: boolean; reason: string } {
  if (a.leaks.length > 0) {
    return { ok: false, reason: `${a.leaks.length} packet(s) carry a pod/overlay address in the clear, e.g. ${a.leaks[0]?.summary ?? ''}` };
  }
  if (a.wireguard === 0) return { ok: false, reason: `no WireGuard packets among ${a.ipv4} IPv4 packets` };
  return { ok: true, reason: `${a.wireguard} WireGuard packets, no pod/overlay address among ${a.ipv4} IPv4 packets` };
}
