// Brokered KV watches (issue 8): agents hold no JetStream consumer permission at all; a coordinator
// replica creates each watch's push consumer for them (coordinator/watch-broker.ts) and the agent
// only subscribes to its inbox (agent/control/brokered-watch.ts). The wire contract and the one
// validation both sides share. Flow and limits: docs/security.md "NATS", docs/coordinator.md.
import * as z from 'zod';
import { policyKeys } from './policy/record.ts';
import { serviceKeys } from './service.ts';
import { kvKeys } from './subjects.ts';
import { SignedEnvelope } from './messages.ts';

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
 * Largest `limit` of a catch-up page (its signed index stays under SignedEnvelope's 64 KiB payload);
 * its values are also capped at CATCHUP_MAX_BYTES (the whole reply, base64 included, stays under
 * NATS_MAX_PAYLOAD: protocol/nats-payload.ts).
 */
export const CATCHUP_MAX_LIMIT = 256;
export const CATCHUP_MAX_BYTES = 384 * 1024;

/**
 * `watch`: create an ephemeral push consumer on `filter` delivering to `deliverSubject`.
 * `count`: how many keys `filter` holds (delete markers included) and its newest revision, without a
 * consumer on the agent's side (the MeshWatch audit).
 * Strict: any other field (a durable name, a deliver group, a filter list, …) is refused.
 */
export const WatchRequest = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('watch'), filter: Filter, deliverSubject: DeliverSubject, start: WatchStart }),
  z.strictObject({ kind: z.literal('count'), filter: Filter }),
  z.strictObject({
    kind: z.literal('catchup'),
    filter: Filter,
    afterRevision: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    limit: z.number().int().min(1).max(CATCHUP_MAX_LIMIT),
    /** Echoed in the signed page (a page answers one request). */
    nonce: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/, 'must be 8-64 letters, digits, "-" or "_"'),
  }),
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

/**
 * One entry of a catch-up page as the coordinator signs it: the value itself travels beside the
 * signed page (`values`, base64), bound to it by its SHA-256 here.
 */
export const CatchUpEntry = z.strictObject({
  key: z.string().min(1).max(512),
  revision: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  operation: z.enum(['PUT', 'DEL', 'PURGE']),
  /** When the server stored it (ms since the epoch). */
  created: z.number().int().min(0),
  /** SHA-256 of the value, base64. */
  sha256: z.base64().length(44),
});
export type CatchUpEntry = z.infer<typeof CatchUpEntry>;

/**
 * The signed part of a catch-up answer. The request's filter, revision and nonce are repeated so a page
 * answers exactly one request: agents share `_INBOX.` (docs/security.md), and a reply forged into
 * another agent's inbox could otherwise inject delete markers or move its revision past changes.
 */
export const CatchUpPage = z.strictObject({
  filter: z.string(),
  afterRevision: z.number().int().min(0),
  nonce: z.string(),
  entries: z.array(CatchUpEntry).max(CATCHUP_MAX_LIMIT),
  more: z.boolean(),
});
export type CatchUpPage = z.infer<typeof CatchUpPage>;

/** The answer to `catchup`: the page signed by the coordinator's key, and the values in its order. */
export const CatchUpReply = z.union([
  z.object({ ok: z.literal(true), page: SignedEnvelope, values: z.array(z.base64()).max(CATCHUP_MAX_LIMIT) }),
  WatchReply.options[1],
]);
export type CatchUpReply = z.infer<typeof CatchUpReply>;

/** Validates a request body: the request, or a `bad-request` refusal naming the field, its value and what is allowed. */
export function parseWatchRequest(body: Uint8Array): { readonly ok: true; readonly request: WatchRequest } | WatchRefusal {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(body));
  } catch {
    return { ok: false, code: 'bad-request', field: '(body)', message: 'the request is not JSON; send {"kind":"watch"|"count"|"catchup", "filter", …}' };
  }
  const r = WatchRequest.safeParse(raw);
  if (r.success) return { ok: true, request: r.data };
  const issue = r.error.issues[0];
  const keys = issue?.code === 'unrecognized_keys' ? issue.keys : [];
  const path = [...(issue?.path ?? []), ...keys.slice(0, 1)].map(String);
  const field = path.length > 0 ? path.join('.') : '(body)';
  const value = valueAt(raw, path);
  const allowed = keys.length > 0 ? `fields allowed: ${FIELDS_ALLOWED[kindOf(raw)] ?? FIELDS_ALLOWED.watch} (no durable, deliver group or other consumer settings)` : (issue?.message ?? 'invalid');
  return { ok: false, code: 'bad-request', field, message: `${field}: ${JSON.stringify(value) ?? 'missing'} is not valid; ${allowed}` };
}

const FIELDS_ALLOWED: Readonly<Record<string, string>> = { watch: 'kind, filter, deliverSubject, start', count: 'kind, filter', catchup: 'kind, filter, afterRevision, limit, nonce' };

function kindOf(raw: unknown): string {
  return typeof raw === 'object' && raw !== null && typeof (raw as { kind?: unknown }).kind === 'string' ? (raw as { kind: string }).kind : 'watch';
}

function valueAt(raw: unknown, path: readonly string[]): unknown {
  let v: unknown = raw;
  for (const p of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string, unknown>)[p];
  }
  return v;
}
