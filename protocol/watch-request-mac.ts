// Watch-broker requests (protocol/watch-broker.ts) MAC'd by the agent, so a replica can serve a node
// it knows from that node's own budget (coordinator/watch-broker.ts) while a flood drains only the
// shared one. The key is derived from the heartbeat MAC key K both sides already hold
// (heartbeat-mac.ts): K_watch = HMAC-SHA256(K, "crosslink watch request mac v1") — a different key, so
// a heartbeat MAC never passes for a watch request nor the other way round. The MAC travels in NATS
// headers (WATCH_MAC_HEADERS) and the body stays the exact WatchRequest JSON: WatchRequest is strict,
// so a field would make an older coordinator answer `bad-request`; headers it ignores.
// Replay: a `sentAt` within the clock skew is enough — a replayed request spends only its sender's own
// budget (docs/coordinator.md "Watch broker").
import { createHmac } from 'node:crypto';
import { heartbeatMacMatches, macHeartbeat } from './heartbeat-mac.ts';

const DOMAIN = Buffer.from('crosslink watch request mac v1', 'utf8');

/** The NATS headers a MAC'd watch request carries. */
export const WATCH_MAC_HEADERS = Object.freeze({ node: 'Xl-Node', sentAt: 'Xl-Sent-At', mac: 'Xl-Mac' });

/**
 * Whose budget a watch request drew from on a replica, and why: `node` (a valid MAC of a node the
 * replica knows: its own budget), else the shared budget — `unsigned` (no headers: an older agent or a
 * tool), `unknown-node` (a name the replica knows no node by), `bad-mac`, `stale` (`sentAt` outside the
 * clock skew, or not a number).
 */
export const WATCH_REQUEST_AUTH_OUTCOMES = Object.freeze(['node', 'unsigned', 'unknown-node', 'bad-mac', 'stale'] as const);
export type WatchRequestAuthOutcome = (typeof WATCH_REQUEST_AUTH_OUTCOMES)[number];

/** What an agent MACs its watch requests with: its node name and K_watch. */
export interface WatchRequestMac {
  readonly node: string;
  readonly key: Buffer;
}

/** K_watch from the heartbeat MAC key K. */
export function watchRequestMacKey(heartbeatKey: Uint8Array): Buffer {
  return createHmac('sha256', heartbeatKey).update(DOMAIN).digest();
}

/**
 * The bytes a watch request's MAC covers: `JSON.stringify([node, sentAt])`, a newline, the body. JSON
 * escapes every newline in the name, so the first newline ends the header part: no two (node, sentAt,
 * body) give the same bytes.
 */
export function watchRequestMacInput(node: string, sentAt: number, body: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(`${JSON.stringify([node, sentAt])}\n`, 'utf8'), body]);
}

/** HMAC-SHA256 of the canonical bytes (watchRequestMacInput) under K_watch. */
export function macWatchRequest(watchKey: Uint8Array, bytes: Uint8Array): Buffer {
  return macHeartbeat(bytes, watchKey);
}

/** Does the base64 `mac` authenticate the canonical `bytes` under K_watch? Constant time in the MAC's bytes. */
export function watchRequestMacMatches(bytes: Uint8Array, mac: string, watchKey: Uint8Array): boolean {
  return heartbeatMacMatches(bytes, mac, watchKey);
}

/** A `sentAt` header: a non-negative integer of milliseconds, else undefined. */
export function parseSentAtHeader(value: string): number | undefined {
  if (!/^\d{1,16}$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}
