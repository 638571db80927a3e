// The data plane as the reconciler sees it: ONE call, `apply(target)`, realises a desired state —
// the WireGuard interface, its peers, the routes and the relay ports — and reports what it did.
// agent/dataplane/dataplane.ts implements it for Linux; tests fake it (test/agent-helpers.ts).
import { PartialFailureError } from '../../lib/errors.ts';
import type { DesiredInterface, DesiredState, RelayAssignment } from '../plan/model.ts';
import type { RelayStats } from './relay-forwarder.ts';
import type { LivePeer } from './wg-dump.ts';
import type { LiveRoute } from './route-diff.ts';

export type { LivePeer } from './wg-dump.ts';
export type { RelayStats } from './relay-forwarder.ts';

/** Everything one apply realises. Plain data, built fresh for every reconcile (agent/plan/target.ts). */
export interface DataplaneTarget {
  /** The WireGuard private key the interface must hold (key rotation changes it). Never logged. */
  readonly privateKey: string;
  /** The interface to ensure (key, listen port, MTU, addresses, up). Equals `desired.interface` when there is one. */
  readonly interface: DesiredInterface;
  /**
   * Peers, routes and relay ports. null = fail-static (not registered or no complete KV snapshot
   * yet): the interface is ensured, and peers, routes and relay ports stay exactly as they are.
   */
  readonly desired: DesiredState | null;
  /** The endpoints this node advertises (its own verified record): relay ports bind the one that is a local address. */
  readonly advertisedEndpoints: readonly string[];
  /**
   * false: a change-driven apply: diff peers and routes against the state the previous successful
   * apply left instead of re-reading `wg show dump` and the route tables (a join then costs the same
   * whatever the mesh size). Absent or true: read the kernel (start, resync, restarts, after any failure).
   */
  readonly readLive?: boolean;
  /**
   * The main table of both families as this reconcile read it for the route guard (every route,
   * ours included): a reading apply diffs routes against it instead of reading the tables again.
   * Absent: the apply reads them. A change-driven apply prefers the state its previous apply left.
   */
  readonly liveRoutes?: readonly LiveRoute[];
}

export interface ApplyReport {
  /** The interface is in place with the target's key, port, MTU and addresses (key rotation reports this). */
  readonly interfaceEnsured: boolean;
  /** Mutating commands (and relay port changes) that succeeded. */
  readonly changes: number;
  /**
   * Every change attempted, in order, each as its single command (`wg set <if> peer …`,
   * `ip route replace …`); reads are not listed. They run batched: one `wg set` for all peers added
   * or updated, one `ip -force -batch -` for all routes, one `wg set` for all peers removed.
   */
  readonly commands: readonly (readonly string[])[];
  readonly failures: readonly { readonly op: string; readonly error: Error }[];
  /** Desired routes not installed because their destination holds a route Crosslink does not own (why, per route). */
  readonly blocked: readonly string[];
}

/**
 * Thrown by apply() when some changes failed (every other change was still made), and when the
 * live state could not be read after the interface was ensured. Carries the full report.
 */
export class DataplaneApplyError extends PartialFailureError {
  override name = 'DataplaneApplyError';
  constructor(readonly report: ApplyReport) {
    super(report.failures);
  }
}

export interface Dataplane {
  readonly backend: 'kernel' | 'userspace';
  /**
   * Makes the node match the target: reads live state once (one `wg show dump`, the owned routes),
   * ensures the interface, then adds/updates peers, replaces routes, deletes stale routes, removes
   * stale peers (add before delete), opens/closes relay ports, checks forwarding and the MSS clamp.
   * Rejects with DataplaneApplyError after attempting everything if anything failed; with any
   * other error if the interface itself could not be ensured (nothing else was attempted then).
   * Applies never interleave.
   */
  apply(target: DataplaneTarget): Promise<ApplyReport>;
  /** Live WireGuard peers (status, diagnostics; not used by apply). */
  livePeers(): Promise<readonly LivePeer[]>;
  /** Traffic through the relay ports this node holds. */
  relayStats(): readonly RelayStats[];
  /** `--cleanup`: closes relay ports, deletes our routes (proto 149), our iptables rules and the interface. Nothing else. */
  teardown(): Promise<void>;
  /** Closes relay ports and stops supervising. Kernel: interface, peers and routes stay. Userspace: wireguard-go stops, so the interface goes. */
  close(): Promise<void>;
  /** Fires when the interface came back empty (wireguard-go restarted): everything must be re-applied. Returns unsubscribe. */
  onRestart?(listener: (generation: number) => void): () => void;
  /** Fires when the kernel reports a change to our interface, its addresses or routes (agent/dataplane/link-monitor.ts): reconcile to repair drift. Returns unsubscribe. */
  onDrift?(listener: (reason: string) => void): () => void;
}

/** The UDP relay for NATed pairs, driven by the data plane (agent/dataplane/relay-forwarder.ts implements it). */
export interface RelayPorts {
  /**
   * Opens/closes ports so exactly `assignments` are served; `hints` maps peer public keys to the IP
   * our WireGuard sees for them; `bindAddress` is the local address to bind (undefined: any).
   * Rejects if a port could not bind (the rest still apply).
   */
  update(assignments: readonly RelayAssignment[], options?: RelayUpdateOptions): Promise<void>;
  stats(): readonly RelayStats[];
  close(): Promise<void>;
}

export interface RelayUpdateOptions {
  readonly hints?: ReadonlyMap<string, string>;
  readonly bindAddress?: string | undefined;
}
