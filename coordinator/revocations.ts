// The revocations the leader enforces, held in memory: loaded with the snapshot when a term starts,
// then kept current by a watch on `revoked.>`. In memory because every heartbeat is checked and
// a KV round trip per heartbeat would cost far more than the rare revocation is worth; the watch is
// needed anyway so the leader removes a revoked node (and replaces a revoked gateway) at once.
// Each change carries its KV revision, so a snapshot and a watch that overlap, or a replayed watch,
// can never undo a newer change.
import type { ErrorBody, NodeRecord, Revocation } from '../protocol/messages.ts';
import { byName } from '../lib/compare.ts';

/** Why a request or record is covered by a revocation: its name, or one of the revoked node's keys. */
export interface RevocationMatch {
  readonly revocation: Revocation;
  readonly field: 'name' | 'identityKey' | 'publicKey';
}

export class RevocationTable {
  private readonly held = new Map<string, Revocation>();
  /** Revision of the last change applied per name, deletions included. */
  private readonly revisions = new Map<string, number>();
  private readonly byIdentityKey = new Map<string, Revocation>();
  private readonly byPublicKey = new Map<string, Revocation>();

  /**
   * Applies a revocation (`value`) or its removal (null) seen at KV `revision`. Returns false, and
   * changes nothing, when the table already reflects that revision or a newer one.
   */
  apply(name: string, value: Revocation | null, revision: number): boolean {
    if (revision <= (this.revisions.get(name) ?? 0)) return false;
    this.revisions.set(name, revision);
    if (value === null) this.held.delete(name);
    else this.held.set(name, value);
    this.reindex();
    return true;
  }

  get(name: string): Revocation | undefined {
    return this.held.get(name);
  }

  all(): Revocation[] {
    return [...this.held.values()].sort(byName);
  }

  get size(): number {
    return this.held.size;
  }

  /**
   * A revoked name is blocked for every identity until the revocation is lifted; the revoked node's
   * identity and WireGuard keys are blocked under every name (a stolen key must not come back).
   */
  forRegistration(req: Pick<NodeRecord, 'name' | 'identityKey' | 'publicKey'>): RevocationMatch | undefined {
    const byName = this.held.get(req.name);
    if (byName) return { revocation: byName, field: 'name' };
    const byIdentity = this.byIdentityKey.get(req.identityKey);
    if (byIdentity) return { revocation: byIdentity, field: 'identityKey' };
    const byWireguard = this.byPublicKey.get(req.publicKey);
    if (byWireguard) return { revocation: byWireguard, field: 'publicKey' };
    return undefined;
  }

  forHeartbeat(name: string, identityKey: string): RevocationMatch | undefined {
    const byName = this.held.get(name);
    if (byName) return { revocation: byName, field: 'name' };
    const byIdentity = this.byIdentityKey.get(identityKey);
    return byIdentity ? { revocation: byIdentity, field: 'identityKey' } : undefined;
  }

  /** The revocation that covers a live node record, if any (same rule as for a registration). */
  forRecord(record: Pick<NodeRecord, 'name' | 'identityKey' | 'publicKey'>): RevocationMatch | undefined {
    return this.forRegistration(record);
  }

  private reindex(): void {
    this.byIdentityKey.clear();
    this.byPublicKey.clear();
    for (const value of this.held.values()) {
      if (value.identityKey !== null) this.byIdentityKey.set(value.identityKey, value);
      if (value.publicKey !== null) this.byPublicKey.set(value.publicKey, value);
    }
  }
}

/** The `unauthorized` reply for a request a revocation covers: what was revoked, when, why, and how to undo it. */
export function revocationError(match: RevocationMatch): ErrorBody {
  const r = match.revocation;
  const when = new Date(r.revokedAt).toISOString();
  const why = r.reason === '' ? 'no reason given' : `reason: ${JSON.stringify(r.reason)}`;
  const undo = `an operator can lift it with \`crosslink-coordinator unrevoke ${r.name}\``;
  switch (match.field) {
    case 'name':
      return {
        code: 'unauthorized',
        revoked: true,
        field: 'name',
        message: `node "${r.name}" was revoked at ${when} (${why}); it may not register or heartbeat while revoked; ${undo}`,
      };
    case 'identityKey':
      return {
        code: 'unauthorized',
        revoked: true,
        field: 'identityKey',
        message: `identityKey: ${JSON.stringify(r.identityKey)} is the identity key of node "${r.name}", revoked at ${when} (${why}); a revoked key may not be used under any name: generate a new identity key, or ${undo}`,
      };
    case 'publicKey':
      return {
        code: 'unauthorized',
        revoked: true,
        field: 'publicKey',
        message: `publicKey: ${JSON.stringify(r.publicKey)} is the WireGuard key of node "${r.name}", revoked at ${when} (${why}); a revoked key may not be used under any name: generate a new WireGuard key, or ${undo}`,
      };
  }
}
