// Health as the agent measures it with active probes (agent/health/): per peer, and the control
// plane. Part of the status document (protocol/status.ts) and of `crosslink ping`.
import * as z from 'zod';

/**
 * up: the latest probe was answered (or fewer than `downAfter` in a row were lost since).
 * down: the last `downAfter` probes in a row went unanswered. pending: probing has not
 * concluded yet (new peer, or the probe socket is not bound).
 */
export const ProbeState = z.enum(['up', 'down', 'pending']);
export type ProbeState = z.infer<typeof ProbeState>;

export const PeerProbe = z.object({
  state: ProbeState,
  /** Why, in words: "answered in 1.2 ms", "no answer to the last 3 probes (last answer 12s ago)". */
  reason: z.string(),
  /** Overlay IP probed. */
  target: z.string(),
  /** RTT of the latest answered probe. */
  rttMs: z.number().nullable(),
  /** Lost share of the recent probes (window in `window`), 0–100. */
  lossPct: z.number(),
  window: z.number().int(),
  sent: z.number().int(),
  received: z.number().int(),
  lastReplyAt: z.number().nullable(),
  /** When the state last changed (unix ms). */
  since: z.number(),
});
export type PeerProbe = z.infer<typeof PeerProbe>;

/** The control plane as the agent sees it: answering = a heartbeat was acknowledged recently. */
export const ControlPlaneHealth = z.object({
  answering: z.boolean(),
  reason: z.string(),
  heartbeatIntervalMs: z.number().nullable(),
  nodeTtlMs: z.number().nullable(),
});
export type ControlPlaneHealth = z.infer<typeof ControlPlaneHealth>;

/** One `crosslink ping` answer (GET /ping on the status socket). */
export const PingReply = z.object({
  target: z.string(),
  /** Node the target belongs to, null if unknown. */
  node: z.string().nullable(),
  overlayIp: z.string().nullable(),
  /** direct | relay | gateway | local-gateway | none | self | unknown. */
  path: z.string(),
  via: z.string().nullable(),
  /** Human text of the path, e.g. "relay via aws-n1". */
  pathText: z.string(),
  sent: z.number().int(),
  received: z.number().int(),
  rttMs: z.array(z.number()),
  /** Pod targets: did the pod answer ICMP (null: not a pod target). */
  pod: z
    .object({ ip: z.string(), sent: z.number().int(), received: z.number().int(), rttMs: z.array(z.number()), detail: z.string() })
    .nullable(),
  /** Verdict in words. */
  summary: z.string(),
  ok: z.boolean(),
});
export type PingReply = z.infer<typeof PingReply>;
