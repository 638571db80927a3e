import test from 'ava';
import {
  canonicalCidr,
  cidrContainsIp,
  cidrLast,
  cidrSize,
  cidrsOverlap,
  formatEndpoint,
  formatIp,
  hostCidr,
  parseCidr,
  parseEndpoint,
  parseIp,
} from '../protocol/cidr.ts';

const ipCases: [string, { family: 4 | 6; text: string } | undefined][] = [
  ['10.1.2.3', { family: 4, text: '10.1.2.3' }],
  ['0.0.0.0', { family: 4, text: '0.0.0.0' }],
  ['255.255.255.255', { family: 4, text: '255.255.255.255' }],
  ['256.1.1.1', undefined],
  ['1.2.3', undefined],
  ['01.2.3.4', undefined],
  ['1.2.3.4.5', undefined],
  ['::', { family: 6, text: '::' }],
  ['::1', { family: 6, text: '::1' }],
  ['fd00:0:0:0:0:0:0:1', { family: 6, text: 'fd00::1' }],
  ['FD00::A', { family: 6, text: 'fd00::a' }],
  ['2001:db8:0:0:1:0:0:1', { family: 6, text: '2001:db8::1:0:0:1' }],
  ['2001:db8::1::2', undefined],
  ['1:2:3:4:5:6:7:8:9', undefined],
  ['12345::', undefined],
  ['fe80::1%eth0', undefined],
  ['', undefined],
];

for (const [input, want] of ipCases) {
  test(`parseIp/formatIp ${JSON.stringify(input)}`, (t) => {
    const ip = parseIp(input);
    if (!want) {
      t.is(ip, undefined);
      return;
    }
    t.truthy(ip);
    t.is(ip!.family, want.family);
    t.is(formatIp(ip!.family, ip!.value), want.text);
  });
}

const cidrCases: [string, string | undefined, bigint | undefined][] = [
  ['10.0.0.0/8', '10.0.0.0/8', 1n << 24n],
  ['10.1.0.0/16', '10.1.0.0/16', 65536n],
  ['10.1.0.1/16', undefined, undefined], // host bits set
  ['10.1.0.0/33', undefined, undefined],
  ['10.1.0.0/', undefined, undefined],
  ['10.1.0.0/08', undefined, undefined],
  ['10.1.0.0/8/8', undefined, undefined],
  ['10.1.0.0/+8', undefined, undefined],
  ['10.1.0.0/ 8', undefined, undefined],
  ['10.1.0.0/1000', undefined, undefined],
  ['/8', undefined, undefined],
  ['0.0.0.0/0', '0.0.0.0/0', 1n << 32n],
  ['192.0.2.7', '192.0.2.7/32', 1n],
  ['fd00:0::/64', 'fd00::/64', 1n << 64n],
  ['::/0', '::/0', 1n << 128n],
  ['fd00::1/64', undefined, undefined],
  ['fd00::/129', undefined, undefined],
];

for (const [input, canonical, size] of cidrCases) {
  test(`parseCidr ${input}`, (t) => {
    t.is(canonicalCidr(input), canonical);
    const c = parseCidr(input);
    if (size === undefined) t.is(c, undefined);
    else t.is(cidrSize(c!), size);
  });
}

test('parseCidr allowHostBits clears host bits', (t) => {
  t.is(parseCidr('10.1.2.3/16', { allowHostBits: true })?.text, '10.1.0.0/16');
});

const overlapCases: [string, string, boolean][] = [
  ['10.0.0.0/8', '10.1.0.0/16', true],
  ['10.1.0.0/16', '10.0.0.0/8', true],
  ['10.1.0.0/16', '10.2.0.0/16', false],
  ['10.1.0.0/24', '10.1.0.255/32', true],
  ['10.1.0.0/24', '10.1.1.0/32', false],
  ['0.0.0.0/0', '192.0.2.0/24', true],
  ['fd00::/64', 'fd00::/48', true],
  ['fd00::/64', 'fd00:0:0:1::/64', false],
  ['10.0.0.0/8', '::/0', false], // different families never overlap
];

for (const [a, b, want] of overlapCases) {
  test(`cidrsOverlap ${a} ${b}`, (t) => {
    t.is(cidrsOverlap(parseCidr(a)!, parseCidr(b)!), want);
  });
}

const containsCases: [string, string, boolean][] = [
  ['10.1.0.0/16', '10.1.255.255', true],
  ['10.1.0.0/16', '10.2.0.0', false],
  ['10.1.0.0/16', 'fd00::1', false],
  ['fd00::/64', 'fd00::ffff', true],
  ['fd00::/64', 'fd00:0:0:1::', false],
];

for (const [c, ip, want] of containsCases) {
  test(`cidrContainsIp ${c} ${ip}`, (t) => {
    const p = parseIp(ip)!;
    t.is(cidrContainsIp(parseCidr(c)!, p.family, p.value), want);
  });
}

test('cidrLast', (t) => {
  t.is(formatIp(4, cidrLast(parseCidr('10.1.0.0/16')!)), '10.1.255.255');
  t.is(formatIp(6, cidrLast(parseCidr('fd00::/120')!)), 'fd00::ff');
});

test('hostCidr', (t) => {
  t.is(hostCidr('100.96.0.5'), '100.96.0.5/32');
  t.is(hostCidr('fd00:0::5'), 'fd00::5/128');
  t.throws(() => hostCidr('nope'));
});

const endpointCases: [string, { host: string; family: 4 | 6; port: number } | undefined][] = [
  ['192.0.2.1:51820', { host: '192.0.2.1', family: 4, port: 51820 }],
  ['[2001:db8::1]:51820', { host: '2001:db8::1', family: 6, port: 51820 }],
  ['[2001:DB8:0::1]:1', { host: '2001:db8::1', family: 6, port: 1 }],
  ['192.0.2.1:0', undefined],
  ['192.0.2.1:65536', undefined],
  ['192.0.2.1', undefined],
  ['2001:db8::1:51820', undefined], // IPv6 needs brackets
  ['example.com:51820', undefined], // names are never resolved here
  ['[192.0.2.1]:51820', { host: '192.0.2.1', family: 4, port: 51820 }],
  // The regex-free IPv4 path: exactly what /^([0-9.]+):([0-9]{1,5})$/ accepted.
  ['192.0.2.1:080', { host: '192.0.2.1', family: 4, port: 80 }],
  ['192.0.2.1:', undefined],
  ['192.0.2.1:123456', undefined],
  ['192.0.2.1:+80', undefined],
  ['192.0.2.1:80 ', undefined],
  [' 192.0.2.1:80', undefined],
  ['192.0.02.1:80', undefined],
  ['192.0.2.1:80:80', undefined],
  [':80', undefined],
];

for (const [input, want] of endpointCases) {
  test(`parseEndpoint ${JSON.stringify(input)}`, (t) => {
    t.deepEqual(parseEndpoint(input), want);
  });
}

test('formatEndpoint brackets IPv6 only', (t) => {
  t.is(formatEndpoint('192.0.2.1', 51820), '192.0.2.1:51820');
  t.is(formatEndpoint('2001:db8::1', 51820), '[2001:db8::1]:51820');
});

test('IPv4 parsing edge cases (the character-loop parser): dotted quads of 0-255 without leading zeros only', (t) => {
  for (const ok of ['0.0.0.0', '255.255.255.255', '1.2.3.0', '10.0.0.1']) t.is(formatIp(4, parseIp(ok)?.value ?? -1n), ok, ok);
  for (const bad of ['01.2.3.4', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', '1.2.3.', '.1.2.3', '1.2.3.00', 'a.b.c.d', '1.2.3.4 ', '', '1.2.3.1000', '1.2.3.-1']) t.is(parseIp(bad), undefined, bad);
});
