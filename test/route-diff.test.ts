import test from 'ava';
import type { DesiredRoute } from '../agent/plan/model.ts';
import { ROUTE_PROTO, diffRoutes, parseIpRoutes, readRoutesArgv, routeCommands, type LiveRoute } from '../agent/dataplane/route-diff.ts';
import { IpJsonError } from '../agent/dataplane/ip-json.ts';

/** A live route of ours (proto 149) unless `protocol` says otherwise. */
const live = (dst: string, dev: string | null, via: string | null = null, extra: Partial<LiveRoute> = {}): LiveRoute => ({
  dst,
  dev,
  via,
  metric: dst.includes(':') ? 1024 : 0,
  protocol: '149',
  scope: null,
  ...extra,
});

test('ROUTE_PROTO is 149; reads take the whole main table (ours and everybody else\'s)', (t) => {
  t.is(ROUTE_PROTO, 149);
  t.deepEqual(readRoutesArgv(4), ['ip', '-j', 'route', 'show', 'table', 'main']);
  t.deepEqual(readRoutesArgv(6), ['ip', '-j', '-6', 'route', 'show', 'table', 'main']);
});

test('parseIpRoutes: real iproute2 6.1 output (host routes without prefix, gateways, v6 metric)', (t) => {
  const v4 = '[{"dst":"10.8.0.0/24","dev":"xl0","scope":"link","flags":[]},{"dst":"10.8.1.1","gateway":"10.9.0.5","dev":"eth0","flags":[]}]\n';
  t.deepEqual(parseIpRoutes(v4, 4), [
    { dst: '10.8.0.0/24', dev: 'xl0', via: null, metric: 0, protocol: 'boot', scope: 'link' },
    { dst: '10.8.1.1/32', dev: 'eth0', via: '10.9.0.5', metric: 0, protocol: 'boot', scope: null },
  ]);
  // Real `ip -j route show table main` in a namespace: connected subnet, two of ours with one dst.
  const main = '[{"dst":"default","gateway":"10.9.0.254","dev":"xl-d0","flags":[]},{"dst":"10.9.0.0/24","dev":"xl-d0","protocol":"kernel","scope":"link","prefsrc":"10.9.0.1","flags":[]},{"dst":"10.50.0.0/24","dev":"xl-d0","protocol":"149","scope":"link","flags":[]},{"dst":"10.50.0.0/24","dev":"xl-d0","protocol":"149","scope":"link","metric":5,"flags":[]}]';
  t.deepEqual(parseIpRoutes(main, 4), [
    { dst: '0.0.0.0/0', dev: 'xl-d0', via: '10.9.0.254', metric: 0, protocol: 'boot', scope: null },
    { dst: '10.9.0.0/24', dev: 'xl-d0', via: null, metric: 0, protocol: 'kernel', scope: 'link' },
    { dst: '10.50.0.0/24', dev: 'xl-d0', via: null, metric: 0, protocol: '149', scope: 'link' },
    { dst: '10.50.0.0/24', dev: 'xl-d0', via: null, metric: 5, protocol: '149', scope: 'link' },
  ]);
  const v6 = '[{"dst":"fd01::1","dev":"xl0","metric":1024,"flags":[],"pref":"medium"},{"dst":"fd01:0::/64","dev":"xl0","metric":1024,"flags":[],"pref":"medium"},{"dst":"default","via":{"family":"inet6","host":"fe80::1"},"dev":"eth0","flags":[]}]';
  t.deepEqual(parseIpRoutes(v6, 6), [
    { dst: 'fd01::1/128', dev: 'xl0', via: null, metric: 1024, protocol: 'boot', scope: null },
    { dst: 'fd01::/64', dev: 'xl0', via: null, metric: 1024, protocol: 'boot', scope: null },
    { dst: '::/0', dev: 'eth0', via: 'fe80::1', metric: 0, protocol: 'boot', scope: null },
  ]);
  t.deepEqual(parseIpRoutes('', 4), []);
  t.deepEqual(parseIpRoutes('[]', 4), []);
  // One parse of `ip -j` output (agent/dataplane/ip-json.ts): the error names the command.
  t.throws(() => parseIpRoutes('Error: oops', 4), { instanceOf: IpJsonError, message: /^ip -j route show table main: output is not JSON/ });
  t.throws(() => parseIpRoutes('{}', 6), { instanceOf: IpJsonError, message: /^ip -j -6 route show table main: expected a JSON array/ });
});

// [title, desired, live, expected commands]
const table: [string, DesiredRoute[], LiveRoute[], string[]][] = [
  ['in sync', [{ dst: '10.3.0.0/24', dev: 'xl0' }], [live('10.3.0.0/24', 'xl0')], []],
  ['missing route added', [{ dst: '10.3.0.0/24', dev: 'xl0' }], [], ['add route: ip route replace 10.3.0.0/24 dev xl0 proto 149']],
  ['stale route deleted', [], [live('10.3.0.0/24', 'xl0')], ['delete route: ip route del 10.3.0.0/24 proto 149 metric 0 dev xl0']],
  [
    'dev route becomes gateway route (replaced, not deleted)',
    [{ dst: '10.3.0.0/24', via: '10.0.0.1' }],
    [live('10.3.0.0/24', 'xl0')],
    ['replace route: ip route replace 10.3.0.0/24 via 10.0.0.1 proto 149'],
  ],
  ['gateway route in sync (dev ignored)', [{ dst: '10.3.0.0/24', via: '10.0.0.1' }], [live('10.3.0.0/24', 'eth0', '10.0.0.1')], []],
  ['gateway changed', [{ dst: '10.3.0.0/24', via: '10.0.0.2' }], [live('10.3.0.0/24', 'eth0', '10.0.0.1')], ['replace route: ip route replace 10.3.0.0/24 via 10.0.0.2 proto 149']],
  [
    'adds come before deletes',
    [{ dst: '10.4.0.0/24', dev: 'xl0' }],
    [live('10.3.0.0/24', 'xl0')],
    ['add route: ip route replace 10.4.0.0/24 dev xl0 proto 149', 'delete route: ip route del 10.3.0.0/24 proto 149 metric 0 dev xl0'],
  ],
  ['IPv6', [{ dst: 'fd00::2/128', dev: 'xl0' }], [], ['add route: ip route replace fd00::2/128 dev xl0 proto 149']],
  ['IPv6 in sync (default metric 1024)', [{ dst: 'fd00::2/128', dev: 'xl0' }], [live('fd00::2/128', 'xl0')], []],
  // Issue 7: live routes were keyed by destination only, so the second of two owned routes with
  // one destination was never removed.
  [
    'two owned routes, one destination, both unwanted: both deleted',
    [],
    [live('10.3.0.0/24', 'xl0'), live('10.3.0.0/24', 'xl0', null, { metric: 5 })],
    ['delete route: ip route del 10.3.0.0/24 proto 149 metric 0 dev xl0', 'delete route: ip route del 10.3.0.0/24 proto 149 metric 5 dev xl0'],
  ],
  [
    'two owned routes, one destination, one wanted: the duplicate (other metric) goes',
    [{ dst: '10.3.0.0/24', dev: 'xl0' }],
    [live('10.3.0.0/24', 'xl0', null, { metric: 5 }), live('10.3.0.0/24', 'xl0')],
    ['delete route: ip route del 10.3.0.0/24 proto 149 metric 5 dev xl0'],
  ],
  [
    'IPv6 duplicate on another device goes, the wanted one stays',
    [{ dst: 'fd00::2/128', dev: 'xl0' }],
    [live('fd00::2/128', 'xl0'), live('fd00::2/128', 'eth0', null, { metric: 2048 })],
    ['delete route: ip route del fd00::2/128 proto 149 metric 2048 dev eth0'],
  ],
  // Routes of others are never replaced or deleted, whatever is desired.
  ['connected subnet with the desired destination: not replaced', [{ dst: '10.9.0.0/24', dev: 'xl0' }], [live('10.9.0.0/24', 'eth0', null, { protocol: 'kernel', scope: 'link' })], []],
  ['foreign route with another metric: not replaced either (ours would shadow it)', [{ dst: '10.9.0.0/24', dev: 'xl0' }], [live('10.9.0.0/24', 'eth0', null, { protocol: 'dhcp', metric: 100 })], []],
  ['foreign routes that are not wanted: left alone', [], [live('0.0.0.0/0', 'eth0', '10.9.0.1', { protocol: 'boot' }), live('10.9.0.0/24', 'eth0', null, { protocol: 'kernel' })], []],
];
for (const [title, desired, liveRoutes, expected] of table) {
  test(`route diff: ${title}`, (t) => {
    const { upserts, removals } = routeCommands(diffRoutes(desired, liveRoutes), new Set(liveRoutes.map((r) => r.dst)));
    t.deepEqual([...upserts, ...removals].map((c) => `${c.op}: ${c.argv.join(' ')}`), expected);
  });
}

test('route diff: a blocked route says whose route holds the destination', (t) => {
  const diff = diffRoutes([{ dst: '10.9.0.0/24', dev: 'xl0' }], [live('10.9.0.0/24', 'eth0', null, { protocol: 'kernel', scope: 'link' })]);
  t.deepEqual(diff.blocked, [{ route: { dst: '10.9.0.0/24', dev: 'xl0' }, reason: '10.9.0.0/24 already has a route Crosslink does not own (proto kernel, dev eth0)' }]);
});
