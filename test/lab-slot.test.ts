// The big-lab slot (test/helpers/lab-slot.ts): one holder at a time, released for the next, a dead
// holder's slot taken over, and a bounded wait.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import test from 'ava';
import { takeBigLabSlot } from './helpers/lab-slot.ts';

function freshDir(t: { teardown: (fn: () => void) => void }): string {
  const base = mkdtempSync(join(tmpdir(), 'xl-slot-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  return join(base, 'slot');
}

test('one holder at a time: the second waits until the first releases', async (t) => {
  const dir = freshDir(t);
  const first = await takeBigLabSlot({ dir });
  const lines: string[] = [];
  t.is(await Promise.race([takeBigLabSlot({ dir, timeoutMs: 600, log: (l) => lines.push(l) }).then(() => 'gave up waiting'), new Promise((r) => setTimeout(r, 5000, 'hung'))]), 'gave up waiting');
  t.regex(lines.join('\n'), /still held after \d+ ms/);
  const second = takeBigLabSlot({ dir, timeoutMs: 10_000, log: (l) => lines.push(l) });
  first();
  const release = await second;
  t.true(existsSync(dir));
  release();
  t.false(existsSync(dir));
});

test('a holder that died (killed test run) leaves a slot the next run takes over at once', async (t) => {
  const dir = freshDir(t);
  const dead = spawnSync('true').pid;
  mkdirSync(dir);
  writeFileSync(join(dir, 'pid'), String(dead));
  const lines: string[] = [];
  const release = await takeBigLabSlot({ dir, timeoutMs: 5000, log: (l) => lines.push(l) });
  t.deepEqual(lines, []);
  release();
  t.false(existsSync(dir));
});
