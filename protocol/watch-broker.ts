// Brokered KV watches (issue 8): agents hold no JetStream consumer permission at all; a coordinator
// replica creates each watch's push consumer for them (coordinator/watch-broker.ts) and the agent
// only subscribes to its inbox (agent/control/brokered-watch.ts). The wire contract and the one
// validation both sides share. Flow and limits: docs/security.md "NATS", docs/coordinator.md.
import * as z from 'zod';
import { policyKeys } from './policy/record.ts';
import { serviceKeys } from './service.ts';
import { kvKeys } from './subjects.ts';

/**
 * The key filters an agent may watch or read: exactly its readable ranges. Never ipam, identities,
 * revocations or the lease.
 */
export const WATCHABLE_FILTERS: readonly string[] = Object.freeze([kvKeys.nodesFilter, kvKeys.clustersFilter, kvKeys.enrollmentsFilter, serviceKeys.filter, policyKeys.current]);

/** Deliveries may go only to a client inbox (`_INBOX.<token>…`): never to a service subject. */
export const DELIVER_PREFIX = '_INBOX.';

const Filter = z.string().refine((f) => WATCHABLE_FILTERS.includes(f), { message: `must be one of ${WATCHABLE_FILTERS.join(', ')}` });
const DeliverSubject = z
  .string()
  .max(200)
  .regex(/^_INBOX\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'must be an inbox subject "_INBOX.<token>" (letters, digits, "-", "_"; no wildcards)');

/** Where the watch starts: the newest value of every key (a full read), or after a revision (a resume). */
export const WatchStart = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('last-per-subject') }),
  z.strictObject({ kind: z.literal('after'), revision: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) }),
]);
export type WatchStart = z.infer<typeof WatchStart>;

/**
 * `watch`: create an ephemeral push consumer on `filter` delivering to `deliverSubject`.
 * `count`: how many keys `filter` holds (delete markers included) and its newest revision, without a
 * consumer on the agent's side (the MeshWatch audit).
 * Strict: any other field (a durable name, a deliver group, a filter list, …) is refused.
 */
export const WatchRequest = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('watch'), filter: Filter, deliverSubject: DeliverSubject, start: WatchStart }),
  z.strictObject({ kind: z.literal('count'), filter: Filter }),
]);
export type WatchRequest = z.infer<typeof WatchRequest>;

export const WATCH_REFUSALS = ['bad-request', 'rate-limited', 'unavailable'] as const;
export type WatchRefusalCode = (typeof WATCH_REFUSALS)[number];

export const WatchReply = z.union([
  z.object({
    ok: z.literal(true),
    /** The consumer's name ('' for a count). */
    name: z.string(),
    /** Messages the consumer had to deliver when created (the initial snapshot's size); keys for a count. */
    pending: z.number().int().min(0),
    /** count: the newest revision under the filter (0: none); watch: the stream position the consumer starts after. */
    lastRevision: z.number().int().min(0),
    /** The consumer's idle heartbeat: with no delivery for about 3× this long the watch is dead. */
    heartbeatMs: z.number().int().min(0),
  }),
  z.object({
    ok: z.literal(false),
    code: z.enum(WATCH_REFUSALS),
    message: z.string(),
    field: z.string().optional(),
    retryAfterMs: z.number().int().min(0).optional(),
  }),
]);
export type WatchReply = z.infer<typeof WatchReply>;
export type WatchRefusal = Extract<WatchReply, { ok: false }>;

/** Validates a request body: the request, or a `bad-request` refusal naming the field, its value and what is allowed. */
export function parseWatchRequest(body: Uint8Array): { readonly ok: true; readonly request: WatchRequest } | WatchRefusal {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(body));
  } catch {
    return { ok: false, code: 'bad-request', field: '(body)', message: 'the request is not JSON; send {"kind":"watch"|"count", "filter", …}' };
  }
  const r = WatchRequest.safeParse(raw);
  if (r.success) return { ok: true, request: r.data };
  const issue = r.error.issues[0];
  const keys = issue?.code === 'unrecognized_keys' ? issue.keys : [];
  const path = [...(issue?.path ?? []), ...keys.slice(0, 1)].map(String);
  const field = path.length > 0 ? path.join('.') : '(body)';
  const value = valueAt(raw, path);
  const allowed = keys.length > 0 ? `fields allowed: kind, filter, deliverSubject, start (no durable, deliver group or other consumer settings)` : (issue?.message ?? 'invalid');
  return { ok: false, code: 'bad-request', field, message: `${field}: ${JSON.stringify(value) ?? 'missing'} is not valid; ${allowed}` };
}

function valueAt(raw: unknown, path: readonly string[]): unknown {
  let v: unknown = raw;
  for (const p of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string, unknown>)[p];
  }
  return v;
}
