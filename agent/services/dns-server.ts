// The agent's DNS server for `clusterset.local`: UDP and TCP on the same --dns-addr. Answers come
// from the current ServiceTable snapshot (pure answerQuery); UDP answers that do not fit the
// client's size are truncated (TC) so it retries over TCP, where messages carry the 2-byte length
// prefix of RFC 1035 §4.2.2 (dns-packet's streamEncode/streamDecode).
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import dnsPacket, { type DecodedPacket } from 'dns-packet';
import { CrosslinkError, errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { parseIp } from '../../protocol/cidr.ts';
import { answerQuery, encodeUdp, udpLimitFor, type AnswerOptions } from './dns-answer.ts';
import type { ServiceTable } from './service-table.ts';

export class DnsServerError extends CrosslinkError {
  override name = 'DnsServerError';
}

export interface DnsServerOptions {
  readonly host: string;
  /** 0 picks a free port (tests). */
  readonly port: number;
  readonly table: () => ServiceTable;
  readonly logger: Logger;
  readonly answer?: AnswerOptions;
}

export interface DnsServer {
  readonly port: number;
  readonly stats: () => { readonly queries: number; readonly truncated: number; readonly malformed: number };
  close(): Promise<void>;
}

/** A TCP client may pipeline; one that sends nothing for this long is dropped. */
const TCP_IDLE_MS = 10_000;
const MAX_TCP_BUFFER = 65_537;

export async function startDnsServer(o: DnsServerOptions): Promise<DnsServer> {
  const family = parseIp(o.host)?.family;
  if (family === undefined) throw new DnsServerError(`--dns-addr: "${o.host}" is not an IP address`);
  const counters = { queries: 0, truncated: 0, malformed: 0 };
  const decode = (buf: Buffer): DecodedPacket | undefined => {
    try {
      return dnsPacket.decode(buf);
    } catch {
      counters.malformed++;
      return undefined;
    }
  };

  const udp: Socket = createSocket({ type: family === 4 ? 'udp4' : 'udp6', reuseAddr: false });
  udp.on('message', (msg, rinfo) => {
    const q = decode(msg);
    if (!q) return;
    counters.queries++;
    const { bytes, truncated } = encodeUdp(answerQuery(q, o.table(), o.answer), udpLimitFor(q));
    if (truncated) counters.truncated++;
    udp.send(bytes, rinfo.port, rinfo.address, (err) => {
      if (err) o.logger.debug({ err: errorMessage(err) }, 'DNS reply not sent');
    });
  });
  udp.on('error', (err) => o.logger.warn({ err: errorMessage(err) }, 'DNS UDP socket error'));

  const sockets = new Set<TcpSocket>();
  const tcp: Server = createServer((sock) => {
    sockets.add(sock);
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length > MAX_TCP_BUFFER) {
        sock.destroy();
        return;
      }
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const q = decode(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        if (!q) {
          sock.destroy();
          return;
        }
        counters.queries++;
        sock.write(dnsPacket.streamEncode(answerQuery(q, o.table(), o.answer)));
      }
    });
    sock.on('error', () => sock.destroy());
    sock.on('close', () => sockets.delete(sock));
  });

  try {
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind({ address: o.host, port: o.port, exclusive: true }, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    const port = udp.address().port;
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen({ host: o.host, port }, () => {
        tcp.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    udp.close();
    tcp.close();
    throw new DnsServerError(`cannot serve DNS on ${o.host}:${o.port}: ${errorMessage(err)}`, { cause: err });
  }
  const port = udp.address().port;
  o.logger.info({ addr: `${o.host}:${port}` }, 'DNS server for clusterset.local listening (UDP and TCP)');
  return {
    port,
    stats: () => ({ ...counters }),
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
    },
  };
}
