// Pure: what the agent publishes on its Node (two annotations and the CrosslinkReady condition),
// and the patches needed to get there from what the Node shows now. null patch = nothing to do.
import type { PublishedState } from '../plan/model.ts';
import { CONDITION_TYPE, OutputAnnotations, type IgnoredValue } from './annotations.ts';

/** A NodeCondition as it appears in JSON (times are RFC 3339 strings; the typed client may hand us Dates). */
export interface ConditionLike {
  readonly type?: string;
  readonly status?: string;
  readonly reason?: string;
  readonly message?: string;
  readonly lastHeartbeatTime?: Date | string;
  readonly lastTransitionTime?: Date | string;
}

export interface ConditionJson {
  readonly type: typeof CONDITION_TYPE;
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message: string;
  readonly lastHeartbeatTime: string;
  readonly lastTransitionTime: string;
}

/** Kubernetes caps condition messages in practice (kubectl output, etcd object size); keep ours short. */
const MAX_MESSAGE = 1024;

/** Merge-patch body for metadata.annotations (null deletes), or null when the Node already shows `state`. */
export function annotationPatch(current: Readonly<Record<string, string>>, state: PublishedState): Record<string, string | null> | null {
  const want: Record<string, string | null> = {
    [OutputAnnotations.publicKey]: state.publicKey,
    [OutputAnnotations.overlayIp]: state.overlayIp,
  };
  const patch: Record<string, string | null> = {};
  for (const [key, value] of Object.entries(want)) {
    const have = current[key];
    if (value === null ? have !== undefined : have !== value) patch[key] = value;
  }
  return Object.keys(patch).length === 0 ? null : patch;
}

/** Merge-patch body that removes everything the agent wrote (uninstall). */
export function withdrawAnnotationPatch(current: Readonly<Record<string, string>>): Record<string, null> | null {
  const patch: Record<string, null> = {};
  for (const key of Object.values(OutputAnnotations)) if (current[key] !== undefined) patch[key] = null;
  return Object.keys(patch).length === 0 ? null : patch;
}

export interface ConditionInputs {
  readonly state: PublishedState;
  /** Ignored annotation values, surfaced so `kubectl describe node` shows why an override had no effect. */
  readonly ignored: readonly IgnoredValue[];
  /** Why the Node cannot be registered yet (e.g. no pod CIDRs), if so. */
  readonly missing: string | null;
  readonly now: number;
  /** Re-write an unchanged condition after this long so lastHeartbeatTime shows the agent is alive. */
  readonly heartbeatRefreshMs: number;
}

/** The condition to write, or null when the existing one already says the same and is fresh enough. */
export function conditionPatch(existing: ConditionLike | undefined, inputs: ConditionInputs): ConditionJson | null {
  const { state } = inputs;
  const status = state.ready ? 'True' : 'False';
  const reason = conditionReason(state.reason, state.ready);
  const message = conditionMessage(inputs);
  const nowText = rfc3339(inputs.now);

  if (existing && existing.status === status && existing.reason === reason && existing.message === message) {
    const heartbeat = toMillis(existing.lastHeartbeatTime);
    if (heartbeat !== undefined && inputs.now - heartbeat < inputs.heartbeatRefreshMs) return null;
  }
  const transition = existing?.status === status ? toMillis(existing.lastTransitionTime) : undefined;
  return {
    type: CONDITION_TYPE,
    status,
    reason,
    message,
    lastHeartbeatTime: nowText,
    lastTransitionTime: transition === undefined ? nowText : rfc3339(transition),
  };
}

export function findCondition(conditions: readonly ConditionLike[] | undefined): ConditionLike | undefined {
  return conditions?.find((c) => c.type === CONDITION_TYPE);
}

/**
 * Condition reasons are CamelCase by Kubernetes convention; the agent's reason may be prose
 * ("waiting for coordinator") so it is folded ("WaitingForCoordinator") and kept verbatim in the message.
 */
export function conditionReason(text: string, ready: boolean): string {
  if (/^[A-Za-z][A-Za-z0-9]*$/.test(text)) return text;
  const folded = text
    .split(/[^A-Za-z0-9]+/)
    .filter((w) => w !== '')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
  if (/^[A-Za-z][A-Za-z0-9]*$/.test(folded)) return folded.slice(0, 128);
  return ready ? 'AgentReady' : 'AgentNotReady';
}

function conditionMessage(inputs: ConditionInputs): string {
  const parts = [inputs.state.reason];
  if (inputs.missing) parts.push(`cannot register: ${inputs.missing}`);
  if (inputs.ignored.length > 0) parts.push(inputs.ignored.map((i) => i.message).join('; '));
  const text = parts.filter((p) => p !== '').join('; ');
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE - 3)}...` : text;
}

/** Kubernetes serialises metav1.Time at whole seconds. */
export function rfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

function toMillis(v: Date | string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const ms = v instanceof Date ? v.getTime() : Date.parse(v);
  return Number.isNaN(ms) ? undefined : ms;
}
