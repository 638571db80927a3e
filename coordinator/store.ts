// The coordinator's view of its JetStream KV bucket: typed, signed reads and writes with revisions.
// Every write is compare-and-set against the revision last read, so a second writer (a deposed
// leader that has not noticed yet, an operator) makes the write fail instead of being overwritten.
// With `retry` (the operator's commands) every read and write is retried while JetStream cannot serve
// it (lib/jetstream-retry.ts), and a write whose earlier attempt timed out is checked for having
// landed before a compare-and-set conflict is believed: nothing is applied twice, nothing refused
// that was ours.
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import type { Logger } from '../lib/logger.ts';
import { errorMessage } from '../lib/errors.ts';
import { ReplicaBehindError, outcomeUnknown, retryJetStream, type JetStreamRetryOptions } from '../lib/jetstream-retry.ts';
import { ClusterDefinition, ClusterRecord, NodeRecord, Revocation, SignedEnvelope } from '../protocol/messages.ts';
import { SignatureError, signEnvelope, signEnvelopeNow, verifyEnvelope, type SigningKeyPair } from '../protocol/signing.ts';
import { enrollmentNameFromKey, kvKeys, revokedNameFromKey } from '../protocol/subjects.ts';
import { IpamEntry } from './ipam.ts';
import { IdentityBinding } from './bindings.ts';

/** A record as stored: the typed value, the exact envelope agents verify, and the KV revision for CAS. */
export interface StoredRecord<T> {
  readonly value: T;
  readonly envelope: SignedEnvelope;
  readonly revision: number;
  /** False when the envelope was signed by one of our previous keys (key rotation); the leader re-signs it.
   *  A record signed by any key outside our key set is never returned at all. */
  readonly signedByUs: boolean;
}

export interface StoredIpam {
  readonly value: IpamEntry;
  readonly revision: number;
}

export interface Snapshot {
  readonly nodes: Map<string, StoredRecord<NodeRecord>>;
  readonly clusters: Map<string, StoredRecord<ClusterRecord>>;
  readonly ipam: Map<string, StoredIpam>;
  /** Keyed by node name. */
  readonly revocations: Map<string, StoredRecord<Revocation>>;
  /** Cluster enrollments, keyed by cluster name. */
  readonly definitions: Map<string, StoredRecord<ClusterDefinition>>;
  /** Name bindings and replay marks, keyed by identity key. */
  readonly bindings: Map<string, StoredRecord<IdentityBinding>>;
}

/** True for a failed compare-and-set (the key changed since we read it, or exists on create). */
export function isCasConflict(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof Error && err.name === 'JetStreamApiError' && (code === 10071 || code === 10164);
}

/** Creates the bucket, or opens it if it exists (then a differing replica count is only a warning). */
export async function openBucket(nc: NatsConnection, opts: { bucket: string; replicas: number; logger: Logger }): Promise<KV> {
  const kv = await new Kvm(nc).create(opts.bucket, { replicas: opts.replicas, history: 1, description: 'Crosslink coordinator state' });
  const status = await kv.status();
  if (status.replicas !== opts.replicas) {
    opts.logger.warn(
      { bucket: opts.bucket, bucketReplicas: status.replicas, flagReplicas: opts.replicas },
      'bucket exists with a different replica count; keeping it (change it with `nats stream edit`)',
    );
  }
  return kv;
}

/** One decoded snapshot entry, tagged by its key space. */
export type AnyRecord =
  | { readonly kind: 'node'; readonly record: StoredRecord<NodeRecord> }
  | { readonly kind: 'cluster'; readonly record: StoredRecord<ClusterRecord> }
  | { readonly kind: 'ipam'; readonly record: StoredIpam }
  | { readonly kind: 'revocation'; readonly record: StoredRecord<Revocation> }
  | { readonly kind: 'definition'; readonly record: StoredRecord<ClusterDefinition> }
  | { readonly kind: 'binding'; readonly record: StoredRecord<IdentityBinding> };

const live = (e: KvEntry | null): e is KvEntry => e !== null && e.operation === 'PUT';

export interface StoreOptions {
  /** Retry reads and writes JetStream cannot serve yet (after a NATS server loss), up to a deadline. */
  readonly retry?: JetStreamRetryOptions;
  /**
   * Reads every entry under a small key range without a consumer (direct gets, any replica:
   * lib/kv-catch-up.ts readKvRange) — for the enrollments, which `cluster add` reads twice. A
   * consumer create after a server loss may be placed on the lost server and never answered.
   */
  readonly rangeReader?: (filter: string) => Promise<readonly KvEntry[]>;
}

/** A node record with its envelope and the envelope's text, as StateStore.signNode makes them. */
export class SignedNode {
  readonly data: string;
  constructor(
    readonly record: NodeRecord,
    readonly envelope: SignedEnvelope,
  ) {
    this.data = JSON.stringify(envelope);
  }
}

export class StateStore {
  constructor(
    readonly kv: KV,
    private readonly signingKey: SigningKeyPair,
    private readonly logger: Logger,
    /** Our previous public keys (signing-key rotation): records they signed are trusted and re-signed. */
    private readonly previousKeys: readonly string[] = [],
    private readonly options: StoreOptions = {},
  ) {}

  /** One JetStream operation, retried per `options.retry` (or tried once); `attempt` is told its number. */
  private op<T>(what: string, attempt: (n: number) => Promise<T>): Promise<T> {
    return this.options.retry ? retryJetStream(what, attempt, this.options.retry) : attempt(1);
  }

  async loadSnapshot(): Promise<Snapshot> {
    // Decoded as they stream in: only the decoded records are kept, never every raw entry at once.
    return this.snapshotOf(await this.latestDecoded('>', (e) => this.decodeAny(e)));
  }

  /** The snapshot of decoded entries keyed by KV key (a full read's, or a follower's warm copy: warm-snapshot.ts). New maps: `current` may change afterwards. */
  snapshotOf(current: ReadonlyMap<string, AnyRecord>): Snapshot {
    const nodes = new Map<string, StoredRecord<NodeRecord>>();
    const clusters = new Map<string, StoredRecord<ClusterRecord>>();
    const ipam = new Map<string, StoredIpam>();
    const revocations = new Map<string, StoredRecord<Revocation>>();
    const definitions = new Map<string, StoredRecord<ClusterDefinition>>();
    const bindings = new Map<string, StoredRecord<IdentityBinding>>();
    for (const [key, r] of current) {
      switch (r.kind) {
        case 'node':
          nodes.set(r.record.value.name, r.record);
          break;
        case 'cluster':
          clusters.set(r.record.value.name, r.record);
          break;
        case 'ipam':
          ipam.set(key.slice('ipam.'.length), r.record);
          break;
        case 'revocation':
          revocations.set(r.record.value.name, r.record);
          break;
        case 'definition':
          definitions.set(r.record.value.name, r.record);
          break;
        case 'binding':
          bindings.set(r.record.value.identityKey, r.record);
          break;
      }
    }
    return { nodes, clusters, ipam, revocations, definitions, bindings };
  }

  /** The ipam table alone (after a CAS conflict, when any entry may have changed). */
  async loadIpam(): Promise<Map<string, StoredIpam>> {
    const ipam = new Map<string, StoredIpam>();
    for (const [key, r] of await this.latestDecoded(kvKeys.ipamFilter, (e) => this.decodeIpam(e))) ipam.set(key.slice('ipam.'.length), r);
    return ipam;
  }

  /** Decodes one entry of any kind the snapshot holds; undefined for malformed entries and other key spaces. */
  async decodeAny(e: KvEntry): Promise<AnyRecord | undefined> {
    const key = e.key;
    if (key.startsWith('nodes.')) {
      const record = await this.decodeSigned(e, NodeRecord);
      return record && { kind: 'node', record };
    }
    if (key.startsWith('clusters.')) {
      const record = await this.decodeSigned(e, ClusterRecord);
      return record && { kind: 'cluster', record };
    }
    if (key.startsWith('ipam.')) {
      const record = this.decodeIpam(e);
      return record && { kind: 'ipam', record };
    }
    if (key.startsWith('revoked.')) {
      const record = await this.decodeRevocation(e);
      return record && { kind: 'revocation', record };
    }
    if (key.startsWith('enrollments.')) {
      const record = await this.decodeDefinition(e);
      return record && { kind: 'definition', record };
    }
    if (key.startsWith('identities.')) {
      const record = await this.decodeSigned(e, IdentityBinding);
      // Under its own key only, or an old record copied elsewhere could shadow the real one.
      return record && kvKeys.identity(record.value.identityKey) === key ? { kind: 'binding', record } : undefined;
    }
    return undefined;
  }

  /**
   * The decoded current (PUT) entry of every key under `filter`, keyed by KV key, read in one pass of an
   * ordered consumer (a get per key would be a round trip each, seconds of failover with thousands of
   * nodes). Each entry is decoded as it arrives and its raw bytes dropped: collecting every entry first
   * held the whole bucket twice (raw and decoded) at the peak of a load. Revision order: a later value
   * (also a malformed one) or a delete marker replaces what came before, at any history depth.
   */
  private latestDecoded<R>(filter: string, decode: (e: KvEntry) => R | undefined | Promise<R | undefined>, small = false, atLeast = 0): Promise<Map<string, R>> {
    const reader = small ? this.options.rangeReader : undefined;
    return this.op(`read ${filter}`, async () => {
      const out = new Map<string, R>();
      let newest = 0;
      for await (const e of reader ? await reader(filter) : await this.kv.history({ key: filter })) {
        newest = Math.max(newest, e.revision);
        const r = e.operation === 'PUT' ? await decode(e) : undefined;
        if (r === undefined) out.delete(e.key);
        else out.set(e.key, r);
      }
      // A read that reached `atLeast` (our own write, or anything after it) saw everything before it:
      // a replica's answers are its applied prefix of the one log.
      if (newest < atLeast) throw new ReplicaBehindError(`read ${filter}`, newest, atLeast);
      return out;
    });
  }

  readNode(name: string): Promise<StoredRecord<NodeRecord> | undefined> {
    return this.readSigned(kvKeys.node(name), NodeRecord);
  }

  readCluster(name: string): Promise<StoredRecord<ClusterRecord> | undefined> {
    return this.readSigned(kvKeys.cluster(name), ClusterRecord);
  }

  readRevocation(name: string): Promise<StoredRecord<Revocation> | undefined> {
    return this.readRevocationKey(kvKeys.revoked(name));
  }

  /** Every revocation in the bucket, keyed by node name. */
  async loadRevocations(): Promise<Map<string, StoredRecord<Revocation>>> {
    const out = new Map<string, StoredRecord<Revocation>>();
    for (const r of (await this.latestDecoded(kvKeys.revokedFilter, (e) => this.decodeRevocation(e))).values()) out.set(r.value.name, r);
    return out;
  }

  /** Decodes a revocation delivered by a watch (a PUT entry); undefined when malformed. */
  async decodeRevocation(entry: KvEntry): Promise<StoredRecord<Revocation> | undefined> {
    return this.checkRevocationKey(entry.key, await this.decodeSigned(entry, Revocation));
  }

  readDefinition(name: string): Promise<StoredRecord<ClusterDefinition> | undefined> {
    return this.readSigned(kvKeys.enrollment(name), ClusterDefinition).then((r) => this.checkDefinitionKey(kvKeys.enrollment(name), r));
  }

  /**
   * Every cluster definition in the bucket, keyed by cluster name. `atLeast`: a revision under
   * `enrollments.` the read must include (a write of ours; the replica answering may lag behind it).
   */
  async loadDefinitions(atLeast = 0): Promise<Map<string, StoredRecord<ClusterDefinition>>> {
    const out = new Map<string, StoredRecord<ClusterDefinition>>();
    for (const r of (await this.latestDecoded(kvKeys.enrollmentsFilter, (e) => this.decodeDefinition(e), true, atLeast)).values()) out.set(r.value.name, r);
    return out;
  }

  /** Decodes a definition delivered by a watch (a PUT entry); undefined when malformed or not ours. */
  async decodeDefinition(entry: KvEntry): Promise<StoredRecord<ClusterDefinition> | undefined> {
    return this.checkDefinitionKey(entry.key, await this.decodeSigned(entry, ClusterDefinition));
  }

  private checkDefinitionKey(key: string, r: StoredRecord<ClusterDefinition> | undefined): StoredRecord<ClusterDefinition> | undefined {
    if (r === undefined || enrollmentNameFromKey(key) === r.value.name) return r;
    this.logger.warn({ key, name: r.value.name }, 'ignoring a cluster definition stored under another name');
    return undefined;
  }

  async putDefinition(def: ClusterDefinition, revision: number | undefined): Promise<StoredRecord<ClusterDefinition>> {
    return this.putSigned(kvKeys.enrollment(def.name), def, revision);
  }

  private async readRevocationKey(key: string): Promise<StoredRecord<Revocation> | undefined> {
    return this.checkRevocationKey(key, await this.readSigned(key, Revocation));
  }

  /** A revocation must sit under its own name, or deleting that key would not lift it. */
  private checkRevocationKey(key: string, r: StoredRecord<Revocation> | undefined): StoredRecord<Revocation> | undefined {
    if (r === undefined || revokedNameFromKey(key) === r.value.name) return r;
    this.logger.warn({ key, name: r.value.name }, 'ignoring a revocation stored under another name');
    return undefined;
  }

  private async readSigned<T>(key: string, schema: z.ZodType<T>): Promise<StoredRecord<T> | undefined> {
    const e = await this.op(`get ${key}`, () => this.kv.get(key));
    if (!live(e)) return undefined;
    return this.decodeSigned(e, schema);
  }

  /**
   * Verifies with our key, then with our previous keys (rotation: marked `signedByUs: false`, the
   * leader re-signs it). A record no key of our set verifies is ignored: whoever can write to the
   * bucket cannot make us act on it, let alone re-sign it.
   */
  private async decodeSigned<T>(e: KvEntry, schema: z.ZodType<T>): Promise<StoredRecord<T> | undefined> {
    const key = e.key;
    let json: unknown;
    try {
      json = e.json<unknown>();
    } catch {
      this.logger.warn({ key }, 'ignoring a bucket entry that is not JSON');
      return undefined;
    }
    const env = SignedEnvelope.safeParse(json);
    if (!env.success) {
      this.logger.warn({ key }, 'ignoring an unsigned bucket entry');
      return undefined;
    }
    for (const [i, publicKey] of [this.signingKey.publicKey, ...this.previousKeys].entries()) {
      try {
        const value = await verifyEnvelope(env.data, publicKey, schema);
        return { value, envelope: env.data, revision: e.revision, signedByUs: i === 0 };
      } catch (err) {
        if (!(err instanceof SignatureError)) {
          this.logger.warn({ key, err: errorMessage(err) }, 'ignoring a malformed record');
          return undefined;
        }
      }
    }
    this.logger.warn({ key }, 'ignoring a record not signed by our key set (forged, or signed by a key not given as --previous-public-key)');
    return undefined;
  }

  private decodeIpam(e: KvEntry): StoredIpam | undefined {
    const key = e.key;
    try {
      const parsed = IpamEntry.safeParse(e.json<unknown>());
      if (parsed.success) return { value: parsed.data, revision: e.revision };
    } catch {
      // fall through
    }
    this.logger.warn({ key }, 'ignoring a malformed ipam entry');
    return undefined;
  }

  /** Signs and writes a node record: create when `revision` is undefined, else CAS update. */
  async putNode(record: NodeRecord | SignedNode, revision: number | undefined): Promise<StoredRecord<NodeRecord>> {
    if (!(record instanceof SignedNode)) return this.putSigned(kvKeys.node(record.name), record, revision);
    const rev = await this.write(kvKeys.node(record.record.name), record.data, revision);
    return { value: record.record, envelope: record.envelope, revision: rev, signedByUs: true };
  }

  /**
   * A node record signed now and written later by putNode (the registry signs it while the writes it
   * must wait for are in flight). The envelope is made from `record` here, in this process, with our
   * key: it cannot be paired with another record.
   */
  signNode(record: NodeRecord): SignedNode {
    return new SignedNode(record, signEnvelopeNow(record, this.signingKey.secretKey));
  }

  async putCluster(record: ClusterRecord, revision: number | undefined): Promise<StoredRecord<ClusterRecord>> {
    return this.putSigned(kvKeys.cluster(record.name), record, revision);
  }

  /** Signs and writes a revocation (create when `revision` is undefined, else CAS update). */
  async putRevocation(revocation: Revocation, revision: number | undefined): Promise<StoredRecord<Revocation>> {
    return this.putSigned(kvKeys.revoked(revocation.name), revocation, revision);
  }

  async putIpam(name: string, entry: IpamEntry, revision: number | undefined): Promise<StoredIpam> {
    const rev = await this.write(kvKeys.ipam(name), JSON.stringify(entry), revision);
    return { value: entry, revision: rev };
  }

  /** Deletes (a DEL marker, so watchers see it) only if the key is still at `revision`. */
  async delete(key: string, revision: number): Promise<void> {
    // A conflict after an attempt that timed out: if the key is deleted now, that attempt landed.
    await this.casOp(
      `delete ${key}`,
      async () => {
        await this.kv.delete(key, { previousSeq: revision });
        return true;
      },
      async () => {
        const e = await this.kv.get(key);
        return e === null || e.operation !== 'PUT' ? true : undefined;
      },
    );
  }

  readBinding(identityKey: string): Promise<StoredRecord<IdentityBinding> | undefined> {
    return this.readSigned(kvKeys.identity(identityKey), IdentityBinding);
  }

  putBinding(binding: IdentityBinding, revision: number | undefined): Promise<StoredRecord<IdentityBinding>> {
    return this.putSigned(kvKeys.identity(binding.identityKey), binding, revision);
  }

  /** Every name binding, keyed by identity key. */
  async loadBindings(): Promise<Map<string, StoredRecord<IdentityBinding>>> {
    const out = new Map<string, StoredRecord<IdentityBinding>>();
    for (const [key, r] of await this.loadSignedUnder(kvKeys.identitiesFilter, IdentityBinding)) {
      if (kvKeys.identity(r.value.identityKey) === key) out.set(r.value.identityKey, r);
    }
    return out;
  }

  /** Signs and writes any record at `key` (create or CAS update); for modules with their own key space (services). */
  putSignedAt<T>(key: string, value: T, revision: number | undefined): Promise<StoredRecord<T>> {
    return this.putSigned(key, value, revision);
  }

  /** Every record under `filter` that verifies with our key set and parses with `schema`, keyed by KV key. */
  async loadSignedUnder<T>(filter: string, schema: z.ZodType<T>): Promise<Map<string, StoredRecord<T>>> {
    return this.latestDecoded(filter, (e) => this.decodeSigned(e, schema));
  }

  /** Reads and verifies a record at `key`; undefined when absent or malformed. */
  readSignedAt<T>(key: string, schema: z.ZodType<T>): Promise<StoredRecord<T> | undefined> {
    return this.readSigned(key, schema);
  }

  private async putSigned<T>(key: string, value: T, revision: number | undefined): Promise<StoredRecord<T>> {
    const envelope = await signEnvelope(value, this.signingKey.secretKey);
    const rev = await this.write(key, JSON.stringify(envelope), revision);
    return { value, envelope, revision: rev, signedByUs: true };
  }

  private write(key: string, data: string, revision: number | undefined): Promise<number> {
    // A conflict after an attempt that timed out: if the key holds exactly our bytes (our signed
    // envelope, its own timestamp and signature), that attempt landed and this is its revision.
    return this.casOp(
      `put ${key}`,
      () => (revision === undefined ? this.kv.create(key, data) : this.kv.update(key, data, revision)),
      async () => {
        const e = await this.kv.get(key);
        return e !== null && e.operation === 'PUT' && e.string() === data ? e.revision : undefined;
      },
    );
  }

  /**
   * A compare-and-set write, retried per `options.retry`. Once an attempt has timed out (it may have
   * been applied, its reply lost), a later attempt's CAS conflict is checked with `landed`: a value
   * means the earlier attempt did apply, and is the result; undefined, a real conflict (thrown).
   */
  private casOp<T>(what: string, attempt: () => Promise<T>, landed: () => Promise<T | undefined>): Promise<T> {
    let unsure = false;
    return this.op(what, async () => {
      try {
        return await attempt();
      } catch (err) {
        if (unsure && isCasConflict(err)) {
          const mine = await landed();
          if (mine !== undefined) return mine;
        }
        unsure ||= outcomeUnknown(err);
        throw err;
      }
    });
  }
}
