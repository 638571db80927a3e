// The coordinator epoch (protocol/coordinator-epoch.ts, coordinator/heartbeat-epoch.ts) and the
// agent's heartbeat schedule (agent/control/heartbeat-schedule.ts): pure rules, table-tested.
import test from 'ava';
import { CoordinatorEpoch, mintEpoch } from '../protocol/coordinator-epoch.ts';
import { epochRefusal, followerMayRecord } from '../coordinator/heartbeat-epoch.ts';
import { announcedHeartbeatDelayMs, heartbeatRetryDelayMs, MAX_IMMEDIATE_RESENDS, nextHeartbeatDelayMs } from '../agent/control/heartbeat-schedule.ts';
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

test('epochRefusal: the current epoch and no epoch (an older agent) count; any other is stale-epoch, naming both', (t) => {
  t.is(epochRefusal('5.aa', '5.aa'), undefined);
  t.is(epochRefusal(undefined, '5.aa'), undefined);
  const r = epochRefusal('4.bb', '5.aa');
  t.like(r, { code: 'stale-epoch', field: 'epoch' });
  t.regex(r?.message ?? '', /"4\.bb" is not the coordinator's current epoch "5\.aa"/);
  // A stale-epoch refusal with the epoch is a valid reply for old and new agents' schema.
  t.true(HeartbeatReply.safeParse({ ok: false, error: r, epoch: '5.aa' }).success);
});

test('followerMayRecord: only the announced epoch, only heartbeats sent after the replica started', (t) => {
  const startedAt = 1000;
  t.true(followerMayRecord({ epoch: 'e1', sentAt: 1001 }, 'e1', startedAt));
  t.false(followerMayRecord({ epoch: 'e0', sentAt: 1001 }, 'e1', startedAt), 'an earlier epoch');
  t.false(followerMayRecord({ epoch: 'e1', sentAt: 1001 }, undefined, startedAt), 'no leader announced yet');
  t.false(followerMayRecord({ epoch: 'e1', sentAt: 1000 }, 'e1', startedAt), 'sent before this replica started: it has no mark for it');
  t.true(followerMayRecord({ sentAt: 1001 }, 'e1', startedAt), 'an older agent without epoch');
  t.false(followerMayRecord({ sentAt: 999 }, 'e1', startedAt));
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
