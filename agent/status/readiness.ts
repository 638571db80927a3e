// Readiness (GET /readyz, the Kubernetes condition): registered, a complete KV snapshot, and one
// full reconcile that succeeded. Stays ready through coordinator/NATS outages (fail-static).
import type { Readiness } from '../../protocol/status-api.ts';
import type { ControlPlaneState } from '../control/control-plane.ts';
import type { ReconcileRecord } from '../reconciler.ts';

export interface ReadinessInputs {
  /** undefined before the first NATS connection. */
  readonly controlPlane: (Pick<ControlPlaneState, 'registered' | 'lastError'> & Partial<Pick<ControlPlaneState, 'revoked'>>) | undefined;
  /** The watch has read a complete snapshot. */
  readonly meshComplete: boolean;
  /** At least one full reconcile succeeded. */
  readonly reconciled: boolean;
  readonly lastReconcile: Pick<ReconcileRecord, 'error'> | null;
  /** Why the access policy is not enforced as required (null: fine or not required). */
  readonly policyNotReady: string | null;
}

export function readinessOf(i: ReadinessInputs): Readiness {
  const cp = i.controlPlane;
  if (!cp) return { ready: false, reason: 'not connected to NATS yet' };
  if (cp.revoked) return { ready: false, reason: `revoked by an operator: ${cp.revoked}` };
  if (!cp.registered) return { ready: false, reason: `not registered yet${cp.lastError ? `: ${cp.lastError}` : ''}` };
  if (!i.meshComplete) return { ready: false, reason: 'KV snapshot not loaded yet' };
  if (!i.reconciled) return { ready: false, reason: `not reconciled yet${i.lastReconcile?.error ? `: ${i.lastReconcile.error}` : ''}` };
  if (i.policyNotReady !== null) return { ready: false, reason: i.policyNotReady };
  return { ready: true, reason: 'registered and reconciled' };
}
