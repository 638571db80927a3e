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
  ['42', 42_000],
  ['0', 0],
  ['1.5', 1500],
  ['', undefined],
  ['-1s', undefined],
  ['10d', undefined],
  ['s', undefined],
];
for (const [text, ms] of durations) {
  test(`parseDuration(${JSON.stringify(text)}) (a bare number is seconds)`, (t) => t.is(parseDuration(text), ms));
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
