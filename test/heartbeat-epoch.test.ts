// The coordinator epoch (protocol/coordinator-epoch.ts, coordinator/heartbeat-epoch.ts) and the
// agent's heartbeat schedule (agent/control/heartbeat-schedule.ts): pure rules, table-tested.
import test from 'ava';
import { CoordinatorEpoch, mintEpoch } from '../protocol/coordinator-epoch.ts';
import { epochRefusal, followerMayRecord } from '../coordinator/heartbeat-epoch.ts';
import { announcedHeartbeatDelayMs, FLAT_RETRIES, HEARTBEAT_RETRY_BACKOFF, heartbeatDelayMs, heartbeatRetryDelayMs, MAX_IMMEDIATE_RESENDS, nextHeartbeatDelayMs } from '../agent/control/heartbeat-schedule.ts';
import { backoffDelay, jittered } from '../lib/backoff.ts';
import { Heartbeat, HeartbeatReply } from '../protocol/messages.ts';

test('mintEpoch: the lease revision plus 64 random bits; two terms of one revision still differ', (t) => {
  const a = mintEpoch(42);
  const b = mintEpoch(42);
  t.regex(a, /^42\.[0-9a-f]{16}$/);
  t.not(a, b);
  t.true(CoordinatorEpoch.safeParse(a).success);
  t.is(mintEpoch(7, () => Buffer.from('0011223344556677', 'hex')), '7.0011223344556677');
});

test('CoordinatorEpoch refuses what is not a token, naming what is allowed', (t) => {
  for (const bad of ['', 'a b', 'x'.repeat(65), '1/2']) {
    const r = CoordinatorEpoch.safeParse(bad);
    t.false(r.success, bad);
  }
  const r = Heartbeat.safeParse({ v: 1, name: 'n', identityKey: `${'A'.repeat(43)}=`, generation: 0, sentAt: 1, epoch: 'a b' });
  t.false(r.success);
  t.regex(r.error?.issues[0]?.message ?? '', /coordinator epoch token/);
});

test('epochRefusal: the current epoch counts; another is stale-epoch, none is epoch-required (both naming the current one); none counts only with the requirement off', (t) => {
  t.is(epochRefusal('5.aa', '5.aa', true), undefined);
  t.is(epochRefusal('5.aa', '5.aa', false), undefined);
  const r = epochRefusal('4.bb', '5.aa', true);
  t.like(r, { code: 'stale-epoch', field: 'epoch' });
  t.regex(r?.message ?? '', /"4\.bb" is not the coordinator's current epoch "5\.aa"/);
  t.like(epochRefusal('4.bb', '5.aa', false), { code: 'stale-epoch' }, 'the setting only concerns heartbeats without an epoch');
  // No epoch: an agent older than the epoch, or a heartbeat captured from one and replayed.
  const missing = epochRefusal(undefined, '5.aa', true);
  t.like(missing, { code: 'epoch-required', field: 'epoch' });
  t.regex(missing?.message ?? '', /^epoch: missing; .*current epoch "5\.aa" \(--require-heartbeat-epoch is on\)/);
  t.is(epochRefusal(undefined, '5.aa', false), undefined, '--require-heartbeat-epoch off: the older rules');
  // Both refusals with the epoch are valid replies (the agent learns the epoch from them).
  t.true(HeartbeatReply.safeParse({ ok: false, error: r, epoch: '5.aa' }).success);
  t.true(HeartbeatReply.safeParse({ ok: false, error: missing, epoch: '5.aa' }).success);
});

test('followerMayRecord: only the announced epoch, only heartbeats sent after the replica started; none only with the requirement off', (t) => {
  const startedAt = 1000;
  t.true(followerMayRecord({ epoch: 'e1', sentAt: 1001 }, 'e1', startedAt, true));
  t.false(followerMayRecord({ epoch: 'e0', sentAt: 1001 }, 'e1', startedAt, true), 'an earlier epoch');
  t.false(followerMayRecord({ epoch: 'e1', sentAt: 1001 }, undefined, startedAt, true), 'no leader announced yet');
  t.false(followerMayRecord({ epoch: 'e1', sentAt: 1000 }, 'e1', startedAt, true), 'sent before this replica started: it has no mark for it');
  t.false(followerMayRecord({ sentAt: 1001 }, 'e1', startedAt, true), 'no epoch, required');
  t.true(followerMayRecord({ sentAt: 1001 }, 'e1', startedAt, false), 'an older agent without epoch, requirement off');
  t.false(followerMayRecord({ sentAt: 999 }, 'e1', startedAt, false));
});

test('heartbeatRetryDelayMs: flat 1 s ×0.5–1.5 for five failures, then 2 s and 3 s, never over the interval', (t) => {
  const rows: [failures: number, interval: number, random: number, want: number][] = [
    [1, 15_000, 0, 500],
    [1, 15_000, 0.5, 1000],
    [2, 15_000, 0.5, 1000],
    [5, 15_000, 0.999_999, 1500],
    [6, 15_000, 0.5, 2000],
    [7, 15_000, 0.5, 3000],
    [40, 15_000, 0.999_999, 4500],
    [3, 800, 0.999_999, 800],
  ];
  for (const [failures, interval, random, want] of rows) t.is(heartbeatRetryDelayMs(failures, interval, random), want, `failures ${failures}, random ${random}`);
});

test('the heartbeat schedule is lib/backoff\'s: retries are backoffDelay after the flat ones, the interval is jittered ±10 %', (t) => {
  for (const random of [0, 0.25, 0.5, 0.75, 0.999_999]) {
    for (let failures = 1; failures <= 12; failures++) {
      const lib = backoffDelay(HEARTBEAT_RETRY_BACKOFF, Math.max(1, failures - FLAT_RETRIES + 1), () => random);
      t.is(heartbeatRetryDelayMs(failures, 60_000, random), lib, `failures ${failures}, random ${random}`);
      t.is(heartbeatRetryDelayMs(failures, 1200, random), Math.min(1200, lib), 'capped at the interval');
    }
    t.is(heartbeatDelayMs('interval', 15_000, random), jittered(15_000, 0.1, random));
  }
  t.deepEqual([0, 0.5, 0.999_999].map((r) => heartbeatDelayMs('interval', 10_000, r)), [9000, 10_000, 11_000]);
});

test('nextHeartbeatDelayMs: stale-epoch resends at once twice in a row, then backs off like a failure', (t) => {
  const o = { failures: 0, intervalMs: 10_000, random: 0.5 };
  t.is(nextHeartbeatDelayMs('answered', { ...o, resends: 0 }), 10_000);
  t.is(nextHeartbeatDelayMs('resend', { ...o, resends: 1 }), 0);
  t.is(nextHeartbeatDelayMs('resend', { ...o, resends: MAX_IMMEDIATE_RESENDS }), 0);
  t.is(nextHeartbeatDelayMs('resend', { ...o, resends: MAX_IMMEDIATE_RESENDS + 1 }), 1000);
  t.is(nextHeartbeatDelayMs('unanswered', { ...o, failures: 1, resends: 0 }), 1000);
});

test('announcedHeartbeatDelayMs: a random moment within the spread the leader announced', (t) => {
  t.is(announcedHeartbeatDelayMs(1000, 0), 0);
  t.is(announcedHeartbeatDelayMs(1000, 0.5), 500);
  t.is(announcedHeartbeatDelayMs(1000, 0.999), 999);
  t.is(announcedHeartbeatDelayMs(-5, 0.5), 0);
});
