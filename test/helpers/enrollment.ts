// Cluster enrollment for tests. `enroll` goes through the operator's code path (cluster-admin.ts
// addCluster, which checks ranges and disjointness). `credentialFor` is for the older tests that
// register nodes of any cluster with any pod CIDR: it enrolls the request's cluster on first use
// (with the request's topology) and widens its ranges to cover what the request claims, writing the
// signed definition directly — so those tests keep exercising the registration checks they were
// written for (overlaps between live nodes, reserved ranges, …), not enrollment.
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { agentClient, type AgentClient } from './fake-agent.ts';
import { addCluster } from '../../coordinator/cluster-admin.ts';
import { StateStore } from '../../coordinator/store.ts';
import { systemClock } from '../../lib/clock.ts';
import { silentLogger } from '../../lib/logger.ts';
import { parseCidr, type Cidr } from '../../protocol/cidr.ts';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatJoinCredential, generateJoinCredential, type JoinCredential } from '../../protocol/join-credential.ts';
import type { ClusterDefinition, Topology } from '../../protocol/messages.ts';
import type { SigningKeyPair } from '../../protocol/signing.ts';
import { cidrWithin, forbiddenOverlap } from '../../protocol/special-purpose.ts';

/** What a node claims (the part of a registration enrollment looks at). */
export interface Claim {
  readonly cluster: string;
  readonly podCidrs: readonly string[];
  readonly topology: Topology;
}

export class TestEnrollment {
  private storeOrUndefined: StateStore | undefined;
  private readonly credentials = new Map<string, JoinCredential>();
  /** Claims made before the bucket exists (agents started before NATS); written by attach(). */
  private readonly pending: Claim[] = [];
  /** Lazy enrollments one at a time: concurrent registrations of one cluster must not race on its definition. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(kv?: KV, key?: SigningKeyPair) {
    if (kv && key) this.storeOrUndefined = new StateStore(kv, key, silentLogger());
  }

  get store(): StateStore {
    if (!this.storeOrUndefined) throw new Error('TestEnrollment: no bucket attached yet');
    return this.storeOrUndefined;
  }

  /** Connects to the bucket (once it exists) and writes the claims made meanwhile. */
  async attach(kv: KV, key: SigningKeyPair): Promise<void> {
    this.storeOrUndefined = new StateStore(kv, key, silentLogger());
    for (const c of this.pending.splice(0)) await this.claim(c);
  }

  /** The cluster's credential, its definition widened to cover the claim (now, or once attached). */
  claim(c: Claim): Promise<JoinCredential> {
    if (this.storeOrUndefined) return this.credentialFor(c);
    this.pending.push(c);
    return this.credentialOf(c.cluster);
  }

  private async credentialOf(cluster: string): Promise<JoinCredential> {
    const have = this.credentials.get(cluster);
    if (have) return have;
    const fresh = await generateJoinCredential(cluster);
    this.credentials.set(cluster, fresh);
    return fresh;
  }

  /** Enrolls a cluster as `crosslink-coordinator cluster add` does; returns its credential. */
  async enroll(name: string, podCidrs: readonly string[], topology: Topology = 'mesh', allowPublic = false): Promise<JoinCredential> {
    const r = await addCluster({ store: this.store, clock: systemClock }, { name, podCidrs, topology, allowPublic });
    this.credentials.set(name, r.credential);
    return r.credential;
  }

  credential(name: string): JoinCredential | undefined {
    return this.credentials.get(name);
  }

  /** Lazily enrolls (or widens) the request's cluster so that its claim is inside the declared ranges. */
  readonly credentialFor = (req: Claim): Promise<JoinCredential> => {
    const next = this.queue.then(() => this.ensureEnrolled(req));
    this.queue = next.catch(() => undefined);
    return next;
  };

  private async ensureEnrolled(req: Claim): Promise<JoinCredential> {
    const existing = await this.store.readDefinition(req.cluster);
    const credential = await this.credentialOf(req.cluster);
    if (existing && credential.publicKey === existing.value.joinKey && covers(existing.value, req.podCidrs)) return credential;
    const ranges = [...(existing?.value.podCidrs ?? [])];
    for (const text of req.podCidrs) {
      const c = parseCidr(text);
      if (!c || forbiddenOverlap(c) || ranges.some((r) => within(c, r))) continue;
      ranges.push(widen(c).text);
    }
    if (ranges.length === 0) ranges.push('10.255.255.0/24');
    const now = Date.now();
    const def: ClusterDefinition = {
      kind: 'cluster-definition',
      v: 1,
      name: req.cluster,
      podCidrs: ranges,
      topology: existing?.value.topology ?? req.topology,
      allowPublic: true,
      joinKey: credential.publicKey,
      credentialGeneration: (existing?.value.credentialGeneration ?? 0) + 1,
      createdAt: existing?.value.createdAt ?? now,
      updatedAt: now,
    };
    await this.store.putDefinition(def, existing?.revision);
    return credential;
  }
}

function within(c: Cidr, rangeText: string): boolean {
  const r = parseCidr(rangeText);
  return r !== undefined && cidrWithin(c, r);
}

function covers(def: ClusterDefinition, podCidrs: readonly string[]): boolean {
  return podCidrs.every((t) => {
    const c = parseCidr(t);
    return !c || forbiddenOverlap(c) !== undefined || def.podCidrs.some((r) => within(c, r));
  });
}

/** An IPv4 claim inside 10.x (x ≠ 0, where fixtures put private addresses) is widened to its /16, so a
 *  cluster of many nodes keeps few ranges; anything else is declared as claimed. */
function widen(c: Cidr): Cidr {
  if (c.family === 4 && c.prefix > 16 && c.network >> 24n === 10n && ((c.network >> 16n) & 0xffn) !== 0n) {
    return parseCidr(`10.${(c.network >> 16n) & 0xffn}.0.0/16`) ?? c;
  }
  return c;
}

/** An agent client that enrolls the clusters it registers into on first use (see TestEnrollment.credentialFor). */
export async function enrollingClient(nc: NatsConnection, prefix: string, bucket: string, key: SigningKeyPair, timeoutMs = 3000): Promise<AgentClient> {
  const enrollment = new TestEnrollment(await new Kvm(nc).open(bucket), key);
  return agentClient(nc, prefix, { timeoutMs, credentialFor: enrollment.credentialFor });
}

/** Writes the credential into `dir` (mode 0600) and returns the agent flags that use it. */
export async function joinCredentialArgs(dir: string, credential: JoinCredential): Promise<string[]> {
  const path = join(dir, `join-${credential.cluster}.json`);
  await writeFile(path, formatJoinCredential(credential), { mode: 0o600 });
  return ['--join-credential-file', path];
}
