// Which overlay IPs the prober probes: one per WireGuard peer (for a gateway peer, the gateway node
// itself). Pure: from the desired state the reconciler applied and the verified records.
import type { NodeRecord } from '../../protocol/messages.ts';
import type { DesiredState } from '../plan/model.ts';
import type { ProbeTarget } from './prober.ts';

export function probeTargets(desired: DesiredState | null, nodes: ReadonlyMap<string, NodeRecord>): ProbeTarget[] {
  const out: ProbeTarget[] = [];
  for (const p of desired?.peers ?? []) {
    const ip = nodes.get(p.node)?.overlayIp;
    if (ip !== undefined) out.push({ name: p.node, ip });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}
