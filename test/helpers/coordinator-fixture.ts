// A real Coordinator in its own corner of a shared nats-server (fresh bucket and subject prefix),
// with a watcher recording every bucket change; and the bin/crosslink-coordinator process.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { Kvm, type KV, type KvWatchEntry } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { parseCoordinatorConfig, type RawRunOptions } from '../../coordinator/config.ts';
import { Coordinator, type CoordinatorDeps } from '../../coordinator/coordinator.ts';
import type { CoordinatorMetricsHooks } from '../../coordinator/metrics.ts';
import type { Schedule } from '../../coordinator/deferred-events.ts';
import { agentClient, type AgentClient } from './fake-agent.ts';
import { systemClock, type Clock } from '../../lib/clock.ts';
import { ManualClock } from './manual-clock.ts';
import { silentLogger, type Logger } from '../../lib/logger.ts';
import { waitFor } from '../../lib/wait.ts';
import { ClusterRecord } from '../../protocol/messages.ts';
import { generateSigningKeyPair, verifyEnvelope, type SigningKeyPair } from '../../protocol/signing.ts';
import { kvKeys } from '../../protocol/subjects.ts';
import { scratchNames } from './nats-fixture.ts';
import { TestEnrollment } from './enrollment.ts';

export const COORDINATOR_BIN = fileURLToPath(new URL('../../bin/crosslink-coordinator', import.meta.url));

export interface BinResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs bin/crosslink-coordinator to completion (SIGKILLed and rejected after `timeoutMs`). */
export function runCoordinatorBin(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<BinResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(COORDINATOR_BIN, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${args.join(' ')} did not finish within ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export interface CoordinatorEnv {
  /** The test's own connection (agents, KV reads). */
  readonly nc: NatsConnection;
  readonly kv: KV;
  readonly key: SigningKeyPair;
  readonly bucket: string;
  readonly prefix: string;
  readonly client: AgentClient;
  readonly coordinator: Coordinator;
  /** Cluster enrollment (the client enrolls the clusters it registers into on first use). */
  readonly enrollment: TestEnrollment;
  /** Every bucket change seen by a watcher, in order. */
  readonly events: { key: string; op: string }[];
}

export interface CoordinatorEnvOptions {
  readonly natsUrl: string;
  /** Bucket name prefix; see scratchNames. */
  readonly bucketTag: string;
  /** Run options over the scratch bucket and prefix (leaseTtl defaults to 5s). */
  readonly config: Partial<RawRunOptions>;
  readonly clock?: Clock;
  /** Counters the coordinator feeds (coordinator/metrics.ts). */
  readonly metrics?: CoordinatorMetricsHooks;
  /** When the coordinator's deferred events go out (coordinator/deferred-events.ts). */
  readonly eventSchedule?: Schedule;
  /** The bucket as the coordinator uses it (fault injection). */
  readonly wrapBucket?: (kv: KV) => KV;
  /** Bounds of the coordinator's heartbeat MAC key tables. */
  readonly macKeyBounds?: CoordinatorDeps['macKeyBounds'];
  /** The coordinator's logger (default: silent). */
  readonly logger?: Logger;
  /** Further bounds of what requests may cost (CoordinatorDeps). */
  readonly bounds?: Pick<CoordinatorDeps, 'unknownMarksMax' | 'definitionReadRate' | 'watchBudgets'>;
}

/** Starts a Coordinator on its own connection and waits until it leads; all is stopped when the test ends. */
export async function startCoordinatorEnv(t: ExecutionContext, o: CoordinatorEnvOptions): Promise<CoordinatorEnv> {
  const clock = o.clock ?? systemClock;
  const { id, bucket, prefix } = scratchNames(o.bucketTag);
  const key = await generateSigningKeyPair();
  const nc = await connect({ servers: o.natsUrl, name: `xl-test-${id}` });
  const cnc = await connect({ servers: o.natsUrl, name: `xl-coord-${id}` });
  // The fake agents (bench/simulated-agent.ts) learn the epoch from replies and sign it, like the real
  // agent: the coordinator runs with the shipped default (--require-heartbeat-epoch on).
  const config = parseCoordinatorConfig({ bucket, subjectPrefix: prefix, leaseTtl: '5s', ...o.config });
  const coordinator = await Coordinator.start({ nc: cnc, clock, logger: o.logger ?? silentLogger(), config, signingKey: key, ...(o.metrics ? { metrics: o.metrics } : {}), ...(o.eventSchedule ? { eventSchedule: o.eventSchedule } : {}), ...(o.wrapBucket ? { wrapBucket: o.wrapBucket } : {}), ...(o.macKeyBounds ? { macKeyBounds: o.macKeyBounds } : {}), ...o.bounds });
  const kv = await new Kvm(nc).open(bucket);
  const events: { key: string; op: string }[] = [];
  const watcher = await kv.watch({ key: '>' });
  const watching = (async () => {
    for await (const e of watcher as AsyncIterable<KvWatchEntry>) events.push({ key: e.key, op: e.operation });
  })();
  t.teardown(async () => {
    watcher.stop();
    await watching;
    await coordinator.stop();
    await cnc.close();
    await nc.close();
  });
  if (clock instanceof ManualClock) {
    // The lease loop sleeps on the manual clock too; nudge it until the coordinator leads.
    await waitFor(
      () => {
        clock.advance(1);
        return coordinator.isLeader();
      },
      { timeoutMs: 10_000, intervalMs: 20, what: 'leadership' },
    );
  } else {
    await waitFor(() => coordinator.isLeader(), { timeoutMs: 10_000, what: 'leadership' });
  }
  const enrollment = new TestEnrollment(kv, key);
  return { nc, kv, key, bucket, prefix, client: agentClient(nc, prefix, { credentialFor: enrollment.credentialFor }), coordinator, enrollment, events };
}

/** True while `key` holds a value (not deleted or purged). */
export async function present(kv: KV, key: string): Promise<boolean> {
  const e = await kv.get(key);
  return e !== null && e.operation === 'PUT';
}

/** The cluster record, signature checked; undefined when there is none. */
export async function readClusterRecord(kv: KV, key: SigningKeyPair, name: string): Promise<ClusterRecord | undefined> {
  const e = await kv.get(kvKeys.cluster(name));
  if (!e || e.operation !== 'PUT') return undefined;
  return verifyEnvelope(e.value, key.publicKey, ClusterRecord);
}
