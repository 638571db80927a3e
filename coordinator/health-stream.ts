// The stream keeping the latest health summary of each node (protocol/health-summary.ts): one
// message per subject, dropped after HEALTH_SUMMARY_MAX_AGE_MS. Like the event stream, created by
// every coordinator replica at start; a failure is a warning only.
import { DiscardPolicy, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { HEALTH_SUMMARY_MAX_AGE_MS, healthStreamName } from '../protocol/health-summary.ts';

export async function ensureHealthStream(nc: NatsConnection, o: { bucket: string; subjectPrefix: string; replicas: number; logger: Logger }): Promise<boolean> {
  const name = healthStreamName(o.bucket);
  const bounds = {
    description: 'Crosslink node health summaries (latest per node)',
    subjects: [`${o.subjectPrefix}.health.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.Memory,
    discard: DiscardPolicy.Old,
    max_msgs_per_subject: 1,
    max_bytes: 64 * 1024 * 1024,
    max_age: nanos(HEALTH_SUMMARY_MAX_AGE_MS),
  };
  try {
    const jsm = await jetstreamManager(nc, { checkAPI: false });
    const existing = await jsm.streams.info(name).catch(() => null);
    if (existing === null) await jsm.streams.add({ name, ...bounds, num_replicas: o.replicas });
    else await jsm.streams.update(name, bounds);
    return true;
  } catch (err) {
    o.logger.warn({ stream: name, err: errorMessage(err) }, 'cannot create the health stream; `crosslink mesh` will show no summaries');
    return false;
  }
}
