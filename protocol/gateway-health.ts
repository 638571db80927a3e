// Gateway health reports: what a node's prober sees of the active gateways it peers with. Signed by
// the reporter's identity key (the one in its verified NodeRecord), so every verdict is attributable
// and one node cannot speak for others. Published on `<prefix>.gateway-health` (subjects.ts); the
// coordinator leader counts them (coordinator/gateway-health.ts) and fails a gateway over only on a
// quorum of distinct reporters.
import * as z from 'zod';

/** Most verdicts one report may carry (one per active gateway the reporter peers with). */
export const MAX_GATEWAY_VERDICTS = 64;

export const GatewayVerdict = z
  .object({
    gateway: z.string().min(1).max(253),
    /** From the reporter's probes: `down` after consecutive losses, `up` on an answer (however slow). */
    state: z.enum(['up', 'down']),
  })
  .strict();
export type GatewayVerdict = z.infer<typeof GatewayVerdict>;

export const GatewayHealthReport = z
  .object({
    kind: z.literal('gateway-health'),
    v: z.literal(1),
    /** The reporting node (its NodeRecord's identityKey must have signed this). */
    reporter: z.string().min(1).max(253),
    /** Unix ms on the reporter; must increase per reporter (replays are refused). */
    at: z.number().int().positive(),
    verdicts: z.array(GatewayVerdict).max(MAX_GATEWAY_VERDICTS),
  })
  .strict();
export type GatewayHealthReport = z.infer<typeof GatewayHealthReport>;
