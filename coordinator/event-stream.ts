// The bounded JetStream stream that keeps recent mesh events (protocol/events.ts) for
// `crosslink events`: it captures every `<prefix>.events.>` publish, agents' included, and drops the
// oldest beyond EVENT_HISTORY. Created (or brought to these bounds) by every coordinator replica at
// start; failing to create it is a warning, never fatal — events are informational.
import { DiscardPolicy, jetstreamManager, RetentionPolicy, StorageType, type StreamConfig } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { EVENT_HISTORY, eventStreamName } from '../protocol/events.ts';

export interface EventStreamOptions {
  readonly bucket: string;
  readonly subjectPrefix: string;
  readonly replicas: number;
  readonly logger: Logger;
}

export function eventStreamConfig(o: Pick<EventStreamOptions, 'bucket' | 'subjectPrefix' | 'replicas'>): Partial<StreamConfig> & { name: string } {
  return {
    name: eventStreamName(o.bucket),
    description: 'Crosslink mesh events (bounded history)',
    subjects: [`${o.subjectPrefix}.events.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_msgs: EVENT_HISTORY.maxMsgs,
    max_bytes: EVENT_HISTORY.maxBytes,
    max_age: nanos(EVENT_HISTORY.maxAgeMs),
    num_replicas: o.replicas,
  };
}

/** Returns true when the stream exists with our bounds afterwards. */
export async function ensureEventStream(nc: NatsConnection, o: EventStreamOptions): Promise<boolean> {
  const config = eventStreamConfig(o);
  try {
    const jsm = await jetstreamManager(nc, { checkAPI: false });
    const existing = await jsm.streams.info(config.name).catch(() => null);
    if (existing === null) await jsm.streams.add(config);
    else {
      const { num_replicas: _replicas, ...bounds } = config;
      await jsm.streams.update(config.name, bounds);
    }
    return true;
  } catch (err) {
    o.logger.warn({ stream: config.name, err: errorMessage(err) }, 'cannot create the event stream; `crosslink events` will show no history');
    return false;
  }
}
