// Reads the latest health summary of every verified node from the coordinator's health stream and
// verifies each against the identity key in that node's verified record (a summary under another
// node's subject, or signed by another key, is refused and said so).
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';
import { HealthSummary, healthStreamName } from '../protocol/health-summary.ts';
import type { NodeRecord } from '../protocol/messages.ts';
import { verifyEnvelope } from '../protocol/signing.ts';

export class HealthReadError extends CrosslinkError {
  override name = 'HealthReadError';
}

export async function readHealthSummaries(
  nc: NatsConnection,
  bucket: string,
  nodes: ReadonlyMap<string, NodeRecord>,
): Promise<{ summaries: Map<string, HealthSummary>; refused: Map<string, string> }> {
  const stream = healthStreamName(bucket);
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  let subject: string;
  try {
    subject = (await jsm.streams.info(stream)).config.subjects[0] ?? '';
  } catch (err) {
    throw new HealthReadError(`cannot read the health stream "${stream}": ${errorMessage(err)} — is a coordinator running with --bucket ${bucket}?`, { cause: err });
  }
  const prefix = subject.replace(/\.>$/, '');
  const summaries = new Map<string, HealthSummary>();
  const refused = new Map<string, string>();
  await Promise.all(
    [...nodes.values()].map(async (n) => {
      const m = await jsm.streams.getMessage(stream, { last_by_subj: `${prefix}.${n.name}` }).catch(() => null);
      if (!m) return;
      try {
        const s = await verifyEnvelope(m.data, n.identityKey, HealthSummary);
        if (s.node !== n.name) throw new CrosslinkError(`it names node ${s.node}`);
        summaries.set(n.name, s);
      } catch (err) {
        refused.set(n.name, errorMessage(err));
      }
    }),
  );
  return { summaries, refused };
}
