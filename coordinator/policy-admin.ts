// The operator's policy commands on the bucket directly (like revoke: no running coordinator
// needed, the coordinator's signing key signs): set writes a new signed version (history key first,
// then `policy.current` by compare-and-set, so versions are monotonic and two concurrent `set`s
// cannot both win), show/history read them back, test evaluates a flow with the agents' function.
import { createHash } from 'node:crypto';
import type { KV, KvEntry } from '@nats-io/kv';
import type { Clock } from '../lib/clock.ts';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { NodeRecord, SignedEnvelope } from '../protocol/messages.ts';
import { PolicyRecord, type PolicyDocument } from '../protocol/policy/document.ts';
import { parsePolicyYaml } from '../protocol/policy/yaml.ts';
import { POLICY_HISTORY_KEEP, policyKeys, verifyPolicyRecord } from '../protocol/policy/record.ts';
import { openEnvelopeUnverified, signEnvelope, verifyEnvelope, type SigningKeyPair } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { isCasConflict } from './store.ts';

export class PolicyAdminError extends CrosslinkError {
  override name = 'PolicyAdminError';
}

export interface PolicyAdminDeps {
  readonly kv: KV;
  readonly signingKey: SigningKeyPair;
  readonly clock: Clock;
  readonly logger: Logger;
}

export interface StoredPolicy {
  readonly record: PolicyRecord;
  readonly revision: number;
}

export interface SetPolicyResult {
  readonly record: PolicyRecord;
  /** The version that was in force before (null: none). */
  readonly previous: PolicyRecord | null;
  /** True when the document equals the one in force: nothing was written. */
  readonly unchanged: boolean;
}

const ATTEMPTS = 5;

export const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/** Canonical text of a document, so the same policy in another layout is recognised as unchanged. */
export const canonicalPolicyText = (doc: PolicyDocument): string => JSON.stringify(doc);

/** The record at `policy.current`, verified with our key (a record we cannot verify is an error: we never build on it). */
export async function readCurrentPolicy(deps: Pick<PolicyAdminDeps, 'kv' | 'signingKey'>): Promise<StoredPolicy | null> {
  const e = await deps.kv.get(policyKeys.current);
  if (e === null || e.operation !== 'PUT') return null;
  const v = await verifyPolicyRecord(e.string(), [deps.signingKey.publicKey]);
  if (!v.ok) {
    // Signed by an older key (rotation)? Keep the version sequence, but say what we found.
    const version = olderKeyVersion(e);
    if (version !== null) return { record: version, revision: e.revision };
    throw new PolicyAdminError(`${policyKeys.current} does not verify with this signing key (${v.reason}); agents ignore it too. Run \`policy set\` with the coordinator's key to replace it`);
  }
  return { record: v.record, revision: e.revision };
}

function olderKeyVersion(e: KvEntry): PolicyRecord | null {
  try {
    const env = SignedEnvelope.parse(e.json<unknown>());
    const r = PolicyRecord.safeParse(openEnvelopeUnverified(env));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

/**
 * Validates `yamlText` (a ValidationError names field, value and what is allowed; nothing is
 * written), then writes it as version current + 1.
 */
export async function setPolicy(deps: PolicyAdminDeps, yamlText: string, source: string, setBy: string): Promise<SetPolicyResult> {
  const policy = parsePolicyYaml(yamlText, source);
  for (let attempt = 1; ; attempt++) {
    const current = await readCurrentPolicy(deps);
    if (current && canonicalPolicyText(current.record.policy) === canonicalPolicyText(policy)) {
      return { record: current.record, previous: current.record, unchanged: true };
    }
    const record = PolicyRecord.parse({
      kind: 'policy',
      v: 1,
      version: (current?.record.version ?? 0) + 1,
      policy,
      setBy,
      setAt: deps.clock.now(),
      sourceSha256: sha256(yamlText),
    } satisfies PolicyRecord);
    const envelope = JSON.stringify(await signEnvelope(record, deps.signingKey.secretKey));
    try {
      // History first: a version in force always has its history entry.
      await deps.kv.put(policyKeys.history(record.version), envelope);
      if (current) await deps.kv.update(policyKeys.current, envelope, current.revision);
      else await deps.kv.create(policyKeys.current, envelope);
    } catch (err) {
      // Another `policy set` won the race: build on its version.
      if (!isCasConflict(err) || attempt >= ATTEMPTS) throw err;
      continue;
    }
    await pruneHistory(deps, record.version);
    return { record, previous: current?.record ?? null, unchanged: false };
  }
}

async function pruneHistory(deps: PolicyAdminDeps, newest: number): Promise<void> {
  try {
    for (const key of await historyKeys(deps.kv)) {
      const version = Number(key.slice(key.lastIndexOf('.') + 1));
      if (version <= newest - POLICY_HISTORY_KEEP) await deps.kv.purge(key);
    }
  } catch (err) {
    deps.logger.warn({ err: errorMessage(err) }, 'could not prune old policy history entries');
  }
}

async function historyKeys(kv: KV): Promise<string[]> {
  const keys: string[] = [];
  for await (const k of await kv.keys(policyKeys.historyFilter)) keys.push(k);
  return keys.sort();
}

export interface HistoryEntry {
  readonly record: PolicyRecord;
  /** False: signed by another key (kept for the record; agents would not take it). */
  readonly verified: boolean;
}

/** The stored versions, newest first. */
export async function policyHistory(deps: Pick<PolicyAdminDeps, 'kv' | 'signingKey'>, limit = POLICY_HISTORY_KEEP): Promise<HistoryEntry[]> {
  const out: HistoryEntry[] = [];
  for (const key of (await historyKeys(deps.kv)).reverse().slice(0, limit)) {
    const e = await deps.kv.get(key);
    if (e === null || e.operation !== 'PUT') continue;
    const v = await verifyPolicyRecord(e.string(), [deps.signingKey.publicKey]);
    if (v.ok) out.push({ record: v.record, verified: true });
    else {
      const older = olderKeyVersion(e);
      if (older) out.push({ record: older, verified: false });
    }
  }
  return out;
}

/** Verified node records (for `policy test`: cluster names → CIDRs, exactly as agents resolve them). */
export async function readNodes(deps: Pick<PolicyAdminDeps, 'kv' | 'signingKey'>): Promise<NodeRecord[]> {
  const nodes: NodeRecord[] = [];
  for await (const key of await deps.kv.keys(kvKeys.nodesFilter)) {
    const e = await deps.kv.get(key);
    if (e === null || e.operation !== 'PUT') continue;
    try {
      nodes.push(await verifyEnvelope(e.string(), deps.signingKey.publicKey, NodeRecord));
    } catch {
      // refused records are not part of the mesh, for agents either
    }
  }
  return nodes;
}
