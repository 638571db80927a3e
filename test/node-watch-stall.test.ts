// runNodeWatch (agent/kubernetes/node-watch.ts) abandons a watch that stays silent — a half-open
// connection delivers nothing, forever — after stallMs ((watchTimeoutSeconds + 30) s) of its INJECTED
// clock (lib/clock-timer.ts, not a bare setTimeout), not before; an event pushes the deadline back.
// The real @kubernetes/client-node against the in-test API server (test/helpers/fake-apiserver.ts);
// a manual clock.
import test from 'ava';
import type { V1Node } from '@kubernetes/client-node';
import { runNodeWatch } from '../agent/kubernetes/node-watch.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { FakeApiServer, nodeObject } from './helpers/fake-apiserver.ts';
import { ManualClock } from './helpers/manual-clock.ts';

const T0 = 1_700_000_000_000;
/** watchTimeoutSeconds 60: a watch silent for 90 s of the clock is dead. */
const STALL_MS = 90_000;

test('a silent watch is abandoned after stallMs of clock time, not before; an event pushes the deadline back', async (t) => {
  const server = await FakeApiServer.start();
  t.teardown(() => server.stop());
  server.createNode(nodeObject({ name: 'n1', podCIDRs: ['10.1.0.0/24'] }));
  const clock = new ManualClock(T0);
  const stop = new AbortController();
  const seen: (V1Node | null)[] = [];
  const watches = (): number => server.requests.filter((r) => r.query['watch'] === 'true').length;
  const running = runNodeWatch(
    { kubeConfig: server.kubeConfig(), nodeName: 'n1', logger: silentLogger(), clock, onNode: (n) => seen.push(n), watchTimeoutSeconds: 60, backoff: { initialMs: 500, maxMs: 500 }, random: () => 0.5 },
    stop.signal,
  );
  t.teardown(async () => {
    stop.abort();
    clock.advance(3_600_000);
    await running;
  });
  const until = <T>(what: string, f: () => T | undefined | false): Promise<T> => waitFor(f, { timeoutMs: 10_000, intervalMs: 20, what });
  const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

  await until('the list and one open watch', () => seen.length === 1 && server.watchCount === 1);
  await until('the stall timer armed on the clock', () => clock.hasSleeperAt(T0 + STALL_MS));

  // An event 60 s in re-arms it: now due at 150 s.
  clock.advanceTo(T0 + 60_000);
  server.updateNode('n1', (n) => {
    (n['metadata'] as { labels?: Record<string, string> }).labels = { touched: 'yes' };
  });
  await until('the event', () => seen.length === 2);
  await until('the stall timer re-armed', () => clock.hasSleeperAt(T0 + 60_000 + STALL_MS));
  t.false(clock.hasSleeperAt(T0 + STALL_MS), 'the earlier deadline is gone');

  clock.advanceTo(T0 + 60_000 + STALL_MS - 1);
  await turn();
  t.is(watches(), 1, 'not abandoned before stallMs of silence');
  t.is(clock.wakeups.length, 1, 'no retry pending: the watch is still held');

  clock.advanceTo(T0 + 60_000 + STALL_MS);
  await until('the silent watch abandoned (its connection closed)', () => server.watchCount === 0);
  await clock.advanceWhenArmed(T0 + 60_000 + STALL_MS + 500, 'the retry after the backoff');
  await until('a new watch from the last resourceVersion', () => watches() === 2 && server.watchCount === 1);
  t.is(seen.length, 2, 'nothing re-listed or replayed');
});
