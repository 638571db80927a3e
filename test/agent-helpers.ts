// Shared fixtures for the agent/CLI tests: signed records, a KV bucket, a fake Dataplane.
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';
import { generateWireguardKeyPair, signEnvelope, type SigningKeyPair } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { DataplaneApplyError, type ApplyReport, type Dataplane, type DataplaneTarget, type LivePeer, type RelayStats } from '../agent/dataplane/api.ts';
import type { DesiredInterface, DesiredState } from '../agent/plan/model.ts';

export async function nodeRecord(overrides: Partial<NodeRecord> & { name: string }): Promise<NodeRecord> {
  const wg = await generateWireguardKeyPair();
  const id = await generateWireguardKeyPair(); // any 32-byte key does as an identity key in fixtures
  return {
    kind: 'node',
    v: 1,
    cluster: 'c1',
    location: 'lab',
    publicKey: wg.publicKey,
    identityKey: id.publicKey,
    endpoints: ['192.0.2.10:51820'],
    privateAddresses: ['10.0.0.10'],
    podCidrs: ['10.244.1.0/24'],
    listenPort: 51820,
    topology: 'mesh',
    gatewayEligible: true,
    overlayIp: '100.96.0.10',
    generation: 1,
    registeredAt: 1_700_000_000_000,
    updatedAt: 1_700_000_000_000,
    ...overrides,
  };
}

export function clusterRecord(overrides: Partial<ClusterRecord> & { name: string }): ClusterRecord {
  return { kind: 'cluster', v: 1, topology: 'mesh', gateway: null, gatewayEpoch: 0, generation: 1, updatedAt: 1_700_000_000_000, ...overrides };
}

export async function openBucket(nc: NatsConnection, bucket = 'crosslink'): Promise<KV> {
  return new Kvm(nc).create(bucket, { history: 5 });
}

export async function putNode(kv: KV, key: SigningKeyPair, record: NodeRecord, under = kvKeys.node(record.name)): Promise<void> {
  await kv.put(under, JSON.stringify(await signEnvelope(record, key.secretKey)));
}

export async function putCluster(kv: KV, key: SigningKeyPair, record: ClusterRecord): Promise<void> {
  await kv.put(kvKeys.cluster(record.name), JSON.stringify(await signEnvelope(record, key.secretKey)));
}

/** Records every target it is given; never touches the OS. */
export class FakeDataplane implements Dataplane {
  /** The desired state of every full apply (not the fail-static ones). */
  readonly applied: DesiredState[] = [];
  /** The interface of every apply. */
  readonly interfaces: DesiredInterface[] = [];
  /** The private key of every apply (tests derive the public key; never printed). */
  readonly privateKeys: string[] = [];
  /** Every target, in order. */
  readonly targets: DataplaneTarget[] = [];
  backend: 'userspace' | 'kernel' = 'userspace';
  live: LivePeer[] = [];
  relays: RelayStats[] = [];
  tornDown = false;
  closed = false;
  /** Thrown by the next apply (a DataplaneApplyError: the interface was ensured; anything else: it was not). */
  failNext: Error | undefined;
  /** Reported as the commands of the next successful full apply (as if it had put these back). */
  nextCommands: (readonly string[])[] = [];

  apply(target: DataplaneTarget): Promise<ApplyReport> {
    this.targets.push(target);
    const err = this.failNext;
    this.failNext = undefined;
    if (err && !(err instanceof DataplaneApplyError)) return Promise.reject(err);
    this.interfaces.push(target.interface);
    this.privateKeys.push(target.privateKey);
    if (err) return Promise.reject(err);
    if (target.desired !== null) this.applied.push(target.desired);
    const commands = target.desired === null ? [] : this.nextCommands;
    if (target.desired !== null) this.nextCommands = [];
    return Promise.resolve({ interfaceEnsured: true, changes: target.desired === null ? 0 : 1, commands, failures: [], blocked: [] });
  }

  livePeers(): Promise<readonly LivePeer[]> {
    return Promise.resolve(this.live);
  }

  relayStats(): readonly RelayStats[] {
    return this.relays;
  }

  teardown(): Promise<void> {
    this.tornDown = true;
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  last(): DesiredState | undefined {
    return this.applied[this.applied.length - 1];
  }

  private readonly restartListeners = new Set<(generation: number) => void>();
  private readonly driftListeners = new Set<(reason: string) => void>();

  onRestart(listener: (generation: number) => void): () => void {
    this.restartListeners.add(listener);
    return () => this.restartListeners.delete(listener);
  }

  onDrift(listener: (reason: string) => void): () => void {
    this.driftListeners.add(listener);
    return () => this.driftListeners.delete(listener);
  }

  /** Tests: as if wireguard-go had restarted (the interface came back empty). */
  restarted(generation: number): void {
    for (const l of this.restartListeners) l(generation);
  }

  /** Tests: as if the link monitor had seen a route or address of ours change. */
  drifted(reason: string): void {
    for (const l of this.driftListeners) l(reason);
  }
}

/** A DataplaneApplyError as the data plane throws it: the interface ensured, these operations failed. */
export function applyFailure(...failures: { op: string; message: string }[]): DataplaneApplyError {
  return new DataplaneApplyError({ interfaceEnsured: true, changes: 0, commands: [], blocked: [], failures: failures.map((f) => ({ op: f.op, error: new Error(f.message) })) });
}
