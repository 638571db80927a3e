// Pure: has the lab converged? Every running agent registered and ready, and every agent knows a
// path (not "none") to every running node of the other clouds. Reasons name what is missing.
import type { AgentStatus } from '../protocol/status.ts';
import type { LabPlan } from './plan.ts';

export type StatusOrError = AgentStatus | Error;

export interface Convergence {
  readonly converged: boolean;
  /** Empty when converged; otherwise one line per problem. */
  readonly problems: readonly string[];
}

export function checkConvergence(plan: LabPlan, running: ReadonlySet<string>, statuses: ReadonlyMap<string, StatusOrError>): Convergence {
  const problems: string[] = [];
  for (const node of plan.nodes) {
    if (!running.has(node.name)) continue;
    const s = statuses.get(node.name);
    if (s === undefined) {
      problems.push(`${node.name}: no status`);
      continue;
    }
    if (s instanceof Error) {
      problems.push(`${node.name}: ${s.message}`);
      continue;
    }
    if (!s.controlPlane.registered) problems.push(`${node.name}: not registered${s.controlPlane.lastError ? ` (${s.controlPlane.lastError})` : ''}`);
    if (!s.ready) problems.push(`${node.name}: not ready${s.lastReconcile?.error ? ` (${s.lastReconcile.error})` : ''}`);
    for (const other of plan.nodes) {
      if (other.cloud === node.cloud || !running.has(other.name)) continue;
      const r = s.remotes.find((x) => x.node === other.name);
      if (!r) problems.push(`${node.name}: does not know ${other.name} yet`);
      else if (r.path === 'none') problems.push(`${node.name}: no path to ${other.name}${r.reason ? ` (${r.reason})` : ''}`);
    }
  }
  return { converged: problems.length === 0, problems };
}
