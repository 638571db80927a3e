// One control plane for a benchmark run: a fresh bucket and subject prefix on a shared real
// nats-server, the coordinator as its own process, a NATS connection for the simulated agents, and
// probes: "does the coordinator serve?" and "which keys were written since revision X?".
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { addCluster } from '../coordinator/cluster-admin.ts';
import { StateStore } from '../coordinator/store.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import type { JoinCredential } from '../protocol/join-credential.ts';
import { CLUSTERS, clusterRange } from './agent-fleet.ts';
import { simulatedAgent, rpc, signed, type SimulatedAgent } from './simulated-agent.ts';
import type { NatsServer } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { HeartbeatReply, type Heartbeat } from '../protocol/messages.ts';
import { generateSigningKeyPair, type SigningKeyPair } from '../protocol/signing.ts';
import { subjects } from '../protocol/subjects.ts';
import { coordinatorCommand } from './coordinator-command.ts';
import { CoordinatorProcess, writeSigningKeyFile } from './processes.ts';

export interface LabOptions {
  readonly nodeTtl?: string;
  /** --lease-ttl of every replica (default 3s); 'default': none passed, the coordinator's shipped default. */
  readonly leaseTtl?: string;
  /** Every server of a cluster (coordinators and agents fail over between them); default the one server's URL. */
  readonly natsUrls?: readonly string[];
  /** --replicas of the bucket (3 on a 3-server cluster). */
  readonly replicas?: number;
}

/** Keys written since a revision, by kind (nodes, clusters, ipam; the lease is left out). */
export interface Writes {
  readonly nodes: number;
  readonly nodeDeletes: number;
  readonly clusters: number;
  readonly ipam: number;
  /** Every write to the bucket's stream, lease renewals included. */
  readonly total: number;
}

export class ControlPlaneLab {
  readonly id = randomBytes(3).toString('hex');
  readonly bucket = `xlbench_${this.id}`;
  readonly prefix = `xl.bench${this.id}.v1`;
  /** The coordinator's POD_NAME, the same across restarts as in deploy/ (a restart reclaims its own lease). */
  readonly podName = `xl-bench-coordinator-${this.id}`;
  coordinator: CoordinatorProcess | undefined;
  private kvHandle: KV | undefined;
  private probe: SimulatedAgent | undefined;
  private readonly credentials = new Map<string, JoinCredential>();

  private constructor(
    readonly server: NatsServer,
    readonly nc: NatsConnection,
    readonly key: SigningKeyPair,
    private readonly dir: string,
    private readonly options: LabOptions,
  ) {}

  static async start(server: NatsServer, options: LabOptions = {}): Promise<ControlPlaneLab> {
    const dir = await mkdtemp(join(tmpdir(), 'xl-bench-'));
    const key = await generateSigningKeyPair();
    await writeSigningKeyFile(join(dir, 'coordinator.key'), key);
    // The simulated agents' connection: reconnects forever, quickly, like an agent's.
    const nc = await connect({ servers: [...(options.natsUrls ?? [server.url])], name: 'xl-bench-agents', maxReconnectAttempts: -1, reconnectTimeWait: 1000 });
    const lab = new ControlPlaneLab(server, nc, key, dir, options);
    try {
      await lab.startCoordinator();
      // A coordinator from before cluster enrollment (XL_BENCH_COORDINATOR_DIR) takes registrations
      // without join signatures and would refuse one carrying a `joinSig`: nothing to enroll.
      if (coordinatorCommand().enrollment) await lab.enrollClusters();
    } catch (err) {
      await lab.close();
      throw err;
    }
    return lab;
  }

  /** Enrolls the fleet's clusters c0…c9 (agent-fleet.ts: clusterRange) as `cluster add` does. */
  private async enrollClusters(): Promise<void> {
    const store = new StateStore(await this.kv(), this.key, silentLogger());
    for (let c = 0; c < CLUSTERS; c++) {
      const r = await addCluster({ store, clock: systemClock }, { name: `c${c}`, podCidrs: [clusterRange(c)], topology: 'mesh', allowPublic: false });
      this.credentials.set(`c${c}`, r.credential);
    }
  }

  /** The join credential of an enrolled cluster (for the simulated agents' registrations). */
  readonly credentialFor = (cluster: string): JoinCredential | undefined => this.credentials.get(cluster);

  /** The coordinator's public key (the fleet's heartbeat MACs are agreed with it: bench/agent-fleet.ts). */
  get coordinatorKey(): string {
    return this.key.publicKey;
  }

  get subjects(): ReturnType<typeof subjects> {
    return subjects(this.prefix);
  }

  /**
   * Starts a coordinator process and resolves once it answers (ms from spawn to first answer).
   * `newHolder`: without the stable POD_NAME (a new lease holder id, as before the manifests set it).
   */
  async startCoordinator(o: { readonly newHolder?: boolean; readonly logLevel?: string; readonly onLine?: (line: string) => void } = {}): Promise<number> {
    const t0 = performance.now();
    this.coordinator = this.startReplica(o.newHolder === true ? undefined : this.podName, o);
    await this.waitServing(60_000);
    return performance.now() - t0;
  }

  /** Another coordinator process on the same bucket (a follower while one leads); does not wait for it. */
  startReplica(podName: string | undefined, o: { readonly logLevel?: string; readonly onLine?: (line: string) => void } = {}): CoordinatorProcess {
    return CoordinatorProcess.start({
      natsUrl: (this.options.natsUrls ?? [this.server.url]).join(','),
      bucket: this.bucket,
      subjectPrefix: this.prefix,
      signingKeyFile: join(this.dir, 'coordinator.key'),
      nodeTtl: this.options.nodeTtl ?? '60s',
      leaseTtl: this.options.leaseTtl === 'default' ? undefined : (this.options.leaseTtl ?? '3s'),
      replicas: this.options.replicas,
      ...(podName === undefined ? {} : { podName }),
      ...(o.logLevel === undefined ? {} : { logLevel: o.logLevel }),
      ...(o.onLine === undefined ? {} : { onLine: o.onLine }),
    });
  }

  /** True when the leader answers a heartbeat (an unregistered probe gets "unknown-node" from the leader only). */
  async serves(timeoutMs = 500): Promise<boolean> {
    this.probe ??= await simulatedAgent('xl-bench-probe');
    const hb: Heartbeat = { v: 1, name: this.probe.name, identityKey: this.probe.identity.publicKey, generation: 0, sentAt: this.probe.nextSentAt() };
    try {
      await rpc(this.nc, this.subjects.heartbeat, await signed(hb, this.probe.identity.secretKey), HeartbeatReply, timeoutMs);
      return true;
    } catch {
      return false;
    }
  }

  async waitServing(timeoutMs: number): Promise<void> {
    await waitFor(() => this.serves(), {
      timeoutMs,
      intervalMs: 20,
      what: `coordinator answering on ${this.prefix} (log: ${this.coordinator?.recentLog().slice(-500) ?? ''})`,
    });
  }

  async kv(): Promise<KV> {
    this.kvHandle ??= await new Kvm(this.nc).open(this.bucket);
    return this.kvHandle;
  }

  /** The bucket stream's last sequence: pass it to writesSince() later. */
  async revision(): Promise<number> {
    return (await (await this.kv()).status()).streamInfo.state.last_seq;
  }

  /** Which keys were written after `revision` (the bucket keeps one entry per key: counts keys, not writes). */
  async writesSince(revision: number): Promise<Writes> {
    const kv = await this.kv();
    let nodes = 0;
    let nodeDeletes = 0;
    let clusters = 0;
    let ipam = 0;
    for await (const e of await kv.history()) {
      if (e.revision <= revision) continue;
      if (e.key.startsWith('nodes.')) {
        if (e.operation === 'PUT') nodes++;
        else nodeDeletes++;
      } else if (e.key.startsWith('clusters.')) clusters++;
      else if (e.key.startsWith('ipam.')) ipam++;
    }
    return { nodes, nodeDeletes, clusters, ipam, total: (await this.revision()) - revision };
  }

  async close(): Promise<void> {
    await this.coordinator?.stop();
    await this.nc.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}
