// Parses `wg show <if> dump` into typed live state. The first line carries the interface's private
// key: it is dropped here, never stored or logged; callers compare public keys instead.
import { parseEndpoint, formatEndpoint, canonicalCidr } from '../../protocol/cidr.ts';
import { CrosslinkError } from '../../lib/errors.ts';

export interface LiveInterface {
  /** null when no private key is set ("(none)"). */
  readonly publicKey: string | null;
  /** 0 when unset. */
  readonly listenPort: number;
  /** 0 when "off". */
  readonly fwmark: number;
}

export interface LivePeer {
  readonly publicKey: string;
  /** Endpoint configured or learned from the peer's handshakes (canonical "ip:port" / "[v6]:port"); null if none. */
  readonly endpoint: string | null;
  /** Canonical CIDRs in the order wg printed them. */
  readonly allowedIps: readonly string[];
  /** Unix ms of the latest handshake, null if there never was one. */
  readonly latestHandshakeAt: number | null;
  readonly rxBytes: number;
  readonly txBytes: number;
  /** Seconds, 0 = off. */
  readonly persistentKeepalive: number;
  readonly hasPresharedKey: boolean;
}

export interface LiveWireguard {
  readonly interface: LiveInterface;
  readonly peers: readonly LivePeer[];
}

export class WgDumpParseError extends CrosslinkError {
  override name = 'WgDumpParseError';
}

const NONE = '(none)';

/** Canonical endpoint text so "[2001:db8:0::1]:51820" and "[2001:db8::1]:51820" compare equal. */
export function canonicalEndpoint(text: string): string {
  const e = parseEndpoint(text);
  return e ? formatEndpoint(e.host, e.port) : text;
}

function int(text: string | undefined, field: string, line: number): number {
  if (text === undefined || !/^[0-9]+$/.test(text)) {
    throw new WgDumpParseError(`wg dump line ${line}: ${field} is ${JSON.stringify(text)}, expected a non-negative integer`);
  }
  return Number(text);
}

function intOrOff(text: string | undefined, field: string, line: number): number {
  return text === 'off' ? 0 : int(text, field, line);
}

export function parseWgDump(stdout: string): LiveWireguard {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  const head = lines[0];
  if (head === undefined) throw new WgDumpParseError('wg dump is empty');
  const h = head.split('\t');
  if (h.length !== 4) throw new WgDumpParseError(`wg dump line 1: expected 4 tab-separated fields, got ${h.length}`);
  const iface: LiveInterface = {
    publicKey: h[1] === NONE || h[1] === undefined ? null : h[1],
    listenPort: int(h[2], 'listen-port', 1),
    fwmark: intOrOff(h[3], 'fwmark', 1),
  };
  const peers: LivePeer[] = [];
  for (let i = 1; i < lines.length; i++) {
    const f = (lines[i] ?? '').split('\t');
    const n = i + 1;
    if (f.length !== 8) throw new WgDumpParseError(`wg dump line ${n}: expected 8 tab-separated fields, got ${f.length}`);
    const [publicKey, psk, endpoint, allowed, handshake, rx, tx, keepalive] = f;
    if (!publicKey) throw new WgDumpParseError(`wg dump line ${n}: empty public key`);
    const handshakeSec = int(handshake, 'latest-handshake', n);
    peers.push({
      publicKey,
      endpoint: endpoint === NONE || !endpoint ? null : canonicalEndpoint(endpoint),
      allowedIps: allowed === NONE || !allowed ? [] : allowed.split(',').map((c) => canonicalCidr(c) ?? c),
      latestHandshakeAt: handshakeSec === 0 ? null : handshakeSec * 1000,
      rxBytes: int(rx, 'transfer-rx', n),
      txBytes: int(tx, 'transfer-tx', n),
      persistentKeepalive: intOrOff(keepalive, 'persistent-keepalive', n),
      hasPresharedKey: psk !== NONE,
    });
  }
  return { interface: iface, peers };
}
