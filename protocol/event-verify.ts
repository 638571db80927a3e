// Who really said it: the check every reader of mesh events (protocol/events.ts) runs before it
// attributes one. An event is a SignedEnvelope; it counts as the coordinator's only if it verifies
// with the coordinator key set and is of a coordinator type, and as agent N's only if it verifies
// with the identity key N's coordinator-signed node record binds to N, is of an agent type, is about
// N itself (or no node), and came on the subject of its type. Anything else is `unverified` (shown
// as such, never attributed) or `invalid` (not an event at all). Pure apart from the injected key
// lookup.
import { AGENT_EVENT_TYPES, CrosslinkEvent, type EventType } from './events.ts';
import { SignedEnvelope } from './messages.ts';
import { checkEnvelopeSignature, openEnvelopeUnverified, type VerifyKeys } from './signing.ts';

export type EventVerdict =
  | { readonly ok: true; readonly event: CrosslinkEvent }
  /** A well-formed event whose reporter could not be confirmed: `claimed` is what it says, not who said it. */
  | { readonly ok: false; readonly kind: 'unverified'; readonly claimed: CrosslinkEvent; readonly reason: string }
  | { readonly ok: false; readonly kind: 'invalid'; readonly reason: string };

export interface EventSigners {
  /** The coordinator's public key set (the current key and, during a rotation, previous ones). */
  readonly coordinator: VerifyKeys;
  /**
   * The identity key bound to node `name` by its coordinator-signed record (undefined: no such
   * record). `fresh`: asked again after a signature failed with what an earlier call returned (the
   * name may have been released and bound to a new key since). Rejects when the record cannot be
   * read (the bucket unavailable): the event is then unverified with that reason, not "no record".
   */
  identityOf(name: string, fresh: boolean): Promise<string | undefined>;
}

const AGENT_TYPES: ReadonlySet<EventType> = new Set(AGENT_EVENT_TYPES);

/** Is `type` one an agent publishes (the others are the coordinator's)? */
export function isAgentEventType(type: EventType): boolean {
  return AGENT_TYPES.has(type);
}

const issues = (e: { issues: readonly { path: readonly PropertyKey[]; message: string }[] }): string => e.issues.map((i) => `${i.path.map(String).join('.')}: ${i.message}`).join('; ');

const verifies = (envelope: SignedEnvelope, key: VerifyKeys): boolean => {
  try {
    checkEnvelopeSignature(envelope, key);
    return true;
  } catch {
    return false;
  }
};

/**
 * Verifies one message of the events subject or stream (`subject`: where it was published, if
 * known). Never throws.
 */
export async function verifyEvent(data: Uint8Array, subject: string | undefined, signers: EventSigners): Promise<EventVerdict> {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(data).toString('utf8')) as unknown;
  } catch {
    return { ok: false, kind: 'invalid', reason: 'not JSON' };
  }
  const envelope = SignedEnvelope.safeParse(raw);
  if (!envelope.success) {
    // An unsigned event (a publisher older than event signing, or a forgery): what it claims, unconfirmed.
    const bare = CrosslinkEvent.safeParse(raw);
    return bare.success ? { ok: false, kind: 'unverified', claimed: bare.data, reason: 'not signed' } : { ok: false, kind: 'invalid', reason: issues(bare.error) };
  }
  let opened: unknown;
  try {
    opened = openEnvelopeUnverified(envelope.data);
  } catch {
    return { ok: false, kind: 'invalid', reason: 'signed payload is not base64 JSON' };
  }
  const parsed = CrosslinkEvent.safeParse(opened);
  if (!parsed.success) return { ok: false, kind: 'invalid', reason: issues(parsed.error) };
  const e = parsed.data;
  const unverified = (reason: string): EventVerdict => ({ ok: false, kind: 'unverified', claimed: e, reason });
  if (subject !== undefined && !subject.endsWith(`.events.${e.type}`)) return unverified(`published on ${subject}, not on the subject of type ${e.type}`);
  const { role, name } = e.reporter;
  if (role === 'coordinator') {
    if (isAgentEventType(e.type)) return unverified(`${e.type} is an agent's event type, not the coordinator's`);
    return verifies(envelope.data, signers.coordinator) ? { ok: true, event: e } : unverified('signature does not verify with the coordinator key');
  }
  if (!isAgentEventType(e.type)) return unverified(`${e.type} is the coordinator's event type; agent ${name} cannot report it`);
  if (e.node !== undefined && e.node !== name) return unverified(`agent ${name} reports about another node (${e.node})`);
  const lookup = async (fresh: boolean): Promise<{ key: string | undefined } | { failed: string }> => {
    try {
      return { key: await signers.identityOf(name, fresh) };
    } catch (err) {
      return { failed: err instanceof Error ? err.message : String(err) };
    }
  };
  const cannotRead = (why: string): EventVerdict => unverified(`cannot read node ${name}'s record to check its signature (${why}); not a verdict on the event`);
  const first = await lookup(false);
  if ('failed' in first) return cannotRead(first.failed);
  const key = first.key;
  if (key === undefined) return unverified(`no verified node record for ${name}: its identity key is unknown (left the mesh, or never joined)`);
  if (verifies(envelope.data, key)) return { ok: true, event: e };
  const fresh = await lookup(true);
  if ('failed' in fresh) return cannotRead(fresh.failed);
  const again = fresh.key;
  if (again !== undefined && again !== key && verifies(envelope.data, again)) return { ok: true, event: e };
  return unverified(`signature does not verify with the identity key of node ${name}`);
}
