// The netlink echo of the data plane's own route batches is not drift (agent/dataplane/own-changes.ts):
// announced changes are consumed once by their `ip monitor` line; a change made by hand, by someone
// else or after the window still counts as drift, so the monitor still asks for a repair.
import test from 'ava';
import { LinkMonitor, type MonitorProcess } from '../agent/dataplane/link-monitor.ts';
import { ECHO_WINDOW_MS, InterfaceEcho, OwnRouteChanges } from '../agent/dataplane/own-changes.ts';
import type { ChildExit } from '../lib/child-process.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { silentLogger } from '../lib/logger.ts';

const IF = 'xl-wg0';

test('an announced add or delete is its echo, once; unannounced, foreign, expired or mismatched lines are drift', (t) => {
  const own = new OwnRouteChanges();
  own.expect('add', ['10.9.0.0/24', '100.96.0.7/32'], 0);
  own.expect('del', ['10.8.0.0/24'], 0);
  t.true(own.isEcho(`10.9.0.0/24 dev ${IF} proto 149 scope link `, 5));
  t.false(own.isEcho(`10.9.0.0/24 dev ${IF} proto 149 scope link `, 6), 'consumed: a second add of it is not ours');
  t.true(own.isEcho(`100.96.0.7 dev ${IF} proto 149 scope link `, 5), 'host routes print without /32');
  t.false(own.isEcho(`Deleted 10.9.0.0/24 dev ${IF} proto 149 scope link `, 5), 'we added it: its deletion is drift');
  t.true(own.isEcho(`Deleted 10.8.0.0/24 dev ${IF} proto 149 scope link `, 5));
  t.false(own.isEcho(`Deleted 10.7.0.0/24 dev ${IF} proto 149 scope link `, 5), 'never announced: deleted by hand');
  own.expect('add', ['10.6.0.0/24'], 0);
  t.false(own.isEcho(`10.6.0.0/24 dev ${IF} proto kernel scope link `, 5), 'not our protocol');
  t.false(own.isEcho(`10.6.0.0/24 dev ${IF} proto 149 scope link `, ECHO_WINDOW_MS + 1), 'too late to be the echo');
});

test('interface lines that report what was ensured (our link up, our MTU, our address) are not drift; anything else about the interface is', (t) => {
  const echo = new InterfaceEcho(IF);
  const up = `7: ${IF}: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420 qdisc noqueue state UNKNOWN group default `;
  t.false(echo.isEcho(up), 'nothing ensured yet: drift');
  echo.set({ mtu: 1420, addresses: ['100.96.0.1/32'] });
  t.true(echo.isEcho(up), 'our link up with our MTU');
  t.true(echo.isEcho(`7: ${IF}    inet 100.96.0.1/32 scope global ${IF}`), 'our address added');
  t.true(echo.isEcho(`Deleted 7: ${IF}    inet 100.96.0.9/32 scope global ${IF}`), 'an address we no longer hold, deleted');
  t.false(echo.isEcho(`7: ${IF}: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1280 qdisc noqueue state UNKNOWN group default `), 'MTU changed by hand');
  t.false(echo.isEcho(`7: ${IF}: <POINTOPOINT,NOARP> mtu 1420 qdisc noqueue state DOWN group default `), 'link set down');
  t.false(echo.isEcho(`Deleted 7: ${IF}    inet 100.96.0.1/32 scope global ${IF}`), 'our address deleted by hand');
  t.false(echo.isEcho(`7: ${IF}    inet 100.96.0.77/32 scope global ${IF}`), 'a foreign address added');
  t.false(echo.isEcho(`10.9.0.0/24 dev ${IF} proto 149 scope link `), 'route lines are not its business');
  t.true(echo.isEcho(`7: ${IF}    inet6 fe80::94cd:e9ff:fef9:555a/64 scope link `), 'the kernel\'s link-local address');
  t.false(echo.isEcho(`8: eth0: <BROADCAST,UP,LOWER_UP> mtu 1420 qdisc noqueue state UP`), 'another interface');
});

class FakeMonitor implements MonitorProcess {
  running = true;
  readonly exited: Promise<ChildExit> = new Promise(() => undefined);
  constructor(readonly line: (s: string) => void) {}
  stop(): Promise<ChildExit> {
    this.running = false;
    return Promise.resolve({ code: 0, signal: undefined });
  }
}

test('the monitor drops echoes and still reports drift among them', (t) => {
  const clock = new ManualClock();
  const own = new OwnRouteChanges();
  let fake: FakeMonitor | undefined;
  const monitor = new LinkMonitor({
    interfaceName: IF,
    clock,
    logger: silentLogger(),
    onChange: () => undefined,
    isEcho: (line) => own.isEcho(line, clock.now()),
    spawnMonitor: (onLine) => (fake = new FakeMonitor(onLine)),
    debounceMs: 100,
  });
  monitor.start();
  own.expect('add', ['10.9.0.0/24'], clock.now());
  fake?.line(`10.9.0.0/24 dev ${IF} proto 149 scope link `);
  t.is(monitor.events, 0, 'our own batch: not drift');
  fake?.line(`Deleted 10.9.0.0/24 dev ${IF} proto 149 scope link `);
  t.is(monitor.events, 1, 'deleted by hand: drift');
});
