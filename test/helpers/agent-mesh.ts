// Agents against a real control plane: a nats-server of the test's own (tests stop and restart it),
// the real Coordinator, and real Agents whose data plane is the FakeDataplane. Kept apart from
// test/agent-helpers.ts so tests that only need FakeDataplane do not load coordinator code.
import type { ServicesSyncFactory } from '../../agent/services/sync.ts';
import type { EventPublisher } from '../../protocol/events.ts';
import { randomBytes } from 'node:crypto';
import type { ExecutionContext } from 'ava';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Agent } from '../../agent/agent.ts';
import { parseAgentConfig, type AgentConfig } from '../../agent/config.ts';
import { RECONNECT_FOREVER, connectNats, natsSettingsForUrls } from '../../lib/nats-connect.ts';
import type { DesiredState, NodeSource } from '../../agent/plan/model.ts';
import { createStaticNodeSource } from '../../agent/control/static-source.ts';
import { parseCoordinatorConfig } from '../../coordinator/config.ts';
import { Coordinator } from '../../coordinator/coordinator.ts';
import { systemClock } from '../../lib/clock.ts';
import { silentLogger, type Logger } from '../../lib/logger.ts';
import { NatsServer } from '../../lib/nats-server.ts';
import { type Runner } from '../../lib/runner.ts';
import { RecordingRunner } from './recording-runner.ts';
import { NodeRecord } from '../../protocol/messages.ts';
import { generateSigningKeyPair, verifyEnvelope, type SigningKeyPair } from '../../protocol/signing.ts';
import { DEFAULT_BUCKET, kvKeys } from '../../protocol/subjects.ts';
import { FakeDataplane } from '../agent-helpers.ts';
import { readJoinCredentialFile } from '../../agent/control/keys.ts';
import { joinCredentialArgs, TestEnrollment } from './enrollment.ts';
import type { AgentMetricsPort } from '../../agent/metrics/agent-metrics.ts';

/** What an agent needs to find the control plane (also before any server is up). */
export interface MeshAddress {
  readonly server: { readonly url: string };
  readonly coordinatorKey: SigningKeyPair;
  /** Cluster enrollment: agents get their cluster's join credential from here. */
  readonly enrollment: TestEnrollment;
}

export interface Mesh extends MeshAddress {
  readonly server: NatsServer;
  /** The coordinator's connection (reconnects forever); tests may use it too. */
  readonly nc: NatsConnection;
  /** The coordinator's bucket, as every agent reads it. */
  readonly kv: KV;
  startCoordinator(): Promise<void>;
  stopCoordinator(): Promise<void>;
}

export interface MeshOptions {
  /** nats-server name prefix (`xl-…`); a random part is added. */
  readonly label: string;
  readonly nodeTtl: string;
  /** A fixed port, e.g. one agents were already pointed at before the server started. */
  readonly port?: number;
  readonly coordinatorKey?: SigningKeyPair;
  /** Enrollment used by agents started before the mesh (their claims are written once the bucket exists). */
  readonly enrollment?: TestEnrollment;
}

/** Starts nats-server and a Coordinator on it; both are stopped when the test ends. */
export async function startMesh(t: ExecutionContext, o: MeshOptions): Promise<Mesh> {
  const server = await NatsServer.start({ name: `${o.label}-${randomBytes(3).toString('hex')}`, ...(o.port === undefined ? {} : { port: o.port }) });
  const coordinatorKey = o.coordinatorKey ?? (await generateSigningKeyPair());
  const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  const config = parseCoordinatorConfig({ natsUrl: server.url, nodeTtl: o.nodeTtl, leaseTtl: '2s', signingKeyFile: '/nonexistent/unused' });
  let coordinator: Coordinator | undefined;
  const startCoordinator = async (): Promise<void> => {
    coordinator = await Coordinator.start({ nc, clock: systemClock, logger: silentLogger(), config, signingKey: coordinatorKey });
  };
  const stopCoordinator = async (): Promise<void> => {
    await coordinator?.stop();
    coordinator = undefined;
  };
  t.teardown(async () => {
    await stopCoordinator();
    await nc.close();
    await server.stop();
  });
  await startCoordinator();
  // The coordinator creates the bucket as it starts.
  const kv = await new Kvm(nc).open(DEFAULT_BUCKET);
  const enrollment = o.enrollment ?? new TestEnrollment();
  await enrollment.attach(kv, coordinatorKey);
  return { server, coordinatorKey, nc, kv, enrollment, startCoordinator, stopCoordinator };
}

/** The node's record as every agent sees it: read from the KV and verified with the coordinator key. */
export async function readNodeRecord(mesh: Pick<Mesh, 'kv' | 'coordinatorKey'>, name: string): Promise<NodeRecord | undefined> {
  const entry = await mesh.kv.get(kvKeys.node(name));
  if (!entry || entry.operation !== 'PUT' || entry.length === 0) return undefined;
  return verifyEnvelope(entry.value, mesh.coordinatorKey.publicKey, NodeRecord);
}

/** Like readNodeRecord, for a node that must be registered. */
export async function expectNodeRecord(mesh: Pick<Mesh, 'kv' | 'coordinatorKey'>, name: string): Promise<NodeRecord> {
  const record = await readNodeRecord(mesh, name);
  if (!record) throw new Error(`no KV record for ${name}`);
  return record;
}

/** The peers' node names in a desired state, sorted. */
export const peerNodes = (d: DesiredState | undefined | null): string[] => (d?.peers ?? []).map((p) => p.node).sort();

export type NodeSourceFactory = (deps: { config: AgentConfig; runner: Runner; logger: Logger }) => NodeSource;

export interface FakeAgentOptions {
  /** Node name (also the hostname the config sees). */
  readonly name: string;
  /** crosslink-agent flags, parsed as the bin parses them but with an empty environment. */
  readonly args: readonly string[];
  readonly coordinatorKey: string;
  /** Default: silent. */
  readonly logger?: Logger;
  /** Default: the static node source (flags only). */
  readonly nodeSource?: NodeSourceFactory;
  /** Default: resolves to the returned `dataplane`. */
  readonly createDataplane?: () => Promise<FakeDataplane>;
  /** Default: a RecordingRunner that answers everything with empty output. */
  readonly runner?: Runner;
  /** Default 1000 ms. */
  readonly requestTimeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Kubernetes mode's services mirror (agent/kubernetes/mcs), as agent/main.ts passes it. */
  readonly servicesSync?: ServicesSyncFactory;
  /** The second event sink (Kubernetes Events on the Node), as agent/main.ts passes it. */
  readonly events?: EventPublisher;
  /** Enroll the agent's cluster (`--cluster` of args) for these pod CIDRs and give it the join credential. */
  readonly join?: { readonly mesh: MeshAddress; readonly podCidrs: readonly string[]; readonly topology?: 'mesh' | 'gateway' };
  /** Default: the agent's own (DeferredAgentMetrics). */
  readonly metrics?: AgentMetricsPort;
}

export interface RunningAgent {
  readonly agent: Agent;
  readonly dataplane: FakeDataplane;
  readonly config: AgentConfig;
  readonly stateDir: string;
  readonly socket: string;
  readonly healthPort: number | null;
  /** Stops once; also run when the test ends. */
  stop(): Promise<void>;
}

/** Starts the real Agent with a FakeDataplane and fast retries; stopped when the test ends. */
export async function startFakeAgent(t: ExecutionContext, o: FakeAgentOptions): Promise<RunningAgent> {
  let args = [...o.args];
  if (o.join) {
    const pre = parseAgentConfig(args, { env: {}, hostname: o.name, fileExists: () => false });
    const credential = await o.join.mesh.enrollment.claim({ cluster: pre.cluster, podCidrs: o.join.podCidrs, topology: o.join.topology ?? pre.topology });
    args = [...args, ...(await joinCredentialArgs(pre.stateDir, credential))];
  }
  const config = parseAgentConfig(args, { env: {}, hostname: o.name, fileExists: () => false });
  const joinCredential = config.joinCredentialFile === null ? null : await readJoinCredentialFile(config.joinCredentialFile, config.cluster);
  const runner = o.runner ?? new RecordingRunner();
  const logger = o.logger ?? silentLogger();
  const dataplane = new FakeDataplane();
  const agent = await Agent.start({
    config,
    logger,
    clock: systemClock,
    runner,
    connectNats: () => connectNats(natsSettingsForUrls(config.natsServers), o.name, { ...RECONNECT_FOREVER, reconnectTimeWaitMs: 250 }),
    createDataplane: o.createDataplane ?? (() => Promise.resolve(dataplane)),
    nodeSource: (o.nodeSource ?? createStaticNodeSource)({ config, runner, logger }),
    coordinatorKey: o.coordinatorKey,
    joinCredential,
    mtu: config.mtu === 'auto' ? 1420 : config.mtu,
    tuning: { retryMinMs: 100, retryMaxMs: 500, requestTimeoutMs: o.requestTimeoutMs ?? 1000, debounceMs: 50, healthSummaryIntervalMs: 500 },
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.servicesSync ? { servicesSync: o.servicesSync } : {}),
    ...(o.events ? { events: o.events } : {}),
    ...(o.metrics ? { metrics: o.metrics } : {}),
  });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await agent.stop();
  };
  t.teardown(stop);
  return { agent, dataplane, config, stateDir: config.stateDir, socket: config.statusSocket, healthPort: agent.healthPort, stop };
}

export interface StaticAgentOptions {
  readonly name: string;
  readonly cluster: string;
  readonly podCidr: string;
  readonly stateDir: string;
  readonly extra?: readonly string[];
  readonly nodeSource?: NodeSourceFactory;
  readonly servicesSync?: ServicesSyncFactory;
  readonly events?: EventPublisher;
  readonly logger?: Logger;
  readonly runner?: Runner;
  readonly createDataplane?: () => Promise<FakeDataplane>;
  readonly metrics?: AgentMetricsPort;
}

// Each agent of a test file gets its own documentation endpoint and private address: .10, .11, …
let nextOctet = 10;

/** A static-mode agent (location `lab`, endpoint 192.0.2.<n>:51820, private address 10.0.0.<n>). */
export function startStaticAgent(t: ExecutionContext, mesh: MeshAddress, o: StaticAgentOptions): Promise<RunningAgent> {
  const n = nextOctet++;
  const args = [
    '--nats-url', mesh.server.url,
    '--node-name', o.name,
    '--cluster', o.cluster,
    '--location', 'lab',
    '--pod-cidr', o.podCidr,
    '--endpoint', `192.0.2.${n}:51820`,
    '--private-address', `10.0.0.${n}`,
    '--coordinator-key', mesh.coordinatorKey.publicKey,
    '--state-dir', o.stateDir,
    '--mtu', '1420',
    '--resync-interval', '1s',
    ...(o.extra ?? []),
  ];
  const topology = o.extra?.includes('gateway') === true ? 'gateway' : 'mesh';
  return startFakeAgent(t, {
    name: o.name,
    args,
    coordinatorKey: mesh.coordinatorKey.publicKey,
    join: { mesh, podCidrs: [o.podCidr], topology },
    ...(o.nodeSource ? { nodeSource: o.nodeSource } : {}),
    ...(o.servicesSync ? { servicesSync: o.servicesSync } : {}),
    ...(o.events ? { events: o.events } : {}),
    ...(o.logger ? { logger: o.logger } : {}),
    ...(o.runner ? { runner: o.runner } : {}),
    ...(o.createDataplane ? { createDataplane: o.createDataplane } : {}),
    ...(o.metrics ? { metrics: o.metrics } : {}),
  });
}
