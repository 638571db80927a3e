// What one reconcile hands to the data plane, computed from plain inputs only: the KV watch's
// snapshot, our own verified record, the key in force. Pure; the reconciler calls it once per run.
import { hostCidr } from '../../protocol/cidr.ts';
import type { NodeRecord } from '../../protocol/messages.ts';
import type { DataplaneTarget } from '../dataplane/api.ts';
import type { DesiredStateOptions } from './desired-state.ts';
import type { DataplaneConfig, DesiredState, MeshSnapshot, MeshView } from './model.ts';
import type { HostFacts } from './route-guard.ts';

/**
 * Everything a reconcile works from: immutable data pushed in by the agent as it changes (the
 * watch's snapshot, the control plane's record, a rotated key). A module that adds an input (a
 * policy snapshot, say) adds a field here and reads it in its computeDesiredState step.
 */
export interface ReconcileInputs {
  /** The KV watch's latest snapshot; null before the watch delivered one. */
  readonly mesh: MeshSnapshot | null;
  /** Our own newest verified record (register reply or KV); null before the first registration. */
  readonly self: NodeRecord | null;
  /** The WireGuard private key in force (key rotation replaces it). Never logged. */
  readonly privateKey: string;
  /** The overlay IP cached in the state dir: the interface keeps it until the first registration. */
  readonly cachedOverlayIp: string | null;
}

export type ComputeDesiredState = (view: MeshView, config: DataplaneConfig, host: HostFacts, options: DesiredStateOptions) => DesiredState;

/**
 * The verified view to realise, or undefined while we may not act on one (fail-static): without our
 * own record we have no overlay IP, and without a complete snapshot we could only remove peers we
 * merely have not read yet.
 */
export function viewOf(inputs: Pick<ReconcileInputs, 'mesh' | 'self'>): MeshView | undefined {
  const { mesh, self } = inputs;
  if (self === null || mesh === null || !mesh.complete) return undefined;
  return { self, nodes: mesh.nodes, clusters: mesh.clusters };
}

/**
 * The target for these inputs. `host` (the route guard's snapshot of the host) is needed only when
 * there is a view: pass a function so it is read only then.
 */
export async function planTarget(
  inputs: ReconcileInputs,
  config: DataplaneConfig,
  compute: ComputeDesiredState,
  host: () => Promise<HostFacts>,
  options: DesiredStateOptions = {},
): Promise<DataplaneTarget> {
  const view = viewOf(inputs);
  if (view === undefined) {
    const ip = inputs.self?.overlayIp ?? inputs.cachedOverlayIp;
    return {
      privateKey: inputs.privateKey,
      interface: { name: config.interfaceName, listenPort: config.listenPort, mtu: config.mtu, addresses: ip === null ? [] : [hostCidr(ip)] },
      desired: null,
      advertisedEndpoints: inputs.self?.endpoints ?? [],
    };
  }
  // The guard's input is read before planning: a host we cannot read is not routed into.
  const desired = compute(view, config, await host(), options);
  return { privateKey: inputs.privateKey, interface: desired.interface, desired, advertisedEndpoints: view.self.endpoints };
}
