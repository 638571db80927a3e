// The coordinator epoch: an opaque token the leader mints at the start of every leadership term
// (the lease revision it took, plus 64 random bits) and returns in every heartbeat and
// registration reply. The agent signs the last epoch it learned into each heartbeat, and a leader
// accepts a heartbeat only for its own epoch, so a heartbeat captured in an earlier term — even
// before every coordinator replica restarted and forgot its in-memory replay marks — is refused
// (`stale-epoch`, carrying the current epoch; the agent re-signs at once). The random part makes a
// future epoch unguessable: an attacker who forges a reply cannot make an agent sign heartbeats
// for a term that has not begun yet.
import { randomBytes } from 'node:crypto';
import * as z from 'zod';

export const CoordinatorEpoch = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9._-]+$/, 'must be the coordinator epoch token: letters, digits, ".", "_" or "-"');
export type CoordinatorEpoch = z.infer<typeof CoordinatorEpoch>;

/** A new epoch for a term that began by taking the lease at `leaseRevision`. */
export function mintEpoch(leaseRevision: number, random: () => Buffer = () => randomBytes(8)): CoordinatorEpoch {
  return `${leaseRevision}.${random().toString('hex')}`;
}
