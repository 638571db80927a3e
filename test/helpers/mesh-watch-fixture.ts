// A MeshWatch on its own real nats-server (JetStream), over the 'crosslink' bucket and a fresh
// coordinator key; each test file passes only the connection and watch options it cares about.
import { randomBytes } from 'node:crypto';
import type { ExecutionContext } from 'ava';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import { MeshWatch, type MeshWatchOptions } from '../../agent/control/mesh-watch.ts';
import { systemClock } from '../../lib/clock.ts';
import { silentLogger } from '../../lib/logger.ts';
import { NatsServer } from '../../lib/nats-server.ts';
import { generateSigningKeyPair, type SigningKeyPair } from '../../protocol/signing.ts';
import { openBucket } from '../agent-helpers.ts';

export const WATCH_BUCKET = 'crosslink';

export interface WatchFixture {
  readonly server: NatsServer;
  /** The watcher's connection. */
  readonly nc: NatsConnection;
  readonly kv: KV;
  readonly coordinator: SigningKeyPair;
  /** Not started: the test fills the bucket first, then calls watch.start(). */
  readonly watch: MeshWatch;
  /** How many times the watch has reported a change so far. */
  readonly changes: number;
}

export interface WatchFixtureOptions {
  /** nats-server name prefix (`xl-…`); a random part is appended. */
  readonly label: string;
  /** Over nc, bucket, coordinator key, a silent logger and the system clock. */
  readonly watch?: Partial<Omit<MeshWatchOptions, 'nc' | 'bucket' | 'coordinatorKey'>>;
  /** Over `servers`; the client's defaults otherwise. */
  readonly connect?: Omit<NodeConnectionOptions, 'servers'>;
}

/** Starts the server, connects, creates the bucket and builds the watch; all is stopped when the test ends. */
export async function startWatchFixture(t: ExecutionContext, o: WatchFixtureOptions): Promise<WatchFixture> {
  const server = await NatsServer.start({ name: `${o.label}-${randomBytes(3).toString('hex')}` });
  // Each part gets its teardown as soon as it exists, so a half-built fixture is cleaned up too;
  // ava runs teardowns last-in, first-out: the watch stops before its connection, that before the server.
  t.teardown(() => server.stop());
  const nc = await connect({ ...o.connect, servers: server.url });
  t.teardown(() => nc.close());
  const kv = await openBucket(nc, WATCH_BUCKET);
  const coordinator = await generateSigningKeyPair();
  const watch = new MeshWatch({
    logger: silentLogger(),
    clock: systemClock,
    ...o.watch,
    nc,
    bucket: WATCH_BUCKET,
    coordinatorKey: coordinator.publicKey,
  });
  t.teardown(() => watch.stop());
  let changes = 0;
  watch.onSnapshot(() => changes++);
  return {
    server,
    nc,
    kv,
    coordinator,
    watch,
    get changes() {
      return changes;
    },
  };
}

/** A second client that changes the bucket, e.g. while the watcher's connection is still away after a restart. */
export async function otherClient(t: ExecutionContext, server: NatsServer): Promise<{ nc: NatsConnection; kv: KV }> {
  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  return { nc, kv: await new Kvm(nc).open(WATCH_BUCKET) };
}
