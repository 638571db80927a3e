// Per-cluster limits under concurrency (nodes: registry.ts; service exports: services.ts). Requests
// for different names run side by side under per-name locks, so "count the live members, then write"
// would let two requests both take the last slot: each one in flight holds a claim from the check
// until its write is done (or failed), and the check counts the live members plus the claims of the
// others. Check and claim are one synchronous step (no await between them). A claimant that is
// already counted among the live members (its write landed before it released) counts once.

/** A slot held until `release()` (idempotent). */
export interface HeldSlot {
  readonly ok: true;
  release(): void;
}

export type SlotClaim = HeldSlot | { readonly ok: false; readonly limit: number; readonly live: number; readonly inFlight: number };

/** Nothing to release: a request the limit does not apply to (no limit, or an update of a member). */
export const NO_CLAIM: HeldSlot = Object.freeze({ ok: true, release: () => undefined });

export class SlotClaims {
  /** Scope (a cluster) → the members whose write is in flight. */
  private readonly inFlight = new Map<string, Set<string>>();

  /**
   * Claims one of `limit` slots of `scope` for `member` (not yet a live member). `live`: the scope's
   * live members now; `isLive(m)`: whether `m` is already among them. Refused when the live members
   * and the other claims fill the limit.
   */
  claim(scope: string, member: string, limit: number, live: number, isLive: (member: string) => boolean): SlotClaim {
    let claims = this.inFlight.get(scope);
    let pending = 0;
    for (const m of claims ?? []) if (m !== member && !isLive(m)) pending++;
    if (live + pending >= limit) return { ok: false, limit, live, inFlight: pending };
    if (!claims) this.inFlight.set(scope, (claims = new Set()));
    claims.add(member);
    const held = claims;
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        held.delete(member);
        if (held.size === 0 && this.inFlight.get(scope) === held) this.inFlight.delete(scope);
      },
    };
  }

  /** Claims in flight for `scope` (tests, diagnostics). */
  pending(scope: string): number {
    return this.inFlight.get(scope)?.size ?? 0;
  }
}
