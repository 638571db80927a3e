// Every retry of the KV watches is spread (agent/control/rewatch-jitter.ts watchRetryPolicy: the
// exponential backoff b = min(retryMaxMs, retryMinMs · 2^(n−1)) spread to [0.5 b, 1.5 b] by the
// injected random source, lib/backoff.ts jittered), so agents whose creates failed together — the
// same NATS server lost — do not retry in lockstep: MeshWatch's session retries and its push-watch
// creates while following by catch-up, the service watch's session retries and push-watch creates
// (range-resume.ts, catch-up-handover.ts), and the policy watch's re-creations. A fake source refuses
// every create; a manual clock; the delays are read from when the creates were asked. The
// rate-limited retryAfterMs stays a floor.
import test from 'ava';
import { WatchBrokerError } from '../agent/control/brokered-watch.ts';
import type { CatchUpOptions, KeyWatch, KeyWatchSource, KvCatchUpPage } from '../agent/control/key-watch.ts';
import { MeshWatch } from '../agent/control/mesh-watch.ts';
import { ServiceWatch } from '../agent/services/service-watch.ts';
import { PolicyWatch } from '../agent/policy/policy-watch.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { quietConnection } from './helpers/scripted-status.ts';

const T0 = 1_700_000_000_000;
/** Catch-up polls this far apart, and the catch-up's wait for a slow create this long: their sleeps (at T0 + POLL_MS or later) are never a retry read here. */
const POLL_MS = 3_600_000;
/** Retry backoff 1 s doubling to 4 s. */
const RETRY = { retryMinMs: 1000, retryMaxMs: 4000 } as const;
/** Just below 1: the top of [0, 1). */
const TOP = 1 - 1e-9;

/** Refuses every create (with `refusal`), remembering when it was asked; catch-up pages are empty. */
class RefusingSource implements KeyWatchSource {
  readonly askedAt: number[] = [];
  constructor(
    private readonly clock: ManualClock,
    private readonly refusal: () => Error = () => new WatchBrokerError('unavailable', 'the watch broker refused: cannot create the watch: timeout; retry'),
  ) {}
  watch(): Promise<KeyWatch> {
    this.askedAt.push(this.clock.now());
    return Promise.reject(this.refusal());
  }
  count(): ReturnType<KeyWatchSource['count']> {
    return Promise.reject(new Error('not used'));
  }
  catchUp(_o: CatchUpOptions): Promise<KvCatchUpPage> {
    return Promise.resolve({ entries: [], more: false });
  }
  /** Distinct moments a create was asked at (MeshWatch asks once per range). */
  times(): number[] {
    return [...new Set(this.askedAt)];
  }
}

interface Watcher {
  start(): void;
  stop(): Promise<void>;
}

type Kind = 'mesh session' | 'mesh push retry' | 'service session' | 'service push retry' | 'policy session';

/** A watcher of `kind` on `src`: catch-up on for the push retries (a refused create is followed by catch-up at once), off for the session retries. */
async function watcherOf(kind: Kind, src: RefusingSource, clock: ManualClock, random: () => number): Promise<Watcher> {
  const catchUp = kind.endsWith('push retry') ? { catchUpAfterMs: POLL_MS, catchUpIntervalMs: POLL_MS } : { catchUpAfterMs: 0 };
  const common = { nc: quietConnection(), bucket: 'b', logger: silentLogger(), clock, watches: src, random, rewatchJitterMs: 0, progressCheckMs: 0, ...RETRY, ...catchUp };
  const key = await generateSigningKeyPair();
  if (kind.startsWith('mesh')) return new MeshWatch({ ...common, coordinatorKey: key.publicKey, debounceMs: 0, auditIntervalMs: 0 });
  // The policy key's periodic re-read (a direct get) out of the way, as the catch-up's polls.
  if (kind.startsWith('policy')) return new PolicyWatch({ nc: common.nc, bucket: common.bucket, logger: common.logger, clock, watches: src, random, ...RETRY, coordinatorKeys: [key.publicKey], pollIntervalMs: POLL_MS });
  return new ServiceWatch({ ...common, coordinatorKey: key.publicKey });
}

/** The first `n` delays between creates (each retry's sleep is awaited being armed, then the clock moved to it). */
async function retryDelays(kind: Kind, random: () => number, n: number, refusal?: () => Error): Promise<number[]> {
  const clock = new ManualClock(T0);
  const src = new RefusingSource(clock, refusal);
  const w = await watcherOf(kind, src, clock, random);
  w.start();
  try {
    for (let i = 1; i <= n; i++) {
      await waitFor(() => src.times().length === i, { timeoutMs: 10_000, intervalMs: 1, what: `${kind}: create ${i}` });
      // The retry's sleep: the one armed after now and before the catch-up's.
      const due = await waitFor(() => clock.wakeups.find((at) => at > clock.now() && at < T0 + POLL_MS), { timeoutMs: 10_000, intervalMs: 1, what: `${kind}: retry ${i} armed (armed: ${clock.wakeups.map((at) => at - T0).join(', ')})` });
      clock.advanceTo(due);
    }
    await waitFor(() => src.times().length === n + 1, { timeoutMs: 10_000, intervalMs: 1, what: `${kind}: create ${n + 1}` });
    const times = src.times();
    return times.slice(1).map((at, i) => at - (times[i] ?? 0));
  } finally {
    const stopped = w.stop();
    clock.advance(10 * POLL_MS);
    await stopped;
  }
}

/** The unspread backoff before each of the first four retries: MeshWatch's loops and the handover from 1× the minimum, superviseWithBackoff's sessions from 2×. */
const BASES: Record<Kind, readonly number[]> = {
  'mesh session': [1000, 2000, 4000, 4000],
  'mesh push retry': [1000, 2000, 4000, 4000],
  'service session': [2000, 4000, 4000, 4000],
  'service push retry': [1000, 2000, 4000, 4000],
  'policy session': [2000, 4000, 4000, 4000],
};
const KINDS = Object.keys(BASES) as Kind[];

for (const kind of KINDS) {
  const bases = BASES[kind];
  test(`${kind}: the random source at its extremes puts every retry at the bounds, 0.5× and 1.5× the backoff`, async (t) => {
    t.deepEqual(await retryDelays(kind, () => 0, bases.length), bases.map((b) => b / 2));
    t.deepEqual(await retryDelays(kind, () => TOP, bases.length), bases.map((b) => b * 1.5));
  });

  test(`${kind}: two agents with different random sources retry at different moments, each within [0.5×, 1.5×] the backoff`, async (t) => {
    const [a, b] = await Promise.all([retryDelays(kind, () => 0.3, bases.length), retryDelays(kind, () => 0.8, bases.length)]);
    t.deepEqual(a, bases.map((x) => x * 0.8));
    t.deepEqual(b, bases.map((x) => x * 1.3));
    let atA = 0;
    let atB = 0;
    for (const [i, base] of bases.entries()) {
      atA += a[i] ?? 0;
      atB += b[i] ?? 0;
      t.not(atA, atB, `retry ${i + 1} at a different moment`);
      for (const d of [a[i] ?? 0, b[i] ?? 0]) t.true(d >= base / 2 && d <= base * 1.5, `${d} ms within [${base / 2}, ${base * 1.5}]`);
    }
  });
}

test('a rate-limited refusal\'s retryAfterMs stays the floor under the spread: never asked before it, the spread when that is longer', async (t) => {
  const rateLimited = (): Error => new WatchBrokerError('rate-limited', 'the watch broker refused: too many watch requests; retry in 1200 ms', 1200);
  for (const kind of KINDS) {
    const bases = BASES[kind];
    const floored = (r: number): number[] => bases.map((b) => Math.max(1200, Math.round(b * (0.5 + r))));
    t.deepEqual(await retryDelays(kind, () => 0, bases.length, rateLimited), floored(0), `${kind}, random 0`);
    t.deepEqual(await retryDelays(kind, () => TOP, bases.length, rateLimited), floored(1), `${kind}, random at the top`);
  }
});
