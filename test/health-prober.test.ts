// The peer prober on real UDP over loopback: a peer that answers is up with an RTT, a peer that stops
// answering goes down after `downAfter` lost probes (both ends, since a round trip needs both
// directions), and comes back up with the first answer; one-off probes (crosslink ping) report the
// bytes the responder received, an unanswered one lost at its timeout of the injected clock;
// malformed datagrams are refused by the codec.
import { createSocket } from 'node:dgram';
import test from 'ava';
import { Prober } from '../agent/health/prober.ts';
import { PROBE_HEADER_BYTES, decodeProbe, encodeProbe, replyTo } from '../agent/health/probe-packet.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { ManualClock } from './helpers/manual-clock.ts';

const PORT = 40_000 + Math.floor(Math.random() * 10_000);

function prober(port = PORT): Prober {
  return new Prober({ clock: systemClock, logger: silentLogger(), port, intervalMs: 50, downAfter: 3, window: 10 });
}

const until = <T>(what: string, f: () => T | undefined | false): Promise<T> => waitFor(f, { timeoutMs: 10_000, intervalMs: 20, what });

test('packet codec round-trips and rejects foreign datagrams', (t) => {
  const p = { type: 'request' as const, session: 0xdeadbeef, seq: 7, sentAt: 1234.5, receivedBytes: 0 };
  const buf = encodeProbe(p, 1000);
  t.is(buf.length, 1000);
  t.deepEqual(decodeProbe(buf), p);
  t.throws(() => decodeProbe(Buffer.alloc(PROBE_HEADER_BYTES)), { message: /magic/ });
  t.throws(() => decodeProbe(Buffer.from('XLPR')), { message: /too short/ });
});

test.serial('up with an RTT; down on both ends when one side stops answering; up again after the fix', async (t) => {
  const a = prober();
  const b = prober();
  a.setLocalIp('127.0.0.1');
  b.setLocalIp('127.0.0.2');
  a.setTargets([{ name: 'b', ip: '127.0.0.2' }]);
  b.setTargets([{ name: 'a', ip: '127.0.0.1' }]);
  t.is(a.health('b')?.state, 'pending');
  a.start();
  b.start();
  try {
    const up = await until('a sees b up', () => (a.health('b')?.state === 'up' ? a.health('b') : undefined));
    t.true((up?.rttMs ?? -1) >= 0);
    await until('b sees a up', () => b.health('a')?.state === 'up');
    // b goes away: a's probes are lost; a is down after 3 losses with a reason naming the target.
    await b.stop();
    const down = await until('a sees b down', () => (a.health('b')?.state === 'down' ? a.health('b') : undefined));
    t.regex(down?.reason ?? '', /no answer to the last \d+ probes to 127\.0\.0\.2/);
    t.true((down?.lossPct ?? 0) > 0);
    // A fresh responder at the same address: up again with the first answer.
    const b2 = prober();
    b2.setLocalIp('127.0.0.2');
    b2.start();
    try {
      await until('a sees b up again', () => a.health('b')?.state === 'up');
    } finally {
      await b2.stop();
    }
  } finally {
    await a.stop();
    await b.stop();
  }
});

test.serial('a one-way fault (replies dropped) is down on the side that probes, never up', async (t) => {
  // c answers nobody: a "responder" that swallows requests, like a firewall dropping one direction.
  const sink = createSocket('udp4');
  await new Promise<void>((r) => sink.bind(PORT, '127.0.0.3', r));
  const a = prober();
  a.setLocalIp('127.0.0.1');
  a.setTargets([{ name: 'c', ip: '127.0.0.3' }]);
  a.start();
  try {
    const h = await until('c down', () => (a.health('c')?.state === 'down' ? a.health('c') : undefined));
    t.regex(h?.reason ?? '', /never answered/);
    t.is(h?.received, 0);
  } finally {
    await a.stop();
    sink.close();
  }
});

test.serial('one-off probes report RTT and the padded size received; an unanswered one is lost', async (t) => {
  const a = prober();
  const b = prober();
  a.setLocalIp('127.0.0.1');
  b.setLocalIp('127.0.0.2');
  a.start();
  b.start();
  try {
    await until('a bound', () => a.localIp === '127.0.0.1' && b.localIp === '127.0.0.2');
    const r = await a.probe('127.0.0.2', { count: 2, timeoutMs: 2000, gapMs: 10, bytes: 1200 });
    t.is(r.length, 2);
    for (const x of r) {
      t.not(x.rttMs, null);
      t.is(x.receivedBytes, 1200);
    }
    const lost = await a.probe('127.0.0.9', { count: 1, timeoutMs: 200 });
    t.is(lost[0]?.rttMs, null);
  } finally {
    await a.stop();
    await b.stop();
  }
});

test.serial('the first lost probe of a streak is reported once (self-healing re-adds a peer removed by hand), with whether the peer is a fast target', async (t) => {
  const lost: string[] = [];
  const a = new Prober({ clock: systemClock, logger: silentLogger(), port: PORT, intervalMs: 50, downAfter: 3, window: 10, fastIntervalMs: 50, fastTimeoutMs: 100, onFirstLoss: (n, fast) => lost.push(fast ? `${n} (fast)` : n) });
  const b = prober();
  a.setLocalIp('127.0.0.1');
  b.setLocalIp('127.0.0.2');
  a.setTargets([{ name: 'b', ip: '127.0.0.2' }]);
  a.start();
  b.start();
  try {
    await until('a sees b up', () => a.health('b')?.state === 'up');
    t.deepEqual(lost, [], 'no loss while b answers');
    await b.stop();
    await until('a sees b down', () => a.health('b')?.state === 'down');
    t.deepEqual(lost, ['b'], 'one report for the whole streak, not one per lost probe');
    t.true(a.isLosing('b'));
    const b2 = prober();
    b2.setLocalIp('127.0.0.2');
    b2.start();
    try {
      await until('a sees b up again', () => a.health('b')?.state === 'up');
      await b2.stop();
      await until('a sees b lost again', () => lost.length === 2);
      t.deepEqual(lost, ['b', 'b']);
    } finally {
      await b2.stop();
    }
    // A fast target (an active gateway) that never answers: its first loss says so; once it is no longer probed it is not "losing".
    a.setTargets([{ name: 'b', ip: '127.0.0.2' }, { name: 'gw', ip: '127.0.0.3', fast: true }]);
    await until('the gateway lost', () => lost.includes('gw (fast)'));
    t.true(a.isLosing('gw'));
    a.setTargets([{ name: 'b', ip: '127.0.0.2' }]);
    t.false(a.isLosing('gw'), 'not probed any more');
  } finally {
    await a.stop();
    await b.stop();
  }
});

test.serial('a slow gateway (answers within the fast timeout, however late) stays up; answers after the timeout are losses and make it down (manual clock)', async (t) => {
  const clock = new ManualClock();
  const states: string[] = [];
  const a = new Prober({ clock, logger: silentLogger(), port: PORT, downAfter: 3, fastIntervalMs: 300, fastTimeoutMs: 900, onStateChange: (_n, s) => states.push(s) });
  // The gateway: holds every request until the test releases the answer.
  const gw = createSocket('udp4');
  const held: { msg: Buffer; port: number; address: string }[] = [];
  gw.on('message', (msg, rinfo) => held.push({ msg, port: rinfo.port, address: rinfo.address }));
  await new Promise<void>((r) => gw.bind(PORT, '127.0.0.2', r));
  a.setLocalIp('127.0.0.1');
  try {
    await until('the probe socket bound', () => a.problem === null);
    a.setTargets([{ name: 'gw', ip: '127.0.0.2', fast: true }]);
    const losses = (): number => {
      const h = a.health('gw');
      return h ? Math.round((h.window * h.lossPct) / 100) : 0;
    };
    const round = async (delayMs: number): Promise<void> => {
      const lostBefore = losses();
      const before = held.length;
      a.tick();
      await until('the request arrives', () => held.length === before + 1);
      clock.advance(delayMs);
      const req = held[before];
      if (!req) throw new Error('no request held');
      const answered = a.counters.repliesReceived;
      gw.send(replyTo(decodeProbe(req.msg), req.msg.length), req.port, req.address);
      // Answered in time: counted. Too late: the probe expired when the clock passed 900 ms, and
      // the late reply is not counted.
      if (delayMs < 900) await until('the answer counted', () => a.counters.repliesReceived === answered + 1);
      else await until('the probe counted as lost', () => losses() === lostBefore + 1);
    };
    for (let i = 0; i < 6; i++) await round(850);
    const slow = a.health('gw');
    t.is(slow?.state, 'up', 'slow, not dead: kept');
    t.is(slow?.rttMs, 850);
    t.deepEqual(states, ['up'], 'never down while answering within 900 ms');
    for (let i = 0; i < 3; i++) await round(1000);
    await until('down after 3 answers past the timeout', () => a.health('gw')?.state === 'down');
    t.deepEqual(states, ['up', 'down']);
    t.is(a.health('gw')?.received, 6, 'late answers never count');
  } finally {
    await a.stop();
    gw.close();
  }
});

test.serial('a fast target (active gateway) is probed every fastIntervalMs exactly, not on the 250 ms round grid (manual clock)', async (t) => {
  const clock = new ManualClock();
  const a = new Prober({ clock, logger: silentLogger(), port: PORT, intervalMs: 2000, fastIntervalMs: 300, fastTimeoutMs: 900 });
  a.setLocalIp('127.0.0.1');
  try {
    await until('the probe socket bound', () => a.problem === null);
    a.setTargets([{ name: 'gw', ip: '127.0.0.2', fast: true }]);
    const t0 = clock.now();
    const sentAt: number[] = [];
    let sent = 0;
    a.start();
    while (clock.now() - t0 <= 1800) {
      // The loop ticked (if due) and re-armed its sleep: a sleeper after now.
      await until('the probe loop asleep', () => clock.wakeups.some((w) => w > clock.now()));
      if (a.counters.requestsSent > sent) sentAt.push(clock.now() - t0);
      sent = a.counters.requestsSent;
      clock.advanceTo(Math.min(...clock.wakeups.filter((w) => w > clock.now())));
    }
    t.deepEqual(sentAt, [0, 300, 600, 900, 1200, 1500, 1800]);
  } finally {
    await a.stop();
  }
});

test.serial('an unanswered one-off probe is lost at timeoutMs of the injected clock, not before (lib/clock-timer.ts, no bare setTimeout)', async (t) => {
  const T0 = 1_700_000_000_000;
  const clock = new ManualClock(T0);
  const a = new Prober({ clock, logger: silentLogger(), port: PORT, intervalMs: 60_000, downAfter: 3, window: 10 });
  a.setLocalIp('127.0.0.1');
  try {
    await until('a bound', () => a.localIp === '127.0.0.1');
    let result: readonly { rttMs: number | null }[] | undefined;
    const probing = a.probe('127.0.0.9', { count: 1, timeoutMs: 5000 }).then((r) => (result = r));
    await until('the expiry armed on the clock', () => clock.hasSleeperAt(T0 + 5000));
    clock.advanceTo(T0 + 4999);
    // Expiry follows its sleep within the same run of microtasks: one macrotask turn would show it.
    await new Promise((r) => setImmediate(r));
    t.is(result, undefined, 'not lost before timeoutMs');
    clock.advanceTo(T0 + 5000);
    await probing;
    t.is(result?.[0]?.rttMs, null, 'lost at timeoutMs');
  } finally {
    await a.stop();
  }
});
