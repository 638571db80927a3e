// Pure: decoding `tcpdump -n -x` output and the encryption verdict (the lab's capture check).
import test from 'ava';
import { analyzeCapture, encryptionVerdict, parseTcpdump } from '../lab/capture.ts';
import { parseBulk } from '../lab/bulk.ts';

// Real output of tcpdump 4.99 on a lab bridge: ARP, an ICMP echo between public addresses, a UDP
// datagram starting with a WireGuard header (type 1 + three zero bytes), and a ping from a pod address.
const SAMPLE = `17:24:36.483679 ARP, Request who-has 203.0.113.11 tell 203.0.113.10, length 28
	0x0000:  0001 0800 0604 0001 16d7 42b8 2fea cb00
	0x0010:  710a 0000 0000 0000 cb00 710b
17:24:36.483709 IP 203.0.113.10 > 203.0.113.11: ICMP echo request, id 7054, seq 1, length 64
	0x0000:  4500 0054 d999 4000 4001 e8f8 cb00 710a
	0x0010:  cb00 710b 0800 f35a 1b8e 0001 d476 046b
17:24:36.486795 IP 203.0.113.10.48525 > 203.0.113.11.51820: UDP, length 16
	0x0000:  4500 002c e02d 4000 4011 e27c cb00 710a
	0x0010:  cb00 710b bd8d ca6c 0018 7840 0100 0000
	0x0020:  6162 6364 6162 6364 6162 6364
17:24:36.489342 IP 10.1.1.2 > 203.0.113.11: ICMP echo request, id 7056, seq 1, length 64
	0x0000:  4500 0054 6a00 4000 4001 899a 0a01 0102
	0x0010:  cb00 710b 0800 0e43 1b90 0001 d476 046b
`;

test('parseTcpdump decodes IPv4 headers from the bytes and recognises WireGuard messages', (t) => {
  const { packets, ipv4 } = parseTcpdump(SAMPLE);
  t.is(packets, 4);
  t.deepEqual(
    ipv4.map((p) => [p.src, p.dst, p.protocol, p.wireguard]),
    [
      ['203.0.113.10', '203.0.113.11', 1, false],
      ['203.0.113.10', '203.0.113.11', 17, true],
      ['10.1.1.2', '203.0.113.11', 1, false],
    ],
  );
  t.is(ipv4[1]?.length, 44, 'IP total length from the header');
  t.is(analyzeCapture(SAMPLE, []).largestWireguard, 44);
});

const verdicts: [string, string, string[], boolean, RegExp][] = [
  ['pod address in the clear fails', SAMPLE, ['10.0.0.0/8', '100.96.0.0/16'], false, /1 packet\(s\) carry a pod\/overlay address.*10\.1\.1\.2 >/],
  ['only public addresses + WireGuard passes', SAMPLE, ['10.2.0.0/16'], true, /1 WireGuard packets/],
  ['no WireGuard at all fails', SAMPLE.split('17:24:36.486795')[0] ?? '', ['10.2.0.0/16'], false, /no WireGuard packets/],
];
for (const [what, text, forbidden, ok, reason] of verdicts) {
  test(`encryption verdict: ${what}`, (t) => {
    const v = encryptionVerdict(analyzeCapture(text, forbidden));
    t.is(v.ok, ok);
    t.regex(v.reason, reason);
  });
}

test('parseBulk: success needs exit 0 and every byte confirmed by the sink', (t) => {
  t.like(parseBulk('a', 'b', 4194304, '{"confirmed":4194304}\n', '', 0, 80), { ok: true, bytes: 4194304, detail: '4194304 bytes in 80 ms' });
  t.like(parseBulk('a', 'b', 4194304, '{"confirmed":2224176}\n', '', 0, 80), { ok: false, detail: 'exit 0, sink confirmed 2224176 of 4194304 bytes' });
  t.like(parseBulk('a', 'b', 4194304, '', 'connect ECONNREFUSED 10.1.1.2:5201', 1, 5), { ok: false, detail: 'connect ECONNREFUSED 10.1.1.2:5201' });
});
