// pidsInNamespaces must agree with `ip netns pids` (the oracle) for namespaces with and without
// processes, and for names that do not exist.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import test from 'ava';
import { execa } from 'execa';
import { pidsInNamespaces } from '../lab/netns-pids.ts';
import { waitFor } from '../lib/wait.ts';

test('finds the processes of each namespace, as ip netns pids does', async (t) => {
  const id = randomBytes(3).toString('hex');
  const busy = `xl-np${id}-a`;
  const empty = `xl-np${id}-b`;
  await execa('ip', ['netns', 'add', busy]);
  await execa('ip', ['netns', 'add', empty]);
  const child = spawn('ip', ['netns', 'exec', busy, 'sleep', '60'], { stdio: 'ignore' });
  try {
    const oracle = async (): Promise<number[]> => (await execa('ip', ['netns', 'pids', busy])).stdout.split('\n').filter(Boolean).map(Number);
    await waitFor(async () => (await oracle()).length === 1, { timeoutMs: 10_000, what: 'sleep running in the namespace' });
    const found = await pidsInNamespaces([busy, empty, `xl-np${id}-missing`]);
    t.deepEqual(found.get(busy), await oracle());
    t.deepEqual(found.get(empty), []);
    t.deepEqual(found.get(`xl-np${id}-missing`), []);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
    await execa('ip', ['netns', 'del', busy], { reject: false });
    await execa('ip', ['netns', 'del', empty], { reject: false });
  }
});
