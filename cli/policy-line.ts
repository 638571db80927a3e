// The policy's one line in `crosslink status` (and `policy explain`). Pure.
import type { PolicyStatus } from '../protocol/policy/status.ts';

/** One line for `crosslink status`. */
export function policyLine(p: PolicyStatus | undefined): string {
  if (!p) return 'unknown (agent predates policies)';
  if (p.nft === 'missing') return `NOT ENFORCED: ${p.nftError ?? 'nft missing'}${p.blocksTraffic ? ' (required: no overlay traffic)' : ' (best-effort: unfiltered)'}`;
  if (p.desiredVersion === null && p.enforcedVersion === null) return 'none set (every cluster reaches every cluster)';
  const drops = p.drops.reduce((n, d) => n + d.packets, 0);
  const state = p.enforcing ? `v${p.enforcedVersion ?? '?'} enforced` : `v${p.desiredVersion ?? '?'} NOT enforced yet (live table: ${p.enforcedVersion === null ? 'none' : `v${p.enforcedVersion}`})`;
  return `${state}, ${drops} packet${drops === 1 ? '' : 's'} dropped${p.lastError ? `; last apply failed: ${p.lastError}` : ''}`;
}

