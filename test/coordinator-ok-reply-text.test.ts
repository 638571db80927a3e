// coordinator/ok-reply-text.ts and the result counters of coordinator/metrics.ts: the per-heartbeat
// shortcuts (a cached reply text, labelled children resolved once) say exactly what the slow way did.
import test from 'ava';
import { CoordinatorMetrics } from '../coordinator/metrics.ts';
import { OkReplyText } from '../coordinator/ok-reply-text.ts';
import { HeartbeatReply } from '../protocol/messages.ts';

test('the ok reply text is JSON.stringify of the reply, with the current epoch, and follows a new epoch', (t) => {
  const r = new OkReplyText();
  t.is(r.text(undefined), JSON.stringify({ ok: true }));
  t.is(r.text('e1'), JSON.stringify({ ok: true, epoch: 'e1' }));
  t.is(r.text('e1'), JSON.stringify({ ok: true, epoch: 'e1' }));
  t.is(r.text('e2'), JSON.stringify({ ok: true, epoch: 'e2' }), 'a new term: the new epoch, not the cached one');
  t.is(r.text(undefined), JSON.stringify({ ok: true }));
  t.deepEqual(HeartbeatReply.parse(JSON.parse(r.text('e2'))), { ok: true, epoch: 'e2' });
});

test('heartbeat and registration counters: known results by name, follower for heartbeats only, anything else as other', async (t) => {
  const m = new CoordinatorMetrics({ processMetrics: false });
  m.heartbeat('ok');
  m.heartbeat('ok');
  m.heartbeat('follower');
  m.heartbeat('stale-epoch');
  m.heartbeat('no-such-code');
  m.registration('ok');
  m.registration('follower');
  const body = (await m.render()).body;
  const value = (series: string): string | undefined => new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(body)?.[1];
  t.is(value('crosslink_coordinator_heartbeats_total{result="ok"}'), '2');
  t.is(value('crosslink_coordinator_heartbeats_total{result="follower"}'), '1');
  t.is(value('crosslink_coordinator_heartbeats_total{result="stale-epoch"}'), '1');
  t.is(value('crosslink_coordinator_heartbeats_total{result="other"}'), '1');
  t.is(value('crosslink_coordinator_heartbeats_total{result="invalid"}'), '0', 'pre-created at 0');
  t.is(value('crosslink_coordinator_registrations_total{result="ok"}'), '1');
  t.is(value('crosslink_coordinator_registrations_total{result="other"}'), '1', 'follower is no registration result');
  t.is(value('crosslink_coordinator_registrations_total{result="follower"}'), undefined);
});
