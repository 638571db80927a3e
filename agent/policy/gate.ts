// `--policy-enforcement required` on a node that cannot enforce: the desired state keeps the
// interface but carries no overlay traffic (no peers, routes or relays), and every remote says why.
import type { DesiredState } from '../plan/model.ts';

export function withoutOverlayTraffic(desired: DesiredState, reason: string): DesiredState {
  return {
    ...desired,
    peers: [],
    routes: [],
    relays: [],
    remotes: desired.remotes.map((r) => ({ ...r, path: 'none', via: null, reason })),
  };
}
