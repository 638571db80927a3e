// Pure: one DNS query → one response for the `clusterset.local` zone, and its wire encoding with
// truncation. Wire format by the npm package dns-packet (maintained, used by multicast-dns, every
// record type we need including EDNS OPT): no hand-written packet code.
//   A / AAAA  <svc>.<ns>.svc.clusterset.local             ready endpoints, in answer order
//   SRV       _<port>._<tcp|udp>.<svc>.<ns>.svc.clusterset.local   one record per named port
//   SOA / NS  at the apex; SOA in the authority section of every negative answer
//   NXDOMAIN  names that do not exist; NOERROR without answers (NODATA) for an existing name
//             without records of the asked type (e.g. AAAA of an IPv4-only service)
//   REFUSED   names outside the zone (we are not a recursive resolver)
import dnsPacket, { type Answer, type DecodedPacket, type Packet, type Question } from 'dns-packet';
import { parseIp } from '../../protocol/cidr.ts';
import type { ServiceEntry, ServiceTable } from './service-table.ts';

export const ZONE = 'clusterset.local';
/** Answers change when endpoints do (failover): resolvers may cache them this long. */
export const DEFAULT_TTL_SEC = 5;
/** Largest UDP answer without EDNS (RFC 1035). */
export const UDP_PLAIN_LIMIT = 512;
/** Our EDNS buffer: the DNS flag day 2020 value, safe from IP fragmentation. */
export const UDP_EDNS_LIMIT = 1232;

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export interface AnswerOptions {
  readonly ttlSec?: number;
  /** Name server host named in SOA/NS (default `ns.dns.clusterset.local`). */
  readonly nsName?: string;
}

type Rcode = (typeof RCODE)[keyof typeof RCODE];

interface Lookup {
  readonly rcode: Rcode;
  readonly answers: Answer[];
  readonly additionals: Answer[];
  /** Negative answers carry the SOA (negative caching, RFC 2308). */
  readonly soa: boolean;
}

function soaRecord(ttl: number, nsName: string): Answer {
  return {
    type: 'SOA',
    name: ZONE,
    ttl,
    class: 'IN',
    data: { mname: nsName, rname: `hostmaster.${ZONE}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: ttl },
  };
}

const addressRecords = (name: string, entry: ServiceEntry, family: 4 | 6, ttl: number): Answer[] =>
  entry.endpoints
    .filter((e) => parseIp(e.address)?.family === family)
    .map((e) => ({ type: family === 4 ? 'A' : 'AAAA', name, ttl, class: 'IN', data: e.address }));

function lookup(q: Question, table: ServiceTable, ttl: number, nsName: string): Lookup {
  const name = q.name.toLowerCase().replace(/\.$/, '');
  // dns-packet decodes type 255 as "ANY", which its type list leaves out.
  const type: string = q.type;
  const none = (rcode: Rcode): Lookup => ({ rcode, answers: [], additionals: [], soa: rcode === RCODE.NXDOMAIN || rcode === RCODE.NOERROR });
  if (name !== ZONE && !name.endsWith(`.${ZONE}`)) return { ...none(RCODE.REFUSED), soa: false };
  if (q.class !== 'IN' && q.class !== undefined) return { ...none(RCODE.REFUSED), soa: false };
  const labels = name === ZONE ? [] : name.slice(0, -ZONE.length - 1).split('.');
  if (labels.length === 0) {
    if (type === 'SOA') return { rcode: RCODE.NOERROR, answers: [soaRecord(ttl, nsName)], additionals: [], soa: false };
    if (type === 'NS') return { rcode: RCODE.NOERROR, answers: [{ type: 'NS', name: ZONE, ttl, class: 'IN', data: nsName }], additionals: [], soa: false };
    return none(RCODE.NOERROR);
  }
  // Empty non-terminals (`svc`, `<ns>.svc`) exist when some service lives below them.
  if (labels.length === 1 && labels[0] === 'svc') return none(table.size > 0 ? RCODE.NOERROR : RCODE.NXDOMAIN);
  if (labels.length === 2 && labels[1] === 'svc') {
    const ns = labels[0];
    return none([...table.values()].some((e) => e.namespace === ns) ? RCODE.NOERROR : RCODE.NXDOMAIN);
  }
  if (labels.length === 3 && labels[2] === 'svc') {
    const [svc, ns] = labels as [string, string, string];
    const entry = table.get(`${svc}.${ns}`);
    if (!entry) return none(RCODE.NXDOMAIN);
    if (type === 'A' || type === 'AAAA' || type === 'ANY') {
      const answers = [
        ...(type !== 'AAAA' ? addressRecords(name, entry, 4, ttl) : []),
        ...(type !== 'A' ? addressRecords(name, entry, 6, ttl) : []),
      ];
      return { rcode: RCODE.NOERROR, answers, additionals: [], soa: answers.length === 0 };
    }
    if (type === 'SRV') {
      // SRV at the service name itself: every named port (as Kubernetes DNS does for headless services).
      const answers = entry.ports.filter((p) => p.name !== '').map((p) => srv(name, name, p.port, ttl));
      return { rcode: RCODE.NOERROR, answers, additionals: answers.length > 0 ? glue(name, entry, ttl) : [], soa: answers.length === 0 };
    }
    return none(RCODE.NOERROR);
  }
  if (labels.length === 5 && labels[4] === 'svc' && labels[0]?.startsWith('_') && labels[1]?.startsWith('_')) {
    const [portLabel, protoLabel, svc, ns] = labels as [string, string, string, string, string];
    const entry = table.get(`${svc}.${ns}`);
    const port = entry?.ports.find((p) => p.name !== '' && `_${p.name}` === portLabel && `_${p.protocol.toLowerCase()}` === protoLabel);
    if (!entry || !port) return none(RCODE.NXDOMAIN);
    if (type !== 'SRV' && type !== 'ANY') return none(RCODE.NOERROR);
    const target = `${svc}.${ns}.svc.${ZONE}`;
    return { rcode: RCODE.NOERROR, answers: [srv(name, target, port.port, ttl)], additionals: glue(target, entry, ttl), soa: false };
  }
  return none(RCODE.NXDOMAIN);
}

const srv = (name: string, target: string, port: number, ttl: number): Answer => ({ type: 'SRV', name, ttl, class: 'IN', data: { priority: 0, weight: 100, port, target } });
const glue = (target: string, entry: ServiceEntry, ttl: number): Answer[] => [...addressRecords(target, entry, 4, ttl), ...addressRecords(target, entry, 6, ttl)];

/** The response to `query` (a decoded packet). Only the first question is answered (as every server does). */
export function answerQuery(query: DecodedPacket, table: ServiceTable, options: AnswerOptions = {}): Packet {
  const ttl = options.ttlSec ?? DEFAULT_TTL_SEC;
  const nsName = options.nsName ?? `ns.dns.${ZONE}`;
  const rd = query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0;
  const q = query.questions?.[0];
  const base = { id: query.id ?? 0, type: 'response' as const, questions: query.questions ?? [] };
  if (query.type !== 'query' || !q || (query.questions?.length ?? 0) !== 1) {
    return { ...base, flags: rd | RCODE.FORMERR, answers: [], authorities: [], additionals: [] };
  }
  const r = lookup(q, table, ttl, nsName);
  const aa = r.rcode === RCODE.REFUSED ? 0 : dnsPacket.AUTHORITATIVE_ANSWER;
  const edns = ednsOf(query);
  return {
    ...base,
    flags: aa | rd | r.rcode,
    answers: r.answers,
    authorities: r.soa ? [soaRecord(ttl, nsName)] : [],
    additionals: [...r.additionals, ...(edns === undefined ? [] : [optRecord()])],
  };
}

function ednsOf(query: DecodedPacket): number | undefined {
  const opt = query.additionals?.find((a) => a.type === 'OPT');
  return opt && 'udpPayloadSize' in opt ? opt.udpPayloadSize : undefined;
}

const optRecord = (): Answer => ({ type: 'OPT', name: '.', udpPayloadSize: UDP_EDNS_LIMIT, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] });

/** The UDP size limit the client announced: 512 without EDNS, else its EDNS size capped at ours. */
export function udpLimitFor(query: DecodedPacket): number {
  const size = ednsOf(query);
  return size === undefined ? UDP_PLAIN_LIMIT : Math.max(UDP_PLAIN_LIMIT, Math.min(size, UDP_EDNS_LIMIT));
}

/**
 * Encodes `response` for UDP within `limit` bytes. When it does not fit, the answer sections are
 * dropped and the TC bit set, so the client retries over TCP (RFC 2181 §9: no partial RRsets).
 */
export function encodeUdp(response: Packet, limit: number): { bytes: Buffer; truncated: boolean } {
  const full = dnsPacket.encode(response);
  if (full.length <= limit) return { bytes: full, truncated: false };
  const opt = (response.additionals ?? []).filter((a) => a.type === 'OPT');
  const cut: Packet = { ...response, flags: (response.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE, answers: [], authorities: [], additionals: opt };
  return { bytes: dnsPacket.encode(cut), truncated: true };
}
