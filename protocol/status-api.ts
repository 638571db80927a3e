// The wire documents of the agent's status API besides AgentStatus (protocol/status.ts): what
// agent/status-server.ts serves on its unix socket and cli/ reads. Zod schemas, so the CLI checks
// what it gets. Never contain private keys.
import * as z from 'zod';
import { ClusterRecord, Key32, NodeRecord } from './messages.ts';
import { Mtu } from './mtu.ts';

/** GET /readyz (200 when ready, else 503). */
export const Readiness = z.object({
  ready: z.boolean(),
  reason: z.string(),
});
export type Readiness = z.infer<typeof Readiness>;

/** GET /view: everything `computeDesiredState` needs, so the CLI computes exactly what the agent does. */
export const ViewDocument = z.object({
  self: NodeRecord,
  nodes: z.array(NodeRecord),
  clusters: z.array(ClusterRecord),
  dataplaneConfig: z.object({
    interfaceName: z.string(),
    listenPort: z.number(),
    mtu: Mtu,
    natKeepaliveSec: z.number(),
    relayPortBase: z.number(),
    relayPortSpan: z.number(),
  }),
});
export type ViewDocument = z.infer<typeof ViewDocument>;

/** GET /diagnostics: what the kernel/WireGuard actually holds right now. */
export const DiagnosticsDocument = z.object({
  interface: z.string(),
  livePeers: z
    .array(
      z.object({
        publicKey: z.string(),
        endpoint: z.string().nullable(),
        allowedIps: z.array(z.string()),
        latestHandshakeAt: z.number().nullable(),
        rxBytes: z.number(),
        txBytes: z.number(),
      }),
    )
    .nullable(),
  livePeersError: z.string().nullable(),
  /** Routes the agent owns (route protocol 149). */
  liveRoutes: z.array(z.object({ dst: z.string(), dev: z.string().nullable(), via: z.string().nullable() })).nullable(),
  liveRoutesError: z.string().nullable(),
});
export type DiagnosticsDocument = z.infer<typeof DiagnosticsDocument>;

/** POST /rotate-key answer: public keys only; the private key never leaves the state dir and the interface. */
export const RotateKeyResponse = z.object({
  node: z.string(),
  oldPublicKey: Key32,
  newPublicKey: Key32,
  /** Generation of our record carrying the new key. */
  generation: z.number().int(),
  /** false: the interface still has the old key (the reconcile failed; it is retried on the next resync). */
  interfaceUpdated: z.boolean(),
});
export type RotateKeyResponse = z.infer<typeof RotateKeyResponse>;

/** How a rotation failed, which decides the HTTP code: 503 retry later, 409 refused, 500 local failure. */
export const RotateKeyFailure = z.enum(['unavailable', 'refused', 'failed']);
export type RotateKeyFailure = z.infer<typeof RotateKeyFailure>;

/** POST /rotate-key error body (503, 409, 500). */
export const RotateKeyErrorBody = z.object({ error: z.string(), failure: RotateKeyFailure });
export type RotateKeyErrorBody = z.infer<typeof RotateKeyErrorBody>;
