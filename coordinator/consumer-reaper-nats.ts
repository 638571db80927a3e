// The consumer reaper (consumer-reaper.ts) on a real NATS connection: the JetStream consumer API of
// the bucket's stream, and the server's consumer-created advisories as the fast path.
import { JetStreamApiCodes, JetStreamApiError, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Clock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { EventPublisher } from '../protocol/events.ts';
import { ConsumerReaper, consumerCreatedAdvisory, type ConsumerApi, type ConsumerView } from './consumer-reaper.ts';

/** The server's answer "consumer not found" (API error 10014) — not "stream not found" (10059) or any other. */
export function isConsumerNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound;
}

/** The part of nats.js's consumer API the reaper uses. */
export type NatsConsumers = Pick<JetStreamManager['consumers'], 'list' | 'info' | 'delete'>;

export function natsConsumerApi(consumers: NatsConsumers, stream: string): ConsumerApi {
  return {
    list: async () => {
      const out: ConsumerView[] = [];
      for await (const c of consumers.list(stream)) out.push(c);
      return out;
    },
    info: async (name) => {
      try {
        return await consumers.info(stream, name);
      } catch (err) {
        if (isConsumerNotFound(err)) return null;
        throw err;
      }
    },
    delete: async (name) => {
      try {
        return await consumers.delete(stream, name);
      } catch (err) {
        if (isConsumerNotFound(err)) return false;
        throw err;
      }
    },
  };
}

export interface RunningReaper {
  readonly reaper: ConsumerReaper;
  stop(): Promise<void>;
}

/** Subscribes to the advisories and starts sweeping; stop() ends both. */
export async function startConsumerReaper(o: { nc: NatsConnection; bucket: string; clock: Clock; logger: Logger; events?: EventPublisher | undefined; sweepIntervalMs?: number }): Promise<RunningReaper> {
  const stream = `KV_${o.bucket}`;
  const jsm = await jetstreamManager(o.nc, { checkAPI: false });
  const reaper = new ConsumerReaper({ stream, api: natsConsumerApi(jsm.consumers, stream), clock: o.clock, logger: o.logger, events: o.events, ...(o.sweepIntervalMs === undefined ? {} : { sweepIntervalMs: o.sweepIntervalMs }) });
  let sub: Subscription | undefined;
  try {
    sub = o.nc.subscribe(consumerCreatedAdvisory(stream), {
      callback: (err, msg) => {
        if (err) {
          o.logger.warn({ err: errorMessage(err) }, 'consumer reaper: advisory subscription error (the sweep goes on)');
          return;
        }
        const name = msg.subject.split('.').pop() ?? '';
        reaper.enqueue(name);
      },
    });
  } catch (err) {
    o.logger.warn({ err: errorMessage(err) }, 'consumer reaper: no advisories (the sweep goes on)');
  }
  reaper.start();
  return {
    reaper,
    stop: async () => {
      sub?.unsubscribe();
      await reaper.stop();
    },
  };
}
