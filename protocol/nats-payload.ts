// The nats-server `max_payload` Crosslink ships (deploy/control-plane/nats.yaml, and the top of what
// `crosslink-coordinator nats-config` renders) instead of NATS's 1 MiB default: what the largest
// message any part of Crosslink publishes needs, with headroom. The server refuses a larger publish
// from any client (`Maximum Payload Violation`), so nothing on any subject is delivered bigger.
import { CATCHUP_MAX_BYTES, CATCHUP_MAX_LIMIT } from './watch-broker.ts';

/** A SignedEnvelope's JSON at its largest (protocol/messages.ts): a 65,536-character payload, a 64-byte signature in base64. */
export const SIGNED_ENVELOPE_MAX_BYTES = '{"payload":"","sig":""}'.length + 65_536 + 88;

/**
 * The largest message is a catch-up reply (coordinator/watch-broker.ts): up to CATCHUP_MAX_LIMIT
 * values read until they add up to CATCHUP_MAX_BYTES, so at most CATCHUP_MAX_BYTES - 1 bytes plus one
 * more value, each value one SignedEnvelope, all in base64 (4/3, and up to 6 bytes of padding, quotes
 * and comma each), beside the signed page (one more SignedEnvelope) and the reply's own fields:
 * (393,215 + 65,646) × 4/3 + 256 × 6 + 65,646 + 64 ≈ 679,000 bytes (663 KiB). Everything else is far
 * smaller: requests at most 64 KiB (protocol/request-size.ts), KV values one SignedEnvelope.
 */
export const LARGEST_CATCHUP_REPLY_BYTES = Math.ceil(((CATCHUP_MAX_BYTES - 1 + SIGNED_ENVELOPE_MAX_BYTES) * 4) / 3) + CATCHUP_MAX_LIMIT * 6 + SIGNED_ENVELOPE_MAX_BYTES + 64;

/** The max_payload shipped: 768 KiB, ~15 % above LARGEST_CATCHUP_REPLY_BYTES (test/nats-max-payload.test.ts). */
export const NATS_MAX_PAYLOAD = 768 * 1024;
