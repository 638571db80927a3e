// The epoch rule for heartbeats (protocol/coordinator-epoch.ts). The in-memory replay marks
// (heartbeat-marks.ts) stop a replay within one leadership term; the epoch stops one across terms,
// including after every replica restarted and forgot its marks: each term mints a new, unguessable
// epoch, and a heartbeat counts only in the term whose epoch it carries.
//
// - Leader: a heartbeat carrying another epoch is refused `stale-epoch` (with the current one, so
//   the agent re-signs at once) and refreshes nothing. No epoch at all (an agent older than the
//   epoch, or a heartbeat captured from one and replayed): refused `epoch-required` (with the
//   current epoch) while `--require-heartbeat-epoch` is on, the default; with it off (only while
//   upgrading agents that predate the epoch: docs/coordinator.md) accepted under the older rules
//   (marks + the registration floor in bindings.ts).
// - Follower (it records liveness for the day it takes over): only heartbeats of the epoch its
//   leader announced (leader-presence.ts), and only ones sent after this replica started — a
//   replica that started mid-term has no marks for what was sent before, so it cannot tell an
//   earlier heartbeat from its replay. Epoch-less ones only while the epoch is not required.
import type { ErrorBody } from '../protocol/messages.ts';

/**
 * Why a leader in `current` refuses a heartbeat carrying `epoch` (undefined: it counts).
 * `required`: the coordinator's --require-heartbeat-epoch.
 */
export function epochRefusal(epoch: string | undefined, current: string, required: boolean): ErrorBody | undefined {
  if (epoch === current) return undefined;
  if (epoch === undefined) {
    if (!required) return undefined;
    return {
      code: 'epoch-required',
      field: 'epoch',
      message: `epoch: missing; this coordinator accepts only heartbeats signed with its current epoch ${JSON.stringify(current)} (--require-heartbeat-epoch is on): sign the next heartbeat with it, or upgrade an agent older than the epoch`,
    };
  }
  return {
    code: 'stale-epoch',
    field: 'epoch',
    message: `epoch: ${JSON.stringify(epoch)} is not the coordinator's current epoch ${JSON.stringify(current)} (a leader took over since); sign the next heartbeat with the current epoch`,
  };
}

/**
 * Whether a follower may record a heartbeat as a sign of life: `knownEpoch` is the epoch the
 * leader last announced (undefined: none seen yet), `startedAt` when this replica started,
 * `required` the coordinator's --require-heartbeat-epoch.
 */
export function followerMayRecord(hb: { readonly epoch?: string | undefined; readonly sentAt: number }, knownEpoch: string | undefined, startedAt: number, required: boolean): boolean {
  if (hb.sentAt <= startedAt) return false;
  return hb.epoch === undefined ? !required : hb.epoch === knownEpoch;
}
