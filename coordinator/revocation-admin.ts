// The operator's revocation commands, on the bucket directly (they work with or without a running
// coordinator): revoke writes a coordinator-signed `revoked.<name>` and then deletes `nodes.<name>`
// so every agent drops the node at once; unrevoke deletes the revocation; list reads them all.
// The leader follows `revoked.>` and enforces each change (see registry.applyRevocation).
import { jsonEqual } from '../lib/json-equal.ts';
import type { Clock } from '../lib/clock.ts';
import { CrosslinkError, ValidationError } from '../lib/errors.ts';
import { NodeName, Revocation, type NodeRecord } from '../protocol/messages.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { isCasConflict, type StateStore, type StoredRecord } from './store.ts';
import { byName } from '../lib/compare.ts';

export class RevocationAdminError extends CrosslinkError {
  override name = 'RevocationAdminError';
}

export interface RevocationAdminDeps {
  readonly store: StateStore;
  readonly clock: Clock;
}

export interface RevokeResult {
  readonly revocation: Revocation;
  /** The revocation that was already there (the command was repeated), or null. */
  readonly previous: Revocation | null;
  /** The node record removed (by this command, or by the leader racing it); null when the node was not registered. */
  readonly removed: NodeRecord | null;
}

/** Compare-and-set attempts before giving up (the leader may be rewriting the same keys). */
const ATTEMPTS = 5;

const REASON_MAX = 512;

/** Checks a node name given on the command line. */
export function parseNodeName(name: string): string {
  const r = NodeName.safeParse(name);
  if (!r.success) throw new ValidationError('node', name, `use a node name: ${r.error.issues[0]?.message ?? 'a DNS subdomain'}`);
  return r.data;
}

export function parseReason(reason: string | undefined): string {
  const r = (reason ?? '').trim();
  if (r.length > REASON_MAX) throw new ValidationError('--reason', `${r.slice(0, 40)}…`, `use at most ${REASON_MAX} characters`);
  return r;
}

/**
 * Revokes `name`: learns its keys from its current record (none if it is not registered: then the
 * revocation blocks the name for any identity), writes the signed revocation, then deletes the
 * record. Repeating it is harmless: the original `revokedAt` is kept, keys learned earlier are kept,
 * and `reason` replaces the old one only when given.
 */
export async function revokeNode(deps: RevocationAdminDeps, name: string, reason: string | undefined): Promise<RevokeResult> {
  const { store, clock } = deps;
  // If the leader deletes the record between our read and our delete, report the record we saw.
  let seen: NodeRecord | undefined;
  // What was there before this command wrote anything. Once our write went through, a retry (the
  // leader deleted the record first, so our delete conflicted) reads our own revocation back: that
  // must not be reported as "already revoked".
  let previous: Revocation | null | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      const record = await store.readNode(name);
      seen = record?.value ?? seen;
      const existing = await store.readRevocation(name);
      if (previous === undefined) previous = existing?.value ?? null;
      // An offline node: its keys come from what the coordinator stored when it registered.
      const stored = record ? undefined : await storedKeysOf(store, name);
      const revocation = Revocation.parse({
        kind: 'revocation',
        v: 1,
        name,
        identityKey: record?.value.identityKey ?? existing?.value.identityKey ?? stored?.identityKey ?? null,
        publicKey: record?.value.publicKey ?? existing?.value.publicKey ?? stored?.publicKey ?? null,
        reason: reason === undefined ? (existing?.value.reason ?? '') : parseReason(reason),
        revokedAt: existing?.value.revokedAt ?? clock.now(),
      } satisfies Revocation);
      // The revocation first: once the record is gone the agent re-registers, and must be refused.
      if (!existing || !existing.signedByUs || !jsonEqual(existing.value, revocation)) {
        try {
          await store.putRevocation(revocation, existing?.revision);
        } catch (err) {
          // Someone else wrote it meanwhile: what we read was not the state before us after all.
          previous = undefined;
          throw err;
        }
      }
      if (record) await store.delete(kvKeys.node(name), record.revision);
      return { revocation, previous, removed: seen ?? null };
    } catch (err) {
      // The record or the revocation changed since we read them (the leader re-registered or
      // removed the node meanwhile): read again.
      if (!isCasConflict(err) || attempt >= ATTEMPTS) throw err;
    }
  }
}

/**
 * The keys last registered under `name` (bindings.ts): the binding holding the name, else the one
 * that held it last (a released name's last owner is still the best guess of who is being revoked).
 */
async function storedKeysOf(store: StateStore, name: string): Promise<{ identityKey: string; publicKey: string } | undefined> {
  const mine = [...(await store.loadBindings()).values()].map((b) => b.value).filter((b) => b.name === name);
  const best = mine.find((b) => b.releasedAt === undefined) ?? mine.sort((a, b) => b.updatedAt - a.updatedAt)[0];
  return best ? { identityKey: best.identityKey, publicKey: best.publicKey } : undefined;
}

/** Lifts the revocation of `name`; returns what was lifted. Throws if `name` is not revoked. */
export async function unrevokeNode(deps: Pick<RevocationAdminDeps, 'store'>, name: string): Promise<Revocation> {
  for (let attempt = 1; ; attempt++) {
    const existing = await deps.store.readRevocation(name);
    if (!existing) {
      throw new RevocationAdminError(`node "${name}" is not revoked (nothing to undo); \`crosslink-coordinator revocations\` lists the revoked nodes`);
    }
    try {
      await deps.store.delete(kvKeys.revoked(name), existing.revision);
      return existing.value;
    } catch (err) {
      if (!isCasConflict(err) || attempt >= ATTEMPTS) throw err;
    }
  }
}

/** Every revocation, sorted by name; `signedByUs` false means signed by another (older) key. */
export async function listRevocations(deps: Pick<RevocationAdminDeps, 'store'>): Promise<StoredRecord<Revocation>[]> {
  const all = await deps.store.loadRevocations();
  return [...all.values()].sort((a, b) => byName(a.value, b.value));
}
