// Shared by the tests that run against a real nats-server: one server per test file, and a fresh
// bucket and subject prefix per test so the tests of a file can run side by side on it.
import { randomBytes } from 'node:crypto';
import test from 'ava';
import { NatsServer } from '../../lib/nats-server.ts';

/** Starts a nats-server (JetStream) named `<label>-<random>` before the file's first test; stops it after the last. */
export function useNatsServer(label: string): () => NatsServer {
  let server: NatsServer | undefined;
  test.before(async () => {
    server = await NatsServer.start({ name: `${label}-${randomBytes(3).toString('hex')}` });
  });
  test.after.always(async () => {
    await server?.stop();
  });
  return () => {
    if (!server) throw new Error('nats-server not started');
    return server;
  };
}

/** One test's own corner of a shared server: `<bucketTag>_<id>` and subject prefix `xl.<id>.v1`. */
export function scratchNames(bucketTag: string): { readonly id: string; readonly bucket: string; readonly prefix: string } {
  const id = randomBytes(4).toString('hex');
  return { id, bucket: `${bucketTag}_${id}`, prefix: `xl.${id}.v1` };
}
