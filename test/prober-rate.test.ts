// The peer prober's rate is bounded and spread: with many peers it never sends more than
// maxProbesPerSecond (each peer's interval stretches instead), never sends to every peer in one
// burst, and still probes every peer within one (stretched) interval. Real UDP on 127.0.0.1 (the
// prober answers its own probes), a manual clock driving the rounds.
import test from 'ava';
import { Prober, type ProbeTarget } from '../agent/health/prober.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';

const PORT = 30_000 + Math.floor(Math.random() * 10_000);

async function boundProber(clock: ManualClock, port: number, maxProbesPerSecond?: number): Promise<Prober> {
  const p = new Prober({ clock, logger: silentLogger(), port, intervalMs: 2000, ...(maxProbesPerSecond === undefined ? {} : { maxProbesPerSecond }) });
  p.setLocalIp('127.0.0.1');
  await waitFor(() => p.localIp === '127.0.0.1', { timeoutMs: 10_000, intervalMs: 10, what: 'the probe socket bound' });
  return p;
}

const targets = (n: number): ProbeTarget[] => Array.from({ length: n }, (_, i) => ({ name: `peer-${i}`, ip: '127.0.0.1' }));

/** Runs rounds every 250 ms of manual time for `ms`; returns the requests sent in each round. */
function rounds(p: Prober, clock: ManualClock, ms: number): number[] {
  const out: number[] = [];
  for (let t = 0; t < ms; t += 250) {
    const before = p.counters.requestsSent;
    p.tick();
    out.push(p.counters.requestsSent - before);
    clock.advance(250);
  }
  return out;
}

test('1,000 peers: at most maxProbesPerSecond, spread over the interval, every peer probed each stretched interval', async (t) => {
  const clock = new ManualClock();
  const p = await boundProber(clock, PORT, 250);
  try {
    p.setTargets(targets(1000));
    t.is(p.peerIntervalMs, 4000, '1,000 peers at 250/s: each every 4 s');
    const perRound = rounds(p, clock, 20_000);
    const total = perRound.reduce((a, b) => a + b, 0);
    // 20 s at 250/s is 5,000; the phase slack of one round may add a little.
    t.true(total <= 5000 * 1.1, `sent ${total} in 20 s`);
    t.true(total >= 5000 * 0.75, `sent ${total} in 20 s`);
    // No burst: a round carries about 250 × 0.25 ≈ 63 probes, never the whole mesh.
    t.true(Math.max(...perRound) <= 130, `largest round ${Math.max(...perRound)}`);
    for (let i = 0; i < 1000; i++) {
      const h = p.health(`peer-${i}`);
      t.true((h?.sent ?? 0) >= 4, `peer-${i} probed ${h?.sent ?? 0} times in 20 s`);
    }
  } finally {
    await p.stop();
  }
});

test('a small mesh keeps the base interval (the bound only stretches it)', async (t) => {
  const clock = new ManualClock();
  const p = await boundProber(clock, PORT + 1);
  try {
    p.setTargets(targets(20));
    t.is(p.peerIntervalMs, 2000);
    const total = rounds(p, clock, 20_000).reduce((a, b) => a + b, 0);
    // 20 peers every 2 s for 20 s: 200 (±1 round of phase).
    t.true(total >= 180 && total <= 220, `sent ${total}`);
  } finally {
    await p.stop();
  }
});

test('maxProbesPerSecond must be positive', (t) => {
  const err = t.throws(() => new Prober({ clock: new ManualClock(), logger: silentLogger(), maxProbesPerSecond: 0 }));
  t.regex(err.message, /maxProbesPerSecond must be > 0, got 0/);
});
