// Persistent node identity and the replay high-water mark, one coordinator-signed record per
// identity key (`identities.<key>`). A node name stays bound to the identity key that first
// registered it until that node deregisters (signed with the key) or an operator runs
// `crosslink-coordinator release <node>`: silence (expiry) never frees a name for another key.
// `lastSentAt` is the highest sentAt accepted from the key (registration, deregistration); it is
// kept after release, so a captured request can never be replayed, across deregistration and any
// coordinator restart or failover. A released binding older than the clock-skew window can be
// dropped: every request it could guard against is refused as stale by then.
import * as z from 'zod';
import { Key32, NodeName, type ErrorBody } from '../protocol/messages.ts';

export const ReleaseCause = z.enum(['deregistered', 'operator', 'never-alive']);
export type ReleaseCause = z.infer<typeof ReleaseCause>;

export const IdentityBinding = z
  .object({
    kind: z.literal('identity'),
    v: z.literal(1),
    identityKey: Key32,
    /** The node name this key speaks for (while not released, no other key may register it). */
    name: NodeName,
    /** The node's WireGuard key at its last registration (revocation of an offline node uses it). */
    publicKey: Key32,
    boundAt: z.number().int().nonnegative(),
    /** Highest sentAt accepted from this key (replay high-water mark). */
    lastSentAt: z.number().int().nonnegative(),
    /** First heartbeat accepted after the latest registration; absent: the node never came alive. */
    aliveAt: z.number().int().nonnegative().optional(),
    releasedAt: z.number().int().nonnegative().optional(),
    releasedBy: ReleaseCause.optional(),
    updatedAt: z.number().int().nonnegative(),
  })
  .strict();
export type IdentityBinding = z.infer<typeof IdentityBinding>;

/** What the leader knows of the bindings: by identity key, and the unreleased ones by node name. */
export class BindingTable {
  private readonly byKey = new Map<string, { value: IdentityBinding; revision: number }>();
  private readonly byName = new Map<string, string>();

  set(value: IdentityBinding, revision: number): void {
    const old = this.byKey.get(value.identityKey);
    if (old && this.byName.get(old.value.name) === old.value.identityKey) this.byName.delete(old.value.name);
    this.byKey.set(value.identityKey, { value, revision });
    if (value.releasedAt === undefined) this.byName.set(value.name, value.identityKey);
  }

  delete(identityKey: string): void {
    const old = this.byKey.get(identityKey);
    if (!old) return;
    if (this.byName.get(old.value.name) === identityKey) this.byName.delete(old.value.name);
    this.byKey.delete(identityKey);
  }

  ofKey(identityKey: string): { value: IdentityBinding; revision: number } | undefined {
    return this.byKey.get(identityKey);
  }

  /** The unreleased binding holding `name`, if any. */
  ofName(name: string): { value: IdentityBinding; revision: number } | undefined {
    const key = this.byName.get(name);
    return key === undefined ? undefined : this.byKey.get(key);
  }

  values(): IdentityBinding[] {
    return [...this.byKey.values()].map((b) => b.value);
  }

  get size(): number {
    return this.byKey.size;
  }
}

/**
 * Why `identityKey` may not register `name` (or send a request dated `sentAt`), or undefined.
 * `byName`: the unreleased binding of the name; `byKey`: the binding of the requesting key.
 */
export function bindingRefusal(
  req: { readonly name: string; readonly identityKey: string; readonly sentAt: number },
  byName: IdentityBinding | undefined,
  byKey: IdentityBinding | undefined,
): ErrorBody | undefined {
  if (byName && byName.identityKey !== req.identityKey) {
    return {
      code: 'unauthorized',
      field: 'identityKey',
      message: `identityKey: ${JSON.stringify(req.identityKey)} may not register node "${req.name}": the name is bound to identity key ${byName.identityKey} since ${new Date(byName.boundAt).toISOString()}, until that node deregisters or an operator runs \`crosslink-coordinator release ${req.name}\``,
    };
  }
  if (byKey) {
    if (byKey.releasedAt === undefined && byKey.name !== req.name) {
      return {
        code: 'conflict',
        field: 'name',
        message: `name: ${JSON.stringify(req.name)}: identity key ${req.identityKey} is bound to node "${byKey.name}"; one identity key speaks for one node: deregister "${byKey.name}" first or run \`crosslink-coordinator release ${byKey.name}\``,
      };
    }
    if (req.sentAt <= byKey.lastSentAt) return staleRefusal(req.sentAt, byKey.lastSentAt);
  }
  return undefined;
}

/** The reply to a request whose sentAt is not above the key's high-water mark. */
export function staleRefusal(sentAt: number, mark: number): ErrorBody {
  return {
    code: 'stale',
    field: 'sentAt',
    message: `sentAt: ${sentAt} is not later than ${mark}, the last request accepted from this identity key; replayed request? (sentAt must increase with every request)`,
  };
}

/** The binding after an accepted registration of `req` at `now`. */
export function boundBinding(
  req: { readonly name: string; readonly identityKey: string; readonly publicKey: string; readonly sentAt: number },
  previous: IdentityBinding | undefined,
  now: number,
): IdentityBinding {
  const rebound = previous === undefined || previous.releasedAt !== undefined || previous.name !== req.name;
  return {
    kind: 'identity',
    v: 1,
    identityKey: req.identityKey,
    name: req.name,
    publicKey: req.publicKey,
    boundAt: rebound ? now : previous.boundAt,
    lastSentAt: Math.max(req.sentAt, previous?.lastSentAt ?? 0),
    // Every registration starts a new "came alive?" question, answered by its first heartbeat.
    updatedAt: now,
  };
}

/** The binding once the node came alive (its first heartbeat). One shared hidden class: see nodeRecordOf. */
export function aliveBinding(b: IdentityBinding, at: number): IdentityBinding {
  return Object.assign({}, b, { aliveAt: at, updatedAt: at });
}

/** The binding released (deregistration, operator, never came alive); the high-water mark stays. */
export function releasedBinding(b: IdentityBinding, cause: ReleaseCause, now: number, sentAt?: number): IdentityBinding {
  return { ...b, lastSentAt: Math.max(b.lastSentAt, sentAt ?? 0), releasedAt: now, releasedBy: cause, updatedAt: now };
}
