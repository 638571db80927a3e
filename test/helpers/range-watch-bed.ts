// A test bed for the agent's watchers of one key range (the service and enrollment watches): a real
// nats-server on 127.0.0.1 holding the bucket (direct gets answer the stall looks and the catch-up
// pages), a FreezingSource in front of it (watches frozen, creates refused or held), a manual clock,
// the coordinator's key and an untrusted one. Used by watch-stall and watch-catch-up tests.
import { randomBytes } from 'node:crypto';
import type { ExecutionContext } from 'ava';
import type { KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { directWatchSource } from '../../agent/control/key-watch.ts';
import { NatsServer } from '../../lib/nats-server.ts';
import type { ServiceExportRecord } from '../../protocol/service.ts';
import { generateSigningKeyPair, signEnvelope, type SigningKeyPair } from '../../protocol/signing.ts';
import { openBucket } from '../agent-helpers.ts';
import { FreezingSource } from './freezable-watch.ts';
import { ManualClock } from './manual-clock.ts';

export const BUCKET = 'crosslink';
export const T0 = 1_700_000_000_000;

export interface Bed {
  readonly nc: NatsConnection;
  readonly kv: KV;
  readonly coordinator: SigningKeyPair;
  /** Signs like the coordinator but is not trusted. */
  readonly mallory: SigningKeyPair;
  readonly src: FreezingSource;
  readonly clock: ManualClock;
}

export async function bed(t: ExecutionContext, label: string): Promise<Bed> {
  const server = await NatsServer.start({ name: `xl-${label}-${randomBytes(3).toString('hex')}` });
  t.teardown(() => server.stop());
  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  const kv = await openBucket(nc, BUCKET);
  const clock = new ManualClock(T0);
  // Releases whatever still sleeps so stop() can finish (teardowns run last-in, first-out).
  t.teardown(() => clock.advance(3_600_000));
  return { nc, kv, coordinator: await generateSigningKeyPair(), mallory: await generateSigningKeyPair(), src: new FreezingSource(directWatchSource({ nc, bucket: BUCKET })), clock };
}

export const service = (name: string, cluster = 'east', generation = 1): ServiceExportRecord => ({
  kind: 'service-export', v: 1, namespace: 'shop', name, cluster, ports: [{ name: 'http', port: 80, protocol: 'TCP' }], addresses: ['10.1.0.5'],
  exportedBy: `${cluster}-n1`, createdAt: 1, updatedAt: 1, generation,
});

/** Puts `value` signed by `by`; the revision it got. */
export async function putSigned(kv: KV, key: string, value: unknown, by: SigningKeyPair): Promise<number> {
  return kv.put(key, JSON.stringify(await signEnvelope(value, by.secretKey)));
}
