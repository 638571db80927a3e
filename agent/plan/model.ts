// The agent's core data types: what it knows (MeshView), what it wants (DesiredState), and the
// seams to the outside (Dataplane, NodeSource). Pure data; behaviour lives in the modules that use them.
import type { ClusterRecord, NodeRecord, Topology } from '../../protocol/messages.ts';
import type { PeerPath, RemotePath } from '../../protocol/status.ts';
import type { RefusedCidr } from './route-guard.ts';

/** Verified records as the agent sees them. `self` is our own record (with our overlay IP). */
export interface MeshView {
  readonly self: NodeRecord;
  readonly nodes: ReadonlyMap<string, NodeRecord>;
  readonly clusters: ReadonlyMap<string, ClusterRecord>;
}

/**
 * What the KV watch knows, as one immutable value (frozen maps of frozen records), pushed by
 * agent/control/mesh-watch.ts after every (debounced) change.
 */
export interface MeshSnapshot {
  readonly nodes: ReadonlyMap<string, NodeRecord>;
  readonly clusters: ReadonlyMap<string, ClusterRecord>;
  /** The highest KV revision applied (the bucket's stream sequence; starts anew only if the bucket is re-created). */
  readonly revision: number;
  /**
   * A complete snapshot of the bucket has been read (stays true through outages: we keep what we
   * had). Before that a missing record may just not be read yet, so nothing may be removed on it.
   */
  readonly complete: boolean;
}

export interface DataplaneConfig {
  readonly interfaceName: string;
  readonly listenPort: number;
  readonly mtu: number;
  /** Keepalive (s) used towards peers when this node has no public endpoint (behind NAT). */
  readonly natKeepaliveSec: number;
  /** UDP ports a relay node uses for relayed pairs: [base, base + span). */
  readonly relayPortBase: number;
  readonly relayPortSpan: number;
}

export interface DesiredInterface {
  readonly name: string;
  readonly listenPort: number;
  readonly mtu: number;
  /** e.g. ["100.96.0.5/32"] */
  readonly addresses: readonly string[];
}

export interface DesiredPeer {
  readonly publicKey: string;
  /** null: no endpoint configured (peer is behind NAT; WireGuard learns it from the peer's handshakes). */
  readonly endpoint: string | null;
  /** Canonical CIDRs, sorted. */
  readonly allowedIps: readonly string[];
  /** Seconds, 0 = off. */
  readonly persistentKeepalive: number;
  readonly node: string;
  readonly cluster: string;
  readonly path: PeerPath;
  /** Relay node name for path 'relay'. */
  readonly via: string | null;
  /** Nodes whose pod CIDRs this peer carries (gateway peers carry a whole cluster). */
  readonly carries: readonly string[];
}

export interface DesiredRoute {
  /** Canonical CIDR. */
  readonly dst: string;
  /** Route into the WireGuard interface… */
  readonly dev?: string;
  /** …or via a next hop on the VPC (our cluster's gateway). */
  readonly via?: string;
}

/** A pair of NATed nodes whose end-to-end encrypted WireGuard packets this node forwards on `port`. */
export interface RelayAssignment {
  readonly port: number;
  readonly a: { readonly node: string; readonly publicKey: string };
  readonly b: { readonly node: string; readonly publicKey: string };
}

export interface DesiredState {
  readonly interface: DesiredInterface;
  /** Sorted by publicKey. */
  readonly peers: readonly DesiredPeer[];
  /** Sorted by dst. */
  readonly routes: readonly DesiredRoute[];
  /** Sorted by port; empty unless this node is a relay. */
  readonly relays: readonly RelayAssignment[];
  /** How each other node's pods are reached (for status, the CLI and the lab's path summary). */
  readonly remotes: readonly RemotePath[];
  /** Peer CIDRs the route guard kept out (overlap what the host needs), sorted by cidr. */
  readonly refused: readonly RefusedCidr[];
  readonly isGateway: boolean;
}

/** What the agent says about itself when registering; comes from flags (standalone) or the Node object (Kubernetes). */
export interface NodeIdentity {
  readonly name: string;
  readonly cluster: string;
  readonly location: string;
  readonly zone?: string;
  readonly endpoints: readonly string[];
  readonly privateAddresses: readonly string[];
  readonly podCidrs: readonly string[];
  readonly topology: Topology;
  readonly gatewayEligible: boolean;
  readonly persistentKeepalive?: number;
}

/** Where the NodeIdentity comes from, and where the agent publishes its state back (Kubernetes Node). */
export interface NodeSource {
  /** Resolves the first identity (may wait for the API server). */
  start(signal: AbortSignal): Promise<NodeIdentity>;
  /** Called with each changed identity (e.g. annotation edited); the agent re-registers. */
  onChange(listener: (identity: NodeIdentity) => void): void;
  /** Publishes the agent's state (no-op standalone). Must not throw; failures are logged and retried by the source. */
  publish(state: PublishedState): Promise<void>;
  /** Removes everything publish() wrote (shutdown with cleanup). Optional: standalone has nothing to remove. Must not throw. */
  withdraw?(): Promise<void>;
  stop(): Promise<void>;
}

export interface PublishedState {
  readonly publicKey: string;
  readonly overlayIp: string | null;
  readonly ready: boolean;
  readonly reason: string;
}
