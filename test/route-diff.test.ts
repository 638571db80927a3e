import test from 'ava';
import type { DesiredRoute } from '../agent/plan/model.ts';
import { ROUTE_PROTO, diffRoutes, parseIpRoutes, readRoutesArgv, routeCommands, RouteParseError, type LiveRoute } from '../agent/dataplane/route-diff.ts';

test('ROUTE_PROTO is 149 and reads filter on it', (t) => {
  t.is(ROUTE_PROTO, 149);
  t.deepEqual(readRoutesArgv(4), ['ip', '-j', 'route', 'show', 'table', 'main', 'proto', '149']);
  t.deepEqual(readRoutesArgv(6), ['ip', '-j', '-6', 'route', 'show', 'table', 'main', 'proto', '149']);
});

test('parseIpRoutes: real iproute2 6.1 output (host routes without prefix, gateways, v6 metric)', (t) => {
  const v4 = '[{"dst":"10.8.0.0/24","dev":"xl0","scope":"link","flags":[]},{"dst":"10.8.1.1","gateway":"10.9.0.5","dev":"eth0","flags":[]}]\n';
  t.deepEqual(parseIpRoutes(v4, 4), [
    { dst: '10.8.0.0/24', dev: 'xl0', via: null },
    { dst: '10.8.1.1/32', dev: 'eth0', via: '10.9.0.5' },
  ]);
  const v6 = '[{"dst":"fd01::1","dev":"xl0","metric":1024,"flags":[],"pref":"medium"},{"dst":"fd01:0::/64","dev":"xl0","metric":1024,"flags":[],"pref":"medium"},{"dst":"default","via":{"family":"inet6","host":"fe80::1"},"dev":"eth0","flags":[]}]';
  t.deepEqual(parseIpRoutes(v6, 6), [
    { dst: 'fd01::1/128', dev: 'xl0', via: null },
    { dst: 'fd01::/64', dev: 'xl0', via: null },
    { dst: '::/0', dev: 'eth0', via: 'fe80::1' },
  ]);
  t.deepEqual(parseIpRoutes('', 4), []);
  t.deepEqual(parseIpRoutes('[]', 4), []);
  t.throws(() => parseIpRoutes('Error: oops', 4), { instanceOf: RouteParseError });
});

// [title, desired, live, expected commands]
const table: [string, DesiredRoute[], LiveRoute[], string[]][] = [
  ['in sync', [{ dst: '10.3.0.0/24', dev: 'xl0' }], [{ dst: '10.3.0.0/24', dev: 'xl0', via: null }], []],
  ['missing route added', [{ dst: '10.3.0.0/24', dev: 'xl0' }], [], ['add route: ip route replace 10.3.0.0/24 dev xl0 proto 149']],
  ['stale route deleted', [], [{ dst: '10.3.0.0/24', dev: 'xl0', via: null }], ['delete route: ip route del 10.3.0.0/24 proto 149']],
  [
    'dev route becomes gateway route (replaced, not deleted)',
    [{ dst: '10.3.0.0/24', via: '10.0.0.1' }],
    [{ dst: '10.3.0.0/24', dev: 'xl0', via: null }],
    ['replace route: ip route replace 10.3.0.0/24 via 10.0.0.1 proto 149'],
  ],
  ['gateway route in sync (dev ignored)', [{ dst: '10.3.0.0/24', via: '10.0.0.1' }], [{ dst: '10.3.0.0/24', dev: 'eth0', via: '10.0.0.1' }], []],
  ['gateway changed', [{ dst: '10.3.0.0/24', via: '10.0.0.2' }], [{ dst: '10.3.0.0/24', dev: 'eth0', via: '10.0.0.1' }], ['replace route: ip route replace 10.3.0.0/24 via 10.0.0.2 proto 149']],
  [
    'adds come before deletes',
    [{ dst: '10.4.0.0/24', dev: 'xl0' }],
    [{ dst: '10.3.0.0/24', dev: 'xl0', via: null }],
    ['add route: ip route replace 10.4.0.0/24 dev xl0 proto 149', 'delete route: ip route del 10.3.0.0/24 proto 149'],
  ],
  ['IPv6', [{ dst: 'fd00::2/128', dev: 'xl0' }], [], ['add route: ip route replace fd00::2/128 dev xl0 proto 149']],
];
for (const [title, desired, live, expected] of table) {
  test(`route diff: ${title}`, (t) => {
    const { upserts, removals } = routeCommands(diffRoutes(desired, live), new Set(live.map((r) => r.dst)));
    t.deepEqual([...upserts, ...removals].map((c) => `${c.op}: ${c.argv.join(' ')}`), expected);
  });
}
