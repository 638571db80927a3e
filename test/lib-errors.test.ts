import test from 'ava';
import { PartialFailureError, ValidationError, summarizeFailures } from '../lib/errors.ts';
import { formatDuration, parseDuration } from '../lib/duration.ts';
import { waitFor } from '../lib/wait.ts';
import { TimeoutError } from '../lib/errors.ts';

test('summarizeFailures groups by operation and shows the first error', (t) => {
  const msg = summarizeFailures([
    { op: 'add route', error: new Error('RTNETLINK answers: File exists') },
    { op: 'add route', error: new Error('other') },
    { op: 'remove peer', error: new Error('x') },
  ]);
  t.is(msg, '2 add route failures, 1 remove peer failure; first was: RTNETLINK answers: File exists');
  t.is(new PartialFailureError([{ op: 'set peer', error: new Error('e') }]).name, 'PartialFailureError');
});

test('ValidationError names field, value and what is allowed', (t) => {
  const e = new ValidationError('--listen-port', '70000', 'must be an integer from 1 to 65535');
  t.is(e.message, '--listen-port: "70000" is not valid; must be an integer from 1 to 65535');
  t.is(e.field, '--listen-port');
});

const durations: [string, number | undefined][] = [
  ['250ms', 250],
  ['10s', 10_000],
  ['1.5s', 1500],
  ['5m', 300_000],
  ['1h', 3_600_000],
  ['42', undefined],
  ['0', 0],
  ['1.5', undefined],
  ['90s', 90_000],
  ['1500ms', 1500],
  ['', undefined],
  ['-1s', undefined],
  ['10d', undefined],
  ['s', undefined],
];
for (const [text, ms] of durations) {
  test(`parseDuration(${JSON.stringify(text)}) (a unit is required; only 0 may go without)`, (t) => t.is(parseDuration(text), ms));
}

test('formatDuration picks the largest whole unit', (t) => {
  t.is(formatDuration(60_000), '1m');
  t.is(formatDuration(1500), '1500ms');
  t.is(formatDuration(5000), '5s');
});

test('waitFor returns the first truthy probe value', async (t) => {
  let n = 0;
  const v = await waitFor(() => (++n >= 3 ? n : undefined), { timeoutMs: 2000, intervalMs: 5, what: 'n' });
  t.is(v, 3);
});

test('waitFor times out with the last error', async (t) => {
  const err = await t.throwsAsync(
    waitFor(() => { throw new Error('not yet'); }, { timeoutMs: 50, intervalMs: 10, what: 'nothing' }),
    { instanceOf: TimeoutError },
  );
  t.regex(err?.message ?? '', /waiting for nothing; last error: not yet/);
});

test('checkDuration: the ms in bounds; otherwise what is allowed, with both readings of a bare number', async (t) => {
  const { checkDuration, durationFlag } = await import('../lib/duration.ts');
  const b = { minMs: 1000, maxMs: 3_600_000 };
  t.deepEqual(checkDuration('90s', b), { ms: 90_000 });
  t.deepEqual(checkDuration(' 2m ', b), { ms: 120_000 });
  t.deepEqual(checkDuration('1500', b), { allowed: 'a bare number has no unit: write 1500ms or 1500s (= 25m); a duration from 1s to 1h' });
  t.deepEqual(checkDuration('90', b), { allowed: 'a bare number has no unit: write 90ms or 90s; a duration from 1s to 1h' });
  t.deepEqual(checkDuration('120', b), { allowed: 'a bare number has no unit: write 120ms or 120s (= 2m); a duration from 1s to 1h' });
  t.deepEqual(checkDuration('soon', b), { allowed: 'use a number with a unit (ms, s, m, h), e.g. 1500ms, 90s or 2m; from 1s to 1h' });
  t.deepEqual(checkDuration('2h', b), { allowed: 'use a duration from 1s to 1h, e.g. 30s' });
  t.deepEqual(checkDuration('0', b), { allowed: 'use a duration from 1s to 1h, e.g. 30s' });
  t.deepEqual(checkDuration('0', { minMs: 0, maxMs: 60_000, zero: '0 disables' }), { ms: 0 });
  const err = t.throws(() => durationFlag('CROSSLINK_NODE_TTL (--node-ttl)', '1500', b), { instanceOf: ValidationError });
  t.is(err.field, 'CROSSLINK_NODE_TTL (--node-ttl)');
  t.is(err.value, '1500');
  t.regex(err.message, /^CROSSLINK_NODE_TTL \(--node-ttl\): "1500" is not valid; a bare number has no unit: write 1500ms or 1500s/);
});
