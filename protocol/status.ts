// The agent's status document, served as JSON (GET /status) on its unix status socket and its
// health port. Read by the CLI and the lab. Never contains private keys.
import * as z from 'zod';
import { PolicyStatus } from './policy/status.ts';
import { ControlPlaneHealth, PeerProbe } from './health.ts';

export const PeerPath = z.enum(['direct', 'relay', 'gateway']);
export type PeerPath = z.infer<typeof PeerPath>;

export const PeerStatus = z.object({
  /** Node this WireGuard peer is (for a gateway peer: the gateway node). */
  name: z.string(),
  cluster: z.string(),
  location: z.string(),
  publicKey: z.string(),
  /** direct: straight to the node; relay: end-to-end encrypted via a relay's UDP forwarder; gateway: to a cluster's active gateway. */
  path: PeerPath,
  /** Relay node name when path is relay. */
  via: z.string().nullable(),
  /** Endpoint we configured (null: learned from the peer's handshakes, it is behind NAT). */
  configuredEndpoint: z.string().nullable(),
  /** Endpoint WireGuard currently uses (may be a NAT-mapped address it learned). */
  endpoint: z.string().nullable(),
  allowedIps: z.array(z.string()),
  /** Unix ms of the latest handshake, null if none. */
  latestHandshakeAt: z.number().nullable(),
  rxBytes: z.number(),
  txBytes: z.number(),
  persistentKeepalive: z.number(),
  /** Nodes whose pod CIDRs this peer carries (more than one for a gateway). */
  carries: z.array(z.string()),
  /** false: wanted but missing from the live interface (removed by hand, wireguard-go restarted); absent when the live state could not be read, and from older agents. */
  onInterface: z.boolean().optional(),
  /** Active probe health (agent/health/prober.ts); absent from agents older than the probes. */
  probe: PeerProbe.nullable().optional(),
});
export type PeerStatus = z.infer<typeof PeerStatus>;

/** How this node reaches each remote node's pods. */
export const RemotePath = z.object({
  node: z.string(),
  cluster: z.string(),
  /** direct | relay | gateway (through the remote cluster's gateway) | local-gateway (through our own cluster's gateway over the VPC) | none (no path: reason says why) */
  path: z.enum(['direct', 'relay', 'gateway', 'local-gateway', 'none']),
  /** The next hop node (relay, gateway) if any. */
  via: z.string().nullable(),
  reason: z.string().nullable(),
});
export type RemotePath = z.infer<typeof RemotePath>;

/** A peer CIDR the agent's route guard refused: it overlaps something the host needs (docs/dataplane.md). */
export const RefusedRoute = z.object({
  node: z.string(),
  cluster: z.string(),
  cidr: z.string(),
  reason: z.string(),
});
export type RefusedRoute = z.infer<typeof RefusedRoute>;

/** How the agent authenticates its heartbeats (docs/coordinator.md "Heartbeat MACs"). */
export const HeartbeatAuth = z.object({
  /** mac: an HMAC with the key agreed with `coordinatorKey`; signed: an Ed25519 signature. */
  form: z.enum(['mac', 'signed']),
  /** The coordinator key the MAC key was agreed with (form mac); null when signing. */
  coordinatorKey: z.string().nullable(),
  /** Why it signs although it registered: the coordinator's refusal of its MAC (until the next registration); null otherwise. */
  fallback: z.object({ code: z.string(), message: z.string() }).nullable(),
});
export type HeartbeatAuth = z.infer<typeof HeartbeatAuth>;

export const AgentStatus = z.object({
  version: z.string(),
  node: z.object({
    name: z.string(),
    cluster: z.string(),
    location: z.string(),
    publicKey: z.string(),
    overlayIp: z.string().nullable(),
    endpoints: z.array(z.string()),
    privateAddresses: z.array(z.string()),
    podCidrs: z.array(z.string()),
    topology: z.enum(['mesh', 'gateway']),
    isGateway: z.boolean(),
    isRelay: z.boolean(),
  }),
  controlPlane: z.object({
    connected: z.boolean(),
    registered: z.boolean(),
    lastHeartbeatAt: z.number().nullable(),
    lastError: z.string().nullable(),
    knownNodes: z.number(),
    /** Set once an operator revoked this node (the coordinator's refusal); absent from older agents. */
    revoked: z.string().nullable().optional(),
    /** Heartbeats acknowledged recently (relative to the node TTL); absent from older agents. */
    health: ControlPlaneHealth.optional(),
    /** How heartbeats are authenticated (MAC or signed, and why it fell back); absent from older agents. */
    heartbeat: HeartbeatAuth.optional(),
  }),
  dataplane: z.object({
    backend: z.enum(['kernel', 'userspace', 'none']),
    interface: z.string(),
    listenPort: z.number(),
    mtu: z.number(),
    /** MTU the interface has right now (null: could not be read); absent from older agents. */
    liveMtu: z.number().nullable().optional(),
  }),
  lastReconcile: z
    .object({
      at: z.number(),
      ok: z.boolean(),
      changes: z.number(),
      durationMs: z.number(),
      error: z.string().nullable(),
    })
    .nullable(),
  ready: z.boolean(),
  peers: z.array(PeerStatus),
  remotes: z.array(RemotePath),
  /** Peer CIDRs kept out of WireGuard and the route table by the route guard, with the reason. */
  refusedRoutes: z.array(RefusedRoute).default([]),
  relays: z.array(
    z.object({ port: z.number(), between: z.tuple([z.string(), z.string()]), packets: z.number(), bytes: z.number() }),
  ),
  errors: z.array(z.string()),
  /** The access policy on this node (absent from agents that predate it). */
  policy: PolicyStatus.optional(),
});
export type AgentStatus = z.infer<typeof AgentStatus>;
