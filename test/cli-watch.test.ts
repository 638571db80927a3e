// `--watch`: frames until the signal aborts; the exit code is the last frame's; a terminal gets a
// screen clear per frame, a pipe gets timestamped separators (no escape codes).
import test from 'ava';
import { watch } from '../cli/watch.ts';

async function run(isTTY: boolean): Promise<{ out: string; code: number; frames: number }> {
  const stop = new AbortController();
  let out = '';
  let frames = 0;
  const code = await watch({ intervalMs: 100, signal: stop.signal, isTTY, now: () => Date.UTC(2026, 0, 1), stdout: (s) => (out += s) }, () => {
    frames++;
    if (frames === 3) stop.abort();
    return Promise.resolve({ text: `frame ${frames}\n`, code: frames === 3 ? 1 : 0 });
  });
  return { out, code, frames };
}

test('piped: three frames with separators, no escape codes, exit code of the last frame', async (t) => {
  const r = await run(false);
  t.is(r.frames, 3);
  t.is(r.code, 1);
  t.false(r.out.includes('\u001b'));
  t.is(r.out.split('--- 2026-01-01T00:00:00.000Z (every 0.1s').length - 1, 3);
  t.regex(r.out, /frame 1\n\n--- .*exit 0\)\nframe 2\n\n--- .*exit 1\)\nframe 3\n$/);
});

test('terminal: each frame clears the screen', async (t) => {
  const r = await run(true);
  t.is(r.out, '\u001b[H\u001b[2Jframe 1\n\u001b[H\u001b[2Jframe 2\n\u001b[H\u001b[2Jframe 3\n');
});

test('a signal aborted before the start shows nothing', async (t) => {
  const stop = new AbortController();
  stop.abort();
  let out = '';
  const code = await watch({ intervalMs: 1000, signal: stop.signal, isTTY: false, now: () => 0, stdout: (s) => (out += s) }, () => Promise.resolve({ text: 'x\n', code: 0 }));
  t.is(code, 0);
  t.is(out, '');
});

test('one error prefix: commander usage errors and our own errors both start with "crosslink: "', async (t) => {
  const { runCli } = await import('../cli/main.ts');
  const { captureIo } = await import('./helpers/cli-io.ts');
  const usage = captureIo();
  t.is(await runCli(['status', '--bogus'], usage), 2);
  t.regex(usage.err(), /^crosslink: unknown option '--bogus'/);
  t.notRegex(usage.err(), /^error:/m);
  const ours = captureIo();
  t.is(await runCli(['events'], ours), 2);
  // Our own validation error (events needs a NATS URL and the coordinator key; whichever is checked first).
  t.regex(ours.err(), /^crosslink: --(nats-url|coordinator-key): \(missing\) is not valid; required/);
  t.notRegex(ours.err(), /^error:/m);
});

test('a bare number is no duration: `status --watch 5` is refused before anything is asked of the agent', async (t) => {
  const { runCli } = await import('../cli/main.ts');
  const { captureIo } = await import('./helpers/cli-io.ts');
  const io = captureIo();
  t.is(await runCli(['status', '--watch', '5', '--socket', '/nonexistent/xl.sock'], io), 2);
  t.is(io.err().trim(), 'crosslink: --watch: "5" is not valid; a bare number has no unit: write 5ms or 5s; a duration from 0 to 1m (0 disables)');
});
