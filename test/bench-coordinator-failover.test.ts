// The coordinator failover bench's phases (bench/coordinator-failover-phases.ts), read from the
// follower's pino lines: lines before the kill never count, a missing line is NaN.
import test from 'ava';
import { coordinatorFailoverPhases } from '../bench/coordinator-failover-phases.ts';
import { parsePinoLog } from '../bench/failover-breakdown.ts';

const line = (time: number, msg: string, fields: Record<string, unknown> = {}): string => JSON.stringify({ level: 30, time, msg, ...fields });

test('phases: lease expiry from the last renewal, then took / loaded / announced with its spread, after the kill only', (t) => {
  const t0 = 50_000;
  const lines = parsePinoLog(
    [
      line(40_000, 'became leader'),
      line(40_100, 'state loaded from the bucket'),
      line(52_600, 'became leader'),
      line(53_000, 'state loaded from the bucket', { from: 'warm copy' }),
      line(53_100, 'announced the new leader: agents heartbeat within the spread', { spreadMs: 1000 }),
    ].join('\n'),
  );
  const p = coordinatorFailoverPhases(lines, { t0, lastRenewalAt: 49_500, leaseTtlMs: 3000 });
  t.deepEqual(p, { expires: 2500, took: 2600, loaded: 3000, announced: 3100, spreadMs: 1000, loadedFrom: 'warm copy' });
  const none = coordinatorFailoverPhases(lines.slice(0, 2), { t0, lastRenewalAt: NaN, leaseTtlMs: 3000 });
  t.true([none.expires, none.took, none.loaded, none.announced, none.spreadMs].every(Number.isNaN));
  t.is(none.loadedFrom, '-');
});
