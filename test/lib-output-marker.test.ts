// waitForOutput against real node children: the marker on stdout or stderr, an early exit, a deadline.
import test from 'ava';
import { spawn } from 'node:child_process';
import { OutputMarkerError, waitForOutput } from '../lib/output-marker.ts';

const node = (script: string) => spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });

test('resolves on the marker, from stdout or stderr', async (t) => {
  for (const stream of ['stdout', 'stderr']) {
    const c = node(`process.${stream}.write('boot\\nlistening on 1\\n'); setTimeout(() => {}, 60000)`);
    t.teardown(() => c.kill('SIGKILL'));
    await waitForOutput(c, 'listening', { timeoutMs: 20_000, what: `child on ${stream}` });
    t.is(c.exitCode, null, 'still running');
  }
});

test('an exit before the marker rejects, naming the child and what it printed', async (t) => {
  const c = node(`console.error('EADDRINUSE'); process.exit(3)`);
  const err = await t.throwsAsync(waitForOutput(c, 'listening', { timeoutMs: 20_000, what: 'TCP sink in a-p1' }), { instanceOf: OutputMarkerError });
  t.regex(err.message, /^TCP sink in a-p1 exited: EADDRINUSE/);
});

test('silence past the deadline rejects', async (t) => {
  const c = node(`setTimeout(() => {}, 60000)`);
  t.teardown(() => c.kill('SIGKILL'));
  const err = await t.throwsAsync(waitForOutput(c, 'listening', { timeoutMs: 300, what: 'quiet child' }), { instanceOf: OutputMarkerError });
  t.regex(err.message, /^quiet child did not start within 300 ms/);
});
