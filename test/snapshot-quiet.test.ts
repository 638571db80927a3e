// When the watch library does not tell how many entries a snapshot holds (initialCount() undefined),
// the service watch and MeshWatch end the snapshot after a quiet second of their INJECTED clock
// (lib/clock-timer.ts, not a bare setTimeout), re-armed by each entry. A fake watch source (one
// entry, then silence), a manual clock; stall detection, catch-up and the audit off (their sleeps
// are not the ones read here).
import test, { type ExecutionContext } from 'ava';
import type { KvWatchEntry } from '@nats-io/kv';
import type { KeyWatch, KeyWatchSource } from '../agent/control/key-watch.ts';
import { MeshWatch } from '../agent/control/mesh-watch.ts';
import { ServiceWatch } from '../agent/services/service-watch.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { serviceKeys } from '../protocol/service.ts';
import { generateSigningKeyPair, signEnvelope } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { nodeRecord } from './agent-helpers.ts';
import { service, T0 } from './helpers/range-watch-bed.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { quietConnection } from './helpers/scripted-status.ts';

const entry = (key: string, value: string, revision: number): KvWatchEntry =>
  ({ key, value: new TextEncoder().encode(value), revision, operation: 'PUT', isUpdate: false }) as unknown as KvWatchEntry;

/** Every watch it makes delivers `entries[filter]` and then nothing until stopped, its snapshot size unknown. */
function silentAfter(entries: Readonly<Record<string, readonly KvWatchEntry[]>>): KeyWatchSource & { delivered: number } {
  const src = {
    delivered: 0,
    watch: ({ key }: { key: string }): Promise<KeyWatch> => {
      let stop: () => void = () => undefined;
      const stopped = new Promise<void>((r) => (stop = r));
      return Promise.resolve({
        stop,
        initialCount: () => Promise.resolve(undefined),
        async *[Symbol.asyncIterator]() {
          for (const e of entries[key] ?? []) {
            src.delivered++;
            yield e;
          }
          await stopped;
        },
      });
    },
  };
  return src as unknown as KeyWatchSource & { delivered: number };
}

const OFF = { progressCheckMs: 0, catchUpAfterMs: 0 };

/** The one entry is in and the quiet timer armed on the clock; the snapshot is not over at 999 ms of quiet, and is at 1000. */
async function endsAfterQuietSecond(t: ExecutionContext, clock: ManualClock, src: { delivered: number }, synced: () => boolean): Promise<void> {
  await waitFor(() => src.delivered === 1 && clock.hasSleeperAt(T0 + 1000), { timeoutMs: 10_000, intervalMs: 20, what: 'the entry in and the quiet timer armed on the clock' });
  clock.advanceTo(T0 + 999);
  // The timer fires within the run of microtasks its sleep resolves: one macrotask turn would show it.
  await new Promise((r) => setImmediate(r));
  t.false(synced(), 'not before a quiet second');
  clock.advanceTo(T0 + 1000);
  await waitFor(synced, { timeoutMs: 10_000, intervalMs: 20, what: 'the snapshot ended by the quiet second' });
}

test('service watch: a snapshot of unknown size ends after a quiet second of the clock, not before', async (t) => {
  const clock = new ManualClock(T0);
  t.teardown(() => clock.advance(3_600_000));
  const key = await generateSigningKeyPair();
  const k = serviceKeys.export('shop', 'a', 'east');
  const src = silentAfter({ [serviceKeys.filter]: [entry(k, JSON.stringify(await signEnvelope(service('a'), key.secretKey)), 1)] });
  const w = new ServiceWatch({ nc: quietConnection(), bucket: 'b', coordinatorKey: key.publicKey, logger: silentLogger(), clock, watches: src, ...OFF });
  w.start();
  t.teardown(() => w.stop());
  await endsAfterQuietSecond(t, clock, src, () => w.synced);
  t.deepEqual([...w.current().keys()], [k]);
});

test('MeshWatch: a snapshot of unknown size ends after a quiet second of the clock, not before', async (t) => {
  const clock = new ManualClock(T0);
  t.teardown(() => clock.advance(3_600_000));
  const key = await generateSigningKeyPair();
  const node = await nodeRecord({ name: 'node-a' });
  const src = silentAfter({ [kvKeys.nodesFilter]: [entry(kvKeys.node('node-a'), JSON.stringify(await signEnvelope(node, key.secretKey)), 1)] });
  const w = new MeshWatch({ nc: quietConnection(), watches: src, bucket: 'b', coordinatorKey: key.publicKey, logger: silentLogger(), clock, debounceMs: 0, auditIntervalMs: 0, ...OFF });
  w.start();
  t.teardown(() => w.stop());
  await endsAfterQuietSecond(t, clock, src, () => w.synced);
  t.true(w.snapshot().nodes.has('node-a'));
});
