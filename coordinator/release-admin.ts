// `crosslink-coordinator release <node>`: the operator frees a node name for another identity key.
// A name stays bound to its identity key (bindings.ts) until the node deregisters with that key or
// this runs; silence never frees it. Works on the bucket directly, with or without a running
// coordinator (the leader re-reads a binding before refusing a registration over it).
import type { Clock } from '../lib/clock.ts';
import { CrosslinkError } from '../lib/errors.ts';
import { releasedBinding, type IdentityBinding } from './bindings.ts';
import { isCasConflict, type StateStore } from './store.ts';

export class ReleaseError extends CrosslinkError {
  override name = 'ReleaseError';
}

const ATTEMPTS = 5;

/** Releases the binding of `name`; returns it as it was. Refused while the node is registered. */
export async function releaseNode(deps: { readonly store: StateStore; readonly clock: Clock }, name: string): Promise<IdentityBinding> {
  for (let attempt = 1; ; attempt++) {
    const live = await deps.store.readNode(name);
    if (live) {
      throw new ReleaseError(
        `node "${name}" is registered (overlay IP ${live.value.overlayIp}); a live node keeps its name: stop its agent (it deregisters) or revoke it with \`crosslink-coordinator revoke ${name}\``,
      );
    }
    const bound = [...(await deps.store.loadBindings()).values()].find((b) => b.value.name === name && b.value.releasedAt === undefined);
    if (!bound) throw new ReleaseError(`node "${name}" is not bound to any identity key (never registered, deregistered or released already): nothing to release`);
    try {
      await deps.store.putBinding(releasedBinding(bound.value, 'operator', deps.clock.now()), bound.revision);
      return bound.value;
    } catch (err) {
      if (!isCasConflict(err) || attempt >= ATTEMPTS) throw err;
    }
  }
}
