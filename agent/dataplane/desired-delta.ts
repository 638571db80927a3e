// What changed between the desired state the last apply realised and the next one, found by object
// identity in one merge walk over both sorted lists: the incremental planner (agent/plan/
// incremental-plan.ts) hands unchanged peers and routes on as the same objects, so a join is one
// changed peer and its routes. A change-driven apply then diffs, plans commands for and records only
// those keys (agent/dataplane/dataplane.ts). A peer or route that is a new object but equal in value
// simply diffs to no command. Pure.
import type { DesiredPeer, DesiredRoute, DesiredState } from '../plan/model.ts';

export interface DesiredDelta {
  /** Desired peers that are new or changed (sorted by public key). */
  readonly peers: readonly DesiredPeer[];
  /** Public keys of peers added, changed or removed. */
  readonly peerKeys: ReadonlySet<string>;
  /** Desired routes that are new or changed (sorted by destination). */
  readonly routes: readonly DesiredRoute[];
  /** Destinations of routes added, changed or removed. */
  readonly routeDsts: ReadonlySet<string>;
}

/** Items of `after` not identical to `before`'s, and the keys touched; undefined if a list repeats a key (not keyed: diff everything). */
function changes<T>(before: readonly T[], after: readonly T[], keyOf: (item: T) => string): { items: T[]; keys: Set<string> } | undefined {
  const items: T[] = [];
  const keys = new Set<string>();
  let i = 0;
  let j = 0;
  let lastA: string | undefined;
  let lastB: string | undefined;
  while (i < before.length || j < after.length) {
    const a = before[i];
    const b = after[j];
    if (a !== undefined && a === b) {
      i++;
      j++;
      continue;
    }
    const ka = a === undefined ? undefined : keyOf(a);
    const kb = b === undefined ? undefined : keyOf(b);
    if ((ka !== undefined && ka === lastA) || (kb !== undefined && kb === lastB)) return undefined;
    if (kb === undefined || (ka !== undefined && ka < kb)) {
      keys.add(ka as string);
      lastA = ka;
      i++;
    } else if (ka === undefined || kb < ka) {
      items.push(b as T);
      keys.add(kb);
      lastB = kb;
      j++;
    } else {
      items.push(b as T);
      keys.add(kb);
      lastA = ka;
      lastB = kb;
      i++;
      j++;
    }
  }
  return { items, keys };
}

/** The delta from `before` to `after`, or undefined when it cannot be keyed (a repeated key: diff everything). */
export function desiredDelta(before: DesiredState, after: DesiredState): DesiredDelta | undefined {
  const peers = changes(before.peers, after.peers, (p) => p.publicKey);
  const routes = changes(before.routes, after.routes, (r) => r.dst);
  if (peers === undefined || routes === undefined) return undefined;
  return { peers: peers.items, peerKeys: peers.keys, routes: routes.items, routeDsts: routes.keys };
}
