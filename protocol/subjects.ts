// NATS subjects and KV layout: the wire contract between agents, coordinator and CLI.
// Versioned so a v2 protocol can run beside v1 during an upgrade.

export const PROTOCOL_VERSION = 1 as const;

export const DEFAULT_SUBJECT_PREFIX = 'crosslink.v1';
export const DEFAULT_BUCKET = 'crosslink';

export function subjects(prefix = DEFAULT_SUBJECT_PREFIX) {
  return {
    /** request/reply: SignedEnvelope<RegistrationRequest> → RegisterReply */
    register: `${prefix}.register`,
    /** request/reply: SignedEnvelope<Heartbeat> → HeartbeatReply. All coordinator replicas listen; the leader replies. */
    heartbeat: `${prefix}.heartbeat`,
    /** request/reply: SignedEnvelope<Deregister> → DeregisterReply (clean node removal). */
    deregister: `${prefix}.deregister`,
    /** publish: SignedEnvelope<GatewayHealthReport> (protocol/gateway-health.ts), signed by the reporter's identity key. */
    gatewayHealth: `${prefix}.gateway-health`,
    /** request/reply between coordinator replicas: the leader answers {holder} while it leads (coordinator/leader-presence.ts). */
    leaderPresence: `${prefix}.coordinator.leader`,
    /** publish: SignedEnvelope<LeaderUp> (protocol/leader-up.ts), signed by the coordinator key, when a new leader serves; agents subscribe. */
    leaderUp: `${prefix}.coordinator.up`,
    /** request/reply: WatchRequest → WatchReply (protocol/watch-broker.ts). Every replica serves it (queue group). */
    watch: `${prefix}.watch`,
  } as const;
}

/** KV keys. Node names may contain dots (FQDNs); they are one hierarchical suffix. */
export const kvKeys = {
  node: (name: string) => `nodes.${name}`,
  nodesFilter: 'nodes.>',
  cluster: (name: string) => `clusters.${name}`,
  clustersFilter: 'clusters.>',
  /** Coordinator-internal: overlay IP and identity binding per node name; survives node expiry. */
  ipam: (name: string) => `ipam.${name}`,
  ipamFilter: 'ipam.>',
  /** Operator revocations (coordinator-signed Revocation); a revoked name may not register or heartbeat. */
  revoked: (name: string) => `revoked.${name}`,
  revokedFilter: 'revoked.>',
  /** Operator cluster enrollments (coordinator-signed ClusterDefinition). */
  enrollment: (name: string) => `enrollments.${name}`,
  enrollmentsFilter: 'enrollments.>',
  /** Coordinator-internal: name binding and replay high-water mark per identity key (base64url, no padding). */
  identity: (identityKey: string) => `identities.${Buffer.from(identityKey, 'base64').toString('base64url')}`,
  identitiesFilter: 'identities.>',
  /** Coordinator leader lease. */
  lease: 'coordinator.lease',
} as const;

export function nodeNameFromKey(key: string): string | undefined {
  return key.startsWith('nodes.') ? key.slice('nodes.'.length) : undefined;
}

export function clusterNameFromKey(key: string): string | undefined {
  return key.startsWith('clusters.') ? key.slice('clusters.'.length) : undefined;
}

export function revokedNameFromKey(key: string): string | undefined {
  return key.startsWith('revoked.') ? key.slice('revoked.'.length) : undefined;
}

export function enrollmentNameFromKey(key: string): string | undefined {
  return key.startsWith('enrollments.') ? key.slice('enrollments.'.length) : undefined;
}
