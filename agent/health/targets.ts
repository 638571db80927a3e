// Which overlay IPs the prober probes: one per WireGuard peer (for a gateway peer, the gateway node
// itself). Pure: from the desired state the reconciler applied and the verified records.
import { byName } from '../../lib/compare.ts';
import type { ClusterRecord, NodeRecord } from '../../protocol/messages.ts';
import type { DesiredState } from '../plan/model.ts';
import type { ProbeTarget } from './prober.ts';

/** Active gateways of gateway clusters (the cluster records name them): probed fast (agent/health/prober.ts). */
export function activeGateways(clusters: ReadonlyMap<string, ClusterRecord>): ReadonlySet<string> {
  const out = new Set<string>();
  for (const c of clusters.values()) if (c.topology === 'gateway' && c.gateway !== null) out.add(c.gateway);
  return out;
}

export function probeTargets(desired: DesiredState | null, nodes: ReadonlyMap<string, NodeRecord>, gateways: ReadonlySet<string> = new Set()): ProbeTarget[] {
  const out: ProbeTarget[] = [];
  for (const p of desired?.peers ?? []) {
    const ip = nodes.get(p.node)?.overlayIp;
    if (ip !== undefined) out.push(gateways.has(p.node) ? { name: p.node, ip, fast: true } : { name: p.node, ip });
  }
  // Code-unit order (lib/compare.ts), not localeCompare: the same order on every machine, and no
  // ICU collation data paged into the agent (~3 MiB resident).
  return out.sort(byName);
}
