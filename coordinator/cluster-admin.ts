// The operator's cluster enrollment, on the bucket directly (no running coordinator needed): add
// stores a coordinator-signed ClusterDefinition and returns a fresh join credential; rotate replaces
// the credential; remove deletes the definition (the leader then removes the cluster's live nodes);
// list/show read them. The commands (cluster-commands.ts), the lab and the demo all go through here.
import { randomBytes } from 'node:crypto';
import { rename, unlink, open } from 'node:fs/promises';
import type { Clock } from '../lib/clock.ts';
import { CrosslinkError, ValidationError, errorMessage } from '../lib/errors.ts';
import { checkDefinitionRanges } from '../protocol/admission.ts';
import { formatJoinCredential, generateJoinCredential, type JoinCredential } from '../protocol/join-credential.ts';
import { ClusterDefinition, ClusterName, type ClusterRecord, type NodeRecord, type Topology } from '../protocol/messages.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { isCasConflict, type StateStore, type StoredRecord } from './store.ts';

export class ClusterAdminError extends CrosslinkError {
  override name = 'ClusterAdminError';
}

/**
 * The definition was stored, but the check after it (a concurrent overlapping enrollment) could not
 * run — e.g. JetStream not served before the deadline after a NATS server loss. The cluster is
 * enrolled with this run's credential: keep it (the operator checks `cluster list`).
 */
export class EnrolledUncheckedError extends ClusterAdminError {
  override name = 'EnrolledUncheckedError';
}

export interface ClusterAdminDeps {
  readonly store: StateStore;
  readonly clock: Clock;
}

export interface AddClusterInput {
  readonly name: string;
  readonly podCidrs: readonly string[];
  readonly topology: Topology;
  readonly allowPublic: boolean;
  /** The credential to enroll with (the command writes it to disk first); default: a new one. */
  readonly credential?: JoinCredential;
  /** Per-cluster limits (cluster-limits.ts); absent: none. */
  readonly maxNodes?: number;
  readonly maxExports?: number;
}

export interface EnrollResult {
  readonly definition: ClusterDefinition;
  /** The secret for the cluster's agents; write it with writeCredentialFile. */
  readonly credential: JoinCredential;
}

export function parseClusterName(name: string): string {
  const r = ClusterName.safeParse(name);
  if (!r.success) throw new ValidationError('cluster', name, `use a cluster name: ${r.error.issues[0]?.message ?? 'a DNS label'}`);
  return r.data;
}

/** Enrolls a new cluster. Its ranges must be valid and disjoint from every enrolled cluster's. */
export async function addCluster(deps: ClusterAdminDeps, input: AddClusterInput): Promise<EnrollResult> {
  const name = parseClusterName(input.name);
  const others = await deps.store.loadDefinitions();
  if (others.has(name)) {
    throw new ClusterAdminError(`cluster "${name}" is already enrolled (${others.get(name)?.value.podCidrs.join(', ')}); use \`cluster rotate-credential ${name}\` for a new credential, or \`cluster remove ${name}\` first`);
  }
  const ranges = checkDefinitionRanges(name, input.podCidrs, input.allowPublic, [...others.values()].map((d) => d.value));
  if (!ranges.ok) throw new ClusterAdminError(ranges.message);
  const credential = input.credential ?? (await generateJoinCredential(name));
  if (credential.cluster !== name) throw new ClusterAdminError(`the credential is for cluster "${credential.cluster}", not "${name}"`);
  const now = deps.clock.now();
  const definition = ClusterDefinition.parse({
    kind: 'cluster-definition',
    v: 1,
    name,
    podCidrs: ranges.value,
    topology: input.topology,
    allowPublic: input.allowPublic,
    joinKey: credential.publicKey,
    credentialGeneration: 1,
    createdAt: now,
    updatedAt: now,
    ...(input.maxNodes === undefined ? {} : { maxNodes: input.maxNodes }),
    ...(input.maxExports === undefined ? {} : { maxExports: input.maxExports }),
  } satisfies ClusterDefinition);
  let written: StoredRecord<ClusterDefinition>;
  try {
    written = await deps.store.putDefinition(definition, undefined);
  } catch (err) {
    if (isCasConflict(err)) throw new ClusterAdminError(`cluster "${name}" was enrolled by someone else meanwhile`, { cause: err });
    throw err;
  }
  try {
    await withdrawIfRaced(deps, definition, written.revision, input.allowPublic);
  } catch (err) {
    if (err instanceof ClusterAdminError) throw err;
    throw new EnrolledUncheckedError(
      `cluster "${name}" is enrolled, but the check for an overlapping enrollment made at the same time could not run (${errorMessage(err)}); ` +
        `its credential is kept: check \`crosslink-coordinator cluster list\` and remove "${name}" if its ranges overlap another cluster's`,
      { cause: err },
    );
  }
  return { definition, credential };
}

/**
 * Two `cluster add` runs side by side both check disjointness before either has written. After our
 * write, look again: if an overlapping definition was written before ours (lower revision), ours
 * loses and is withdrawn before anyone holds its credential; the earlier one stays.
 */
async function withdrawIfRaced(deps: ClusterAdminDeps, ours: ClusterDefinition, revision: number, allowPublic: boolean): Promise<void> {
  // A read that includes our write (any replica may answer, and may not have applied it yet).
  const all = await deps.store.loadDefinitions(revision);
  const mine = all.get(ours.name);
  if (!mine) throw new ClusterAdminError(`cluster "${ours.name}" was removed by someone else meanwhile`);
  const earlier = [...all.values()].filter((d) => d.value.name !== ours.name && d.revision < mine.revision).map((d) => d.value);
  const check = checkDefinitionRanges(ours.name, ours.podCidrs, allowPublic, earlier);
  if (check.ok) return;
  try {
    await deps.store.delete(kvKeys.enrollment(ours.name), mine.revision);
  } catch (err) {
    throw new ClusterAdminError(`${check.message} (enrolled at the same time; withdrawing "${ours.name}" failed: ${String(err)})`, { cause: err });
  }
  throw new ClusterAdminError(`${check.message} (enrolled at the same time as ours; "${ours.name}" was withdrawn)`);
}

/** Replaces the cluster's join credential: the old one can no longer register nodes (live nodes stay). */
export async function rotateCredential(deps: ClusterAdminDeps, name: string, fresh?: JoinCredential): Promise<EnrollResult> {
  const existing = await mustRead(deps.store, parseClusterName(name));
  const credential = fresh ?? (await generateJoinCredential(existing.value.name));
  const definition: ClusterDefinition = {
    ...existing.value,
    joinKey: credential.publicKey,
    credentialGeneration: existing.value.credentialGeneration + 1,
    updatedAt: deps.clock.now(),
  };
  try {
    await deps.store.putDefinition(definition, existing.revision);
  } catch (err) {
    if (isCasConflict(err)) throw new ClusterAdminError(`cluster "${name}" changed meanwhile; run the command again`, { cause: err });
    throw err;
  }
  return { definition, credential };
}

/** Removes the enrollment; the leader removes the cluster's live nodes, and nothing can register into it. */
export async function removeCluster(deps: Pick<ClusterAdminDeps, 'store'>, name: string): Promise<ClusterDefinition> {
  const existing = await mustRead(deps.store, parseClusterName(name));
  await deps.store.delete(kvKeys.enrollment(existing.value.name), existing.revision);
  return existing.value;
}

export async function listClusters(deps: Pick<ClusterAdminDeps, 'store'>): Promise<StoredRecord<ClusterDefinition>[]> {
  const all = await deps.store.loadDefinitions();
  return [...all.values()].sort((a, b) => (a.value.name < b.value.name ? -1 : a.value.name > b.value.name ? 1 : 0));
}

export interface ClusterDetails {
  readonly definition: StoredRecord<ClusterDefinition>;
  readonly record: ClusterRecord | null;
  readonly nodes: readonly NodeRecord[];
}

export async function showCluster(deps: Pick<ClusterAdminDeps, 'store'>, name: string): Promise<ClusterDetails> {
  const definition = await mustRead(deps.store, parseClusterName(name));
  const snap = await deps.store.loadSnapshot();
  const nodes = [...snap.nodes.values()].map((n) => n.value).filter((n) => n.cluster === definition.value.name);
  nodes.sort((a, b) => (a.name < b.name ? -1 : 1));
  return { definition, record: snap.clusters.get(definition.value.name)?.value ?? null, nodes };
}

export async function mustRead(store: StateStore, name: string): Promise<StoredRecord<ClusterDefinition>> {
  const existing = await store.readDefinition(name);
  if (!existing) throw new ClusterAdminError(`cluster "${name}" is not enrolled; \`crosslink-coordinator cluster list\` lists the enrolled clusters`);
  return existing;
}

/**
 * Writes the credential with mode 0600: to a temp file next to `path` first, renamed into place
 * (atomic; replaces an older credential at the same path).
 */
export async function writeCredentialFile(path: string, credential: JoinCredential): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(formatJoinCredential(credential), 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new ClusterAdminError(`--credential-out ${path}: cannot write: ${errorMessage(err)}`, { cause: err });
  }
}
