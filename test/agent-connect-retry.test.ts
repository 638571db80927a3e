// agent/agent.ts: the first connect to NATS is retried 0.5 s doubling to 5 s, spread ±50 % with the
// agent's injected randomness (CONNECT_RETRY_POLICY): agents started together while NATS is down (a
// rollout, a cluster restart) do not all knock again in the same instant. A real Agent (FakeDataplane,
// static node source) on a ManualClock whose connect always fails: the moments of its retries.
import test, { type ExecutionContext } from 'ava';
import type { NatsConnection } from '@nats-io/transport-node';
import { Agent, CONNECT_RETRY_POLICY } from '../agent/agent.ts';
import { parseAgentConfig } from '../agent/config.ts';
import { createStaticNodeSource } from '../agent/control/static-source.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';
import { FakeDataplane } from './agent-helpers.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { RecordingRunner } from './helpers/recording-runner.ts';
import { tempDir } from './helpers/temp-dir.ts';

/** Starts an agent whose every connect fails when the test says (fail()); its clock and the number of attempts so far. */
async function agentWithoutNats(t: ExecutionContext, name: string, random: () => number): Promise<{ clock: ManualClock; attempts: () => number; fail: () => void }> {
  const stateDir = await tempDir(t, `xl-connretry-${name}-`);
  const coordinatorKey = (await generateSigningKeyPair()).publicKey;
  const args = ['--nats-url', 'nats://127.0.0.1:1', '--node-name', name, '--cluster', 'c1', '--location', 'lab', '--pod-cidr', '10.244.1.0/24', '--endpoint', '192.0.2.10:51820', '--private-address', '10.0.0.10', '--coordinator-key', coordinatorKey, '--state-dir', stateDir, '--mtu', '1420'];
  const config = parseAgentConfig(args, { env: {}, hostname: name, fileExists: () => false });
  const runner = new RecordingRunner();
  const logger = silentLogger();
  const clock = new ManualClock(Date.now());
  let attempts = 0;
  const pending: ((err: Error) => void)[] = [];
  const dataplane = new FakeDataplane();
  const agent = await Agent.start({
    config,
    logger,
    clock,
    runner,
    random,
    connectNats: () => {
      attempts++;
      return new Promise<NatsConnection>((_, reject) => pending.push(reject));
    },
    createDataplane: () => Promise.resolve(dataplane),
    nodeSource: createStaticNodeSource({ config, runner, logger }),
    coordinatorKey,
    joinCredential: null,
    mtu: 1420,
  });
  t.teardown(async () => {
    const stopping = agent.stop();
    for (const reject of pending.splice(0)) reject(new Error('test over')); // the attempt in flight ends; the agent stops
    await stopping;
  });
  return { clock, attempts: () => attempts, fail: () => pending.shift()?.(new Error('connection refused')) };
}

/** The retry moments (ms after the first attempt) of the first `n` failures. */
async function retryMoments(t: ExecutionContext, name: string, random: () => number, n: number): Promise<number[]> {
  const { clock, attempts, fail } = await agentWithoutNats(t, name, random);
  await waitFor(() => attempts() === 1, { timeoutMs: 10_000, what: 'the first connect attempt' });
  const start = clock.now();
  const moments: number[] = [];
  for (let i = 1; i <= n; i++) {
    // The retry's sleeper: the wake-up that appeared after this failure (other loops' sleepers were there before).
    const count = (ws: number[]): Map<number, number> => ws.reduce((m, w) => m.set(w, (m.get(w) ?? 0) + 1), new Map<number, number>());
    const before = count(clock.wakeups);
    fail();
    let due = -1;
    await waitFor(
      () => {
        const fresh = [...count(clock.wakeups)].filter(([w, c]) => c > (before.get(w) ?? 0)).map(([w]) => w);
        due = fresh.length > 0 ? Math.min(...fresh) : -1;
        return due > clock.now();
      },
      { timeoutMs: 10_000, what: `the sleeper of retry ${i}` },
    );
    clock.advanceTo(due - 1);
    await new Promise<void>((r) => setImmediate(r));
    t.is(attempts(), i, `retry ${i} not before its moment`);
    clock.advanceTo(due);
    await waitFor(() => attempts() === i + 1, { timeoutMs: 10_000, what: `retry ${i}` });
    moments.push(due - start);
  }
  return moments;
}

test('the first connect is retried at 0.5× to 1.5× the doubling backoff as the random source says; two sources knock at different moments', async (t) => {
  const base = [500, 1000, 2000, 4000];
  const low = await retryMoments(t, 'low', () => 0, 4);
  const high = await retryMoments(t, 'high', () => 0.999, 4);
  let at = 0;
  t.deepEqual(low, base.map((b) => (at += b * (1 - (CONNECT_RETRY_POLICY.jitter ?? 0))))); // 250, 750, 1750, 3750
  at = 0;
  t.deepEqual(high, base.map((b) => (at += Math.round(b * (1 - 0.5 + 0.999))))); // 1.5× (rounded)
  t.notDeepEqual(low, high, 'two agents started together retry at different moments');
});
