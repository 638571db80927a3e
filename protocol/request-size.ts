// Byte limits of the requests agents send the coordinator, checked before a request is parsed. NATS
// delivers anything up to the server's max_payload (1 MiB by default), and parsing costs
// event-loop time in proportion (~18 ms per MiB of JSON and base64, docs/security-review.md), so each
// subject reads at most what its largest honest request needs. One check for every subject; the
// caller wraps the refusal in its subject's reply (an `invalid` ErrorBody, or the watch protocol's
// `bad-request`) so an honest but misconfigured agent learns why.
import type { ErrorBody } from './messages.ts';

export type RequestKind = 'heartbeat' | 'registration' | 'deregistration' | 'service export' | 'service unexport' | 'gateway report' | 'watch request';

/**
 * Each limit is the next power of two at least twice the largest honest request of its kind, measured
 * with every field at the longest its schema allows (test/helpers/largest-requests.ts; checked by
 * test/coordinator-request-size.test.ts): signed bodies of
 * - heartbeat: under 1.2 KiB in either form (a 253-byte name, keys, the epoch) → 4 KiB;
 * - registration: 2,480 bytes (253-byte name, 8 IPv6 pod CIDRs, 4 IPv6 endpoints and private
 *   addresses, 63-byte location and zone, settings, a 64-byte agent version, the join signature) → 8 KiB;
 * - deregistration: 587 bytes → 2 KiB; service unexport: 891 bytes → 2 KiB;
 * - service export: 19,739 bytes (256 IPv6 addresses, 32 named ports) → 64 KiB;
 * - gateway report: 24,707 bytes (64 verdicts naming 253-byte gateways) → 64 KiB;
 * - watch request (watch, count or catch-up; unsigned): 315 bytes → 1 KiB.
 */
export const REQUEST_MAX_BYTES: Readonly<Record<RequestKind, number>> = Object.freeze({
  heartbeat: 4096,
  registration: 8192,
  deregistration: 2048,
  'service export': 65_536,
  'service unexport': 2048,
  'gateway report': 65_536,
  'watch request': 1024,
});

/** Why `raw` is not read (it is over its kind's limit), naming its size and the limit; undefined when it may be. */
export function requestTooLarge(raw: Uint8Array | string, kind: RequestKind): string | undefined {
  const max = REQUEST_MAX_BYTES[kind];
  return raw.length > max ? `${kind} is ${raw.length} bytes; at most ${max} are read` : undefined;
}

/** requestTooLarge as the `invalid` ErrorBody the signed subjects reply with (field `(root)`). */
export function oversizedRequest(raw: Uint8Array | string, kind: RequestKind): ErrorBody | undefined {
  const message = requestTooLarge(raw, kind);
  return message === undefined ? undefined : { code: 'invalid', field: '(root)', message };
}
