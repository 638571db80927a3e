// crosslink events' identity-key cache (cli/event-signers.ts): a node revoked or rebound while
// --follow runs must stop being credited — a key read once is not trusted for the whole run.
import test from 'ava';
import { cachedIdentityOf, KEY_MAX_AGE_MS } from '../cli/event-signers.ts';

function bucket(initial: Record<string, string>): { read: (name: string) => Promise<string | undefined>; records: Map<string, string>; reads: () => number } {
  const records = new Map(Object.entries(initial));
  let reads = 0;
  return {
    records,
    reads: () => reads,
    read: (name) => {
      reads++;
      return Promise.resolve(records.get(name));
    },
  };
}

test('a cached key is reused within its age, then read again: a revoked node (record deleted) is no longer credited', async (t) => {
  let now = 1_000;
  const b = bucket({ 'node-a': 'KEY-A' });
  const identityOf = cachedIdentityOf(b.read, () => now);
  t.is(await identityOf('node-a', false), 'KEY-A');
  t.is(b.reads(), 1);
  b.records.delete('node-a'); // revoked: the coordinator deletes nodes.node-a
  now += KEY_MAX_AGE_MS - 1;
  t.is(await identityOf('node-a', false), 'KEY-A', 'still within its age: from the cache');
  t.is(b.reads(), 1);
  now += 1;
  t.is(await identityOf('node-a', false), undefined, 'aged out: read again, and the record is gone');
  t.is(b.reads(), 2);
});

test('a name bound to another key: the old key is dropped after its age, never both accepted afterwards', async (t) => {
  let now = 0;
  const b = bucket({ 'node-a': 'OLD' });
  const identityOf = cachedIdentityOf(b.read, () => now, 5_000);
  t.is(await identityOf('node-a', false), 'OLD');
  b.records.set('node-a', 'NEW');
  // A signature that fails with the cached key makes the verifier ask fresh: the new key at once.
  t.is(await identityOf('node-a', true), 'NEW');
  now += 1_000;
  t.is(await identityOf('node-a', false), 'NEW', 'the fresh read replaced the cached key');
});

test('a miss or a failed read is not cached; a failed read rejects (it is not "no record")', async (t) => {
  const b = bucket({});
  let fail = true;
  const identityOf = cachedIdentityOf((n) => (fail ? Promise.reject(new Error('bucket unavailable')) : b.read(n)), () => 0);
  await t.throwsAsync(identityOf('node-b', false), { message: 'bucket unavailable' });
  fail = false;
  t.is(await identityOf('node-b', false), undefined);
  b.records.set('node-b', 'KEY-B');
  t.is(await identityOf('node-b', false), 'KEY-B', 'the node joined later: found on the next lookup');
});
