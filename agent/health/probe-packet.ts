// The peer probe wire format: a small UDP datagram sent from this node's overlay IP to a peer's
// overlay IP (so it travels through the tunnel like pod traffic) on PROBE_PORT, answered by the
// peer's agent with a reply of the same header. 24 bytes; a request may be padded (path-MTU probe),
// the reply never is and says how many bytes arrived.
//
//   0  'XLPR'  magic
//   4  u8      version (1)
//   5  u8      type: 1 request, 2 reply
//   6  u16     reply: bytes of the request as received (0 in a request)
//   8  u32     session: random per sender process, echoed (a reply to someone else is ignored)
//  12  u32     sequence number, echoed
//  16  f64     sender's send time (ms), echoed: RTT needs no state on the responder
import { CrosslinkError } from '../../lib/errors.ts';

/** Dedicated UDP port of the probe responder on every node's overlay IP. */
export const PROBE_PORT = 51821;
export const PROBE_HEADER_BYTES = 24;
const MAGIC = 0x584c5052; // 'XLPR'
const VERSION = 1;

export type ProbeType = 'request' | 'reply';

export interface ProbePacket {
  readonly type: ProbeType;
  readonly session: number;
  readonly seq: number;
  readonly sentAt: number;
  /** Reply only: the size of the request as the responder received it. */
  readonly receivedBytes: number;
}

export class ProbePacketError extends CrosslinkError {
  override name = 'ProbePacketError';
}

/** `totalBytes` pads a request to that size (at least the header). */
export function encodeProbe(p: ProbePacket, totalBytes = PROBE_HEADER_BYTES): Buffer {
  const buf = Buffer.alloc(Math.max(PROBE_HEADER_BYTES, totalBytes));
  buf.writeUInt32BE(MAGIC, 0);
  buf.writeUInt8(VERSION, 4);
  buf.writeUInt8(p.type === 'request' ? 1 : 2, 5);
  buf.writeUInt16BE(Math.min(0xffff, p.receivedBytes), 6);
  buf.writeUInt32BE(p.session >>> 0, 8);
  buf.writeUInt32BE(p.seq >>> 0, 12);
  buf.writeDoubleBE(p.sentAt, 16);
  return buf;
}

/** Parses a datagram; throws ProbePacketError for anything that is not a probe of our version. */
export function decodeProbe(buf: Buffer): ProbePacket {
  if (buf.length < PROBE_HEADER_BYTES) throw new ProbePacketError(`probe datagram too short: ${buf.length} bytes`);
  if (buf.readUInt32BE(0) !== MAGIC) throw new ProbePacketError('not a probe datagram (bad magic)');
  const version = buf.readUInt8(4);
  if (version !== VERSION) throw new ProbePacketError(`unsupported probe version ${version}`);
  const t = buf.readUInt8(5);
  if (t !== 1 && t !== 2) throw new ProbePacketError(`unknown probe type ${t}`);
  return {
    type: t === 1 ? 'request' : 'reply',
    receivedBytes: buf.readUInt16BE(6),
    session: buf.readUInt32BE(8),
    seq: buf.readUInt32BE(12),
    sentAt: buf.readDoubleBE(16),
  };
}

/** The reply to `request` as received (`receivedBytes` long): header only. */
export function replyTo(request: ProbePacket, receivedBytes: number): Buffer {
  return encodeProbe({ ...request, type: 'reply', receivedBytes });
}
