// The CLI's read-only NATS connection (no reconnects: a command either gets its answer or says why).
import { readFile } from 'node:fs/promises';
import { connect, credsAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';

export class NatsUnreachableError extends CrosslinkError {
  override name = 'NatsUnreachableError';
}

export async function connectForReading(o: { readonly servers: readonly string[]; readonly credsFile: string | null; readonly timeoutMs?: number }): Promise<NatsConnection> {
  const creds = o.credsFile === null ? undefined : new Uint8Array(await readFile(o.credsFile));
  try {
    return await connect({
      servers: [...o.servers],
      name: 'crosslink-cli',
      timeout: Math.min(o.timeoutMs ?? 5000, 5000),
      maxReconnectAttempts: 0,
      ...(creds === undefined ? {} : { authenticator: credsAuthenticator(creds) }),
    });
  } catch (err) {
    throw new NatsUnreachableError(`cannot connect to NATS at ${o.servers.join(',')}: ${errorMessage(err)}`, { cause: err });
  }
}
