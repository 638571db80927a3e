// Shared fixtures for the agent/CLI tests: signed records, a KV bucket, a fake Dataplane.
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ClusterRecord, NodeRecord } from '../protocol/messages.ts';
import { generateWireguardKeyPair, signEnvelope, type SigningKeyPair } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';
import type { ApplyResult, AgentDataplane } from '../agent/reconciler.ts';
import type { DesiredInterface, DesiredState } from '../agent/plan/model.ts';
import type { LivePeer } from '../agent/dataplane/wg-dump.ts';

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

/** Records every desired state it is given; never touches the OS. */
export class FakeDataplane implements AgentDataplane {
  readonly applied: DesiredState[] = [];
  readonly interfaces: DesiredInterface[] = [];
  /** The private key of every ensureInterface call (tests derive the public key; never printed). */
  readonly privateKeys: string[] = [];
  backend: 'userspace' | 'kernel' = 'userspace';
  live: LivePeer[] = [];
  tornDown = false;
  closed = false;
  failNext: Error | undefined;

  ensureInterface(privateKey: string, iface: DesiredInterface): Promise<void> {
    this.interfaces.push(iface);
    this.privateKeys.push(privateKey);
    return Promise.resolve();
  }

  apply(desired: DesiredState): Promise<ApplyResult> {
    if (this.failNext) {
      const err = this.failNext;
      this.failNext = undefined;
      return Promise.reject(err);
    }
    this.applied.push(desired);
    return Promise.resolve({ changes: 1, commands: [], failures: [] });
  }

  livePeers(): Promise<readonly LivePeer[]> {
    return Promise.resolve(this.live);
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
}
