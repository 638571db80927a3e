// The netlink echo of the data plane's own route batches is not drift (agent/dataplane/own-changes.ts):
// announced changes are consumed once by their `ip monitor` line; a change made by hand, by someone
// else or after the window still counts as drift, so the monitor still asks for a repair.
import test from 'ava';
import { LinkMonitor, type MonitorProcess } from '../agent/dataplane/link-monitor.ts';
import { ECHO_WINDOW_MS, OwnRouteChanges } from '../agent/dataplane/own-changes.ts';
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
