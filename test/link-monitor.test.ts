// The netlink drift monitor: which `ip monitor` lines are about our interface (real lines captured
// from iproute2 6.1), debouncing into one reconcile request, and supervision (a monitor that exits
// is restarted with backoff and a reconcile is asked for, since changes meanwhile went unseen).
// The real `ip monitor` in a namespace is exercised by test/self-heal-netns.test.ts.
import test from 'ava';
import { LinkMonitor, monitorLineAbout, type MonitorProcess } from '../agent/dataplane/link-monitor.ts';
import type { ChildExit } from '../lib/child-process.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';

const IF = 'xl-wg0';

test('lines about our interface ask for a repair; everything else is ignored', (t) => {
  const about = (line: string): string | null => monitorLineAbout(line, IF);
  t.regex(about(`Deleted 10.9.0.0/24 dev ${IF} proto 149 scope link `) ?? '', /^route deleted: 10\.9\.0\.0\/24/);
  t.regex(about(`10.9.0.0/24 dev ${IF} proto 149 scope link `) ?? '', /^route changed/);
  t.regex(about(`fd00:9::/64 dev ${IF} proto 149 metric 1024 pref medium`) ?? '', /^route changed/);
  t.regex(about(`7: ${IF}: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1280 qdisc fq_codel state UNKNOWN group default qlen 500`) ?? '', /^link changed: .*mtu 1280/);
  t.regex(about(`Deleted 7: ${IF}: <POINTOPOINT,MULTICAST,NOARP> mtu 1420 qdisc noop state DOWN`) ?? '', /^link deleted/);
  t.regex(about(`Deleted 7: ${IF}    inet 100.96.0.1/32 scope global ${IF}`) ?? '', /^address deleted/);
  // Not ours: other interfaces (also names that merely start like ours), the kernel's local routes, continuation lines.
  t.is(about(`3: ${IF}x: <BROADCAST> mtu 1300`), null);
  t.is(about(`10.9.0.0/24 dev ${IF}x proto 149 scope link`), null);
  t.is(about('3: eth0@if4: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1300 qdisc noqueue state UP'), null);
  t.is(about('Deleted 10.1.0.0/24 dev eth0 proto kernel scope link src 10.1.0.2'), null);
  t.is(about(`local fe80::94cd:e9ff:fef9:555a dev ${IF} table local proto kernel metric 0 pref medium`), null);
  t.is(about(`broadcast 100.96.0.255 dev ${IF} table local proto kernel scope link src 100.96.0.1`), null);
  t.is(about(`fe80::/64 dev ${IF} proto kernel metric 256 pref medium`), null, 'the link-local route the kernel adds on link up');
  t.is(about('    link/none '), null);
  t.is(about(''), null);
});

/** A stand-in for the `ip monitor` child: lines handed to the monitor, exit on demand. */
class FakeMonitor implements MonitorProcess {
  running = true;
  stops = 0;
  readonly exited: Promise<ChildExit>;
  private resolveExit: (exit: ChildExit) => void = () => undefined;
  constructor(readonly line: (s: string) => void) {
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
  }
  exit(code: number): void {
    this.running = false;
    this.resolveExit({ code, signal: undefined });
  }
  stop(): Promise<ChildExit> {
    this.stops++;
    this.exit(143);
    return this.exited;
  }
}

test('events are debounced into one reconcile request; an exited monitor is restarted and asks for one; stop terminates it', async (t) => {
  const children: FakeMonitor[] = [];
  const reasons: string[] = [];
  const monitor = new LinkMonitor({
    interfaceName: IF,
    clock: systemClock,
    logger: silentLogger(),
    debounceMs: 20,
    restartBackoff: { initialMs: 10, maxMs: 10 },
    spawnMonitor: (onLine) => {
      const c = new FakeMonitor(onLine);
      children.push(c);
      return c;
    },
    onChange: (r) => reasons.push(r),
  });
  monitor.start();
  const first = children[0];
  if (!first) throw new Error('no monitor child');
  first.line(`Deleted 10.9.0.0/24 dev ${IF} proto 149 scope link`);
  first.line(`Deleted 100.96.0.2/32 dev ${IF} proto 149 scope link`);
  first.line('Deleted 10.1.0.0/24 dev eth0 proto kernel scope link');
  await waitFor(() => reasons.length > 0, { timeoutMs: 5000, intervalMs: 5, what: 'a reconcile request' });
  t.deepEqual(reasons, [`route deleted: 10.9.0.0/24 dev ${IF} proto 149 scope link (+1 more)`]);
  t.is(monitor.events, 2);

  first.exit(1);
  await waitFor(() => children.length === 2 && reasons.length === 2, { timeoutMs: 5000, intervalMs: 5, what: 'restarted monitor and a catch-up request' });
  t.is(reasons[1], 'ip monitor restarted');
  t.true(monitor.running);

  await monitor.stop();
  t.is(children[1]?.stops, 1);
  t.false(monitor.running);
  t.is(children.length, 2, 'not restarted after stop');
});
