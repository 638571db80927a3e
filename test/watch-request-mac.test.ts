// Watch-request MACs (protocol/watch-request-mac.ts): K_watch is derived from the heartbeat MAC key K
// under its own label, so a heartbeat MAC over the same bytes does not pass for a watch request nor the
// other way round; the MAC covers the node name and sentAt of the headers as well as the body.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { heartbeatMacMatches, macHeartbeat } from '../protocol/heartbeat-mac.ts';
import { macWatchRequest, parseSentAtHeader, watchRequestMacInput, watchRequestMacKey, watchRequestMacMatches } from '../protocol/watch-request-mac.ts';

const K = randomBytes(32);
const BODY = Buffer.from(JSON.stringify({ kind: 'count', filter: 'nodes.>' }), 'utf8');
const SENT_AT = 1_764_800_000_000;

test('a watch request MAC passes under K_watch for the same node, sentAt and body', (t) => {
  const kWatch = watchRequestMacKey(K);
  const bytes = watchRequestMacInput('node-a', SENT_AT, BODY);
  t.true(watchRequestMacMatches(bytes, macWatchRequest(kWatch, bytes).toString('base64'), kWatch));
  t.notDeepEqual(kWatch, K);
  t.deepEqual(watchRequestMacKey(K), kWatch, 'derived deterministically');
});

test('domain separation: a heartbeat MAC (under K) over the same bytes does not pass as a watch request MAC, nor the other way round', (t) => {
  const kWatch = watchRequestMacKey(K);
  const bytes = watchRequestMacInput('node-a', SENT_AT, BODY);
  t.false(watchRequestMacMatches(bytes, macHeartbeat(bytes, K).toString('base64'), kWatch));
  t.false(watchRequestMacMatches(BODY, macHeartbeat(BODY, K).toString('base64'), kWatch));
  t.false(heartbeatMacMatches(bytes, macWatchRequest(kWatch, bytes).toString('base64'), K));
});

test('the header values are covered: another node name, sentAt or body makes the MAC fail', (t) => {
  const kWatch = watchRequestMacKey(K);
  const mac = macWatchRequest(kWatch, watchRequestMacInput('node-a', SENT_AT, BODY)).toString('base64');
  t.false(watchRequestMacMatches(watchRequestMacInput('node-b', SENT_AT, BODY), mac, kWatch), 'another name');
  t.false(watchRequestMacMatches(watchRequestMacInput('node-a', SENT_AT + 1, BODY), mac, kWatch), 'another sentAt');
  t.false(watchRequestMacMatches(watchRequestMacInput('node-a', SENT_AT, Buffer.from('{"kind":"count","filter":"services.>"}')), mac, kWatch), 'another body');
  t.false(watchRequestMacMatches(watchRequestMacInput('node-a', SENT_AT, BODY), mac, watchRequestMacKey(randomBytes(32))), 'another K');
  t.false(watchRequestMacMatches(watchRequestMacInput('node-a', SENT_AT, BODY), mac.slice(0, 20), kWatch), 'a truncated MAC');
});

test('the canonical bytes are unambiguous: a name cannot carry part of the sentAt or body across the separator', (t) => {
  t.notDeepEqual(watchRequestMacInput('a\n1', 2, BODY), watchRequestMacInput('a', 1, Buffer.concat([Buffer.from('2\n'), BODY])));
  t.notDeepEqual(watchRequestMacInput('a",1]\n', 2, BODY), watchRequestMacInput('a', 1, BODY));
});

test('a sentAt header is a non-negative integer of milliseconds, nothing else', (t) => {
  t.is(parseSentAtHeader(String(SENT_AT)), SENT_AT);
  for (const bad of ['', '-1', '1.5', '1e12', ' 1', '0x10', '99999999999999999']) t.is(parseSentAtHeader(bad), undefined, bad);
});
