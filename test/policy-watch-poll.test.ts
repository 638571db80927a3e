// The policy watch (agent/policy/policy-watch.ts) re-reads its key every pollIntervalMs of the
// INJECTED clock (lib/clock-timer.ts, not a real setInterval), so a version its watch never delivered
// (frozen: the consumer's server left the NATS cluster) is taken at the next re-read, not before. A
// real nats-server on 127.0.0.1 (the direct get), a freezable watch source, a manual clock.
import test from 'ava';
import { PolicyWatch } from '../agent/policy/policy-watch.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { parsePolicyYaml } from '../protocol/policy/yaml.ts';
import type { PolicyRecord } from '../protocol/policy/document.ts';
import { policyKeys } from '../protocol/policy/record.ts';
import { bed, BUCKET, putSigned, T0 } from './helpers/range-watch-bed.ts';

const record = (version: number): PolicyRecord => ({ kind: 'policy', v: 1, version, policy: parsePolicyYaml('default: deny\n'), setBy: 't', setAt: 1, sourceSha256: 'e'.repeat(64) });

test('a version the frozen watch never delivers is taken at the re-read every pollIntervalMs of the clock, not before', async (t) => {
  const b = await bed(t, 'polpoll');
  await putSigned(b.kv, policyKeys.current, record(1), b.coordinator);
  const w = new PolicyWatch({ nc: b.nc, bucket: BUCKET, coordinatorKeys: [b.coordinator.publicKey], logger: silentLogger(), clock: b.clock, watches: b.src, pollIntervalMs: 30_000 });
  w.start();
  t.teardown(() => w.stop());
  await waitFor(() => w.state().record?.version === 1 && b.src.created.length === 1, { timeoutMs: 10_000, what: 'version 1 through the watch' });

  for (const x of b.src.created) x.frozen = true;
  await putSigned(b.kv, policyKeys.current, record(2), b.coordinator);
  await waitFor(() => b.clock.hasSleeperAt(T0 + 30_000), { timeoutMs: 10_000, intervalMs: 20, what: 'the re-read armed on the clock' });
  b.clock.advanceTo(T0 + 29_999);
  await new Promise((r) => setImmediate(r));
  t.is(w.state().record?.version, 1, 'not taken before the re-read');
  b.clock.advanceTo(T0 + 30_000);
  await waitFor(() => w.state().record?.version === 2, { timeoutMs: 10_000, what: 'version 2 taken by the re-read' });
  t.true(b.clock.hasSleeperAt(T0 + 60_000), 'the next re-read armed');
});
