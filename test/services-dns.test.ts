// The agent's clusterset.local DNS server against a real client (`dig` from bind9-dnsutils) on
// loopback: A, AAAA, SRV, NXDOMAIN with SOA, NODATA, REFUSED outside the zone, TTLs, truncation
// of large UDP answers and the TCP retry that gets them whole.
import test from 'ava';
import { execa } from 'execa';
import { startDnsServer, type DnsServer } from '../agent/services/dns-server.ts';
import type { ServiceEntry, ServiceTable } from '../agent/services/service-table.ts';
import { silentLogger } from '../lib/logger.ts';

const big = Array.from({ length: 60 }, (_, i) => ({ address: `10.9.${Math.floor(i / 250)}.${(i % 250) + 1}`, cluster: 'b' }));
const entries: ServiceEntry[] = [
  {
    namespace: 'shop',
    name: 'web',
    ports: [
      { name: 'http', port: 8080, protocol: 'TCP' },
      { name: 'dns', port: 53, protocol: 'UDP' },
      { name: '', port: 9999, protocol: 'TCP' },
    ],
    endpoints: [
      { address: '10.2.0.5', cluster: 'b' },
      { address: '10.1.0.5', cluster: 'a' },
      { address: 'fd00:10:1::5', cluster: 'a' },
    ],
  },
  { namespace: 'shop', name: 'v4only', ports: [{ name: 'http', port: 80, protocol: 'TCP' }], endpoints: [{ address: '10.1.0.7', cluster: 'a' }] },
  { namespace: 'shop', name: 'empty', ports: [{ name: 'http', port: 80, protocol: 'TCP' }], endpoints: [] },
  { namespace: 'bulk', name: 'many', ports: [{ name: 'http', port: 80, protocol: 'TCP' }], endpoints: big },
];
let table: ServiceTable = new Map(entries.map((e) => [`${e.name}.${e.namespace}`, e]));
let server: DnsServer | undefined;

test.before(async () => {
  server = await startDnsServer({ host: '127.0.0.1', port: 0, table: () => table, logger: silentLogger() });
});
test.after.always(async () => {
  await server?.close();
});

async function dig(...args: string[]): Promise<string> {
  if (!server) throw new Error('no server');
  const r = await execa('dig', ['@127.0.0.1', '-p', String(server.port), '+time=5', '+tries=3', ...args], { reject: false, timeout: 20_000 });
  if (r.exitCode !== 0) throw new Error(`dig ${args.join(' ')} exited ${r.exitCode}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** `name ttl class type data` lines of one section. */
const records = (out: string): string[][] =>
  out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith(';'))
    .map((l) => l.split(/\s+/));

const status = (out: string): string | undefined => /status: ([A-Z]+)/.exec(out)?.[1];
const flags = (out: string): string[] => (/flags: ([a-z ]+);/.exec(out)?.[1] ?? '').trim().split(' ');

test.serial('A: the ready IPv4 endpoints in answer order, TTL 5, authoritative', async (t) => {
  const out = await dig('+noall', '+answer', '+comments', 'web.shop.svc.clusterset.local', 'A');
  t.is(status(out), 'NOERROR');
  t.true(flags(out).includes('aa'));
  const rr = records(out);
  t.deepEqual(rr.map((r) => r[4]), ['10.2.0.5', '10.1.0.5']);
  t.true(rr.every((r) => r[0] === 'web.shop.svc.clusterset.local.' && r[1] === '5' && r[3] === 'A'));
});

test.serial('names are case-insensitive', async (t) => {
  const out = await dig('+short', 'WEB.Shop.SVC.ClusterSet.Local', 'A');
  t.deepEqual(out.trim().split('\n'), ['10.2.0.5', '10.1.0.5']);
});

test.serial('AAAA: the IPv6 endpoints; NODATA with SOA for an IPv4-only service', async (t) => {
  t.is((await dig('+short', 'web.shop.svc.clusterset.local', 'AAAA')).trim(), 'fd00:10:1::5');
  const out = await dig('+noall', '+answer', '+authority', '+comments', 'v4only.shop.svc.clusterset.local', 'AAAA');
  t.is(status(out), 'NOERROR');
  const rr = records(out);
  t.is(rr.length, 1);
  t.is(rr[0]?.[3], 'SOA', 'the authority section carries the SOA');
});

test.serial('SRV for a named port: _http._tcp → port and target, the target\'s addresses as glue', async (t) => {
  const out = await dig('+noall', '+answer', '+additional', '_http._tcp.web.shop.svc.clusterset.local', 'SRV');
  const rr = records(out);
  const srv = rr.filter((r) => r[3] === 'SRV');
  t.deepEqual(srv.map((r) => r.slice(4)), [['0', '100', '8080', 'web.shop.svc.clusterset.local.']]);
  t.deepEqual(rr.filter((r) => r[3] === 'A').map((r) => r[4]), ['10.2.0.5', '10.1.0.5']);
  t.deepEqual(rr.filter((r) => r[3] === 'AAAA').map((r) => r[4]), ['fd00:10:1::5']);
  t.is((await dig('+short', '_dns._udp.web.shop.svc.clusterset.local', 'SRV')).trim(), '0 100 53 web.shop.svc.clusterset.local.');
  // The protocol is part of the name: http is TCP, so _http._udp does not exist.
  t.is(status(await dig('_http._udp.web.shop.svc.clusterset.local', 'SRV')), 'NXDOMAIN');
  // SRV at the service name: every named port (the unnamed 9999 has none).
  const all = records(await dig('+noall', '+answer', 'web.shop.svc.clusterset.local', 'SRV'));
  t.deepEqual(all.map((r) => r[6]).sort(), ['53', '8080']);
});

test.serial('NXDOMAIN with the SOA in authority for unknown services, namespaces and names', async (t) => {
  for (const name of ['nope.shop.svc.clusterset.local', 'web.other.svc.clusterset.local', 'x.web.shop.svc.clusterset.local', 'foo.clusterset.local', '_x._tcp.web.shop.svc.clusterset.local']) {
    const out = await dig('+noall', '+authority', '+comments', name, 'A');
    t.is(status(out), 'NXDOMAIN', name);
    const rr = records(out);
    t.is(rr[0]?.[3], 'SOA', name);
    t.is(rr[0]?.[0], 'clusterset.local.');
  }
  // An exported service without a ready endpoint exists: NODATA, not NXDOMAIN.
  const empty = await dig('+noall', '+answer', '+comments', 'empty.shop.svc.clusterset.local', 'A');
  t.is(status(empty), 'NOERROR');
  t.deepEqual(records(empty), []);
  // The zone apex and empty non-terminals exist.
  t.is(status(await dig('shop.svc.clusterset.local', 'A')), 'NOERROR');
  t.is(status(await dig('clusterset.local', 'SOA')), 'NOERROR');
});

test.serial('outside the zone: REFUSED (not a recursive resolver)', async (t) => {
  t.is(status(await dig('example.com', 'A')), 'REFUSED');
});

test.serial('truncation: a UDP answer over 512 bytes sets TC; dig retries over TCP and gets every record', async (t) => {
  const cut = await dig('+noedns', '+ignore', '+noall', '+answer', '+comments', 'many.bulk.svc.clusterset.local', 'A');
  t.true(flags(cut).includes('tc'), cut);
  t.deepEqual(records(cut), [], 'no partial RRset');
  // Without +ignore dig follows the TC bit to TCP.
  const full = await dig('+noedns', '+noall', '+answer', 'many.bulk.svc.clusterset.local', 'A');
  t.is(records(full).length, 60);
  // Straight over TCP.
  t.is(records(await dig('+tcp', '+noall', '+answer', 'many.bulk.svc.clusterset.local', 'A')).length, 60);
  // With EDNS (1232 bytes) the 60 records (~1 KB) fit in UDP.
  const edns = await dig('+bufsize=4096', '+noall', '+answer', '+comments', 'many.bulk.svc.clusterset.local', 'A');
  t.false(flags(edns).includes('tc'));
  t.is(records(edns).length, 60);
});

test.serial('answers follow the table: a removed service is NXDOMAIN at the next query', async (t) => {
  const before = table;
  table = new Map([...before].filter(([k]) => k !== 'v4only.shop'));
  try {
    t.is(status(await dig('v4only.shop.svc.clusterset.local', 'A')), 'NXDOMAIN');
  } finally {
    table = before;
  }
  t.is((await dig('+short', 'v4only.shop.svc.clusterset.local', 'A')).trim(), '10.1.0.7');
});

test.serial('garbage on UDP is dropped, the server keeps answering', async (t) => {
  const { createSocket } = await import('node:dgram');
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.send(Buffer.from('not dns'), server?.port ?? 0, '127.0.0.1', () => resolve()));
  s.close();
  t.is((await dig('+short', 'v4only.shop.svc.clusterset.local', 'A')).trim(), '10.1.0.7');
});
