// The agent's start sequence (issue 10): registering and reading the KV overlap the local start
// (status server, policy init), but nothing they deliver is planned before the policy gate is
// initialised. A real nats-server and coordinator; the data plane is the FakeDataplane.
import test from 'ava';
import { pino } from 'pino';
import { waitFor } from '../lib/wait.ts';
import type { Runner, RunOptions, RunResult } from '../lib/runner.ts';
import { RecordingRunner } from './helpers/recording-runner.ts';
import { peerNodes, readNodeRecord, startMesh, startStaticAgent } from './helpers/agent-mesh.ts';
import { tempDir } from './helpers/temp-dir.ts';
import { FakeDataplane } from './agent-helpers.ts';

const WAIT = { timeoutMs: 20_000, intervalMs: 50 } as const;

/** Holds `nft --version` (the policy init, the last step of the local start) until released. */
class HeldPolicyInit implements Runner {
  readonly inner = new RecordingRunner();
  private release = (): void => undefined;
  private readonly released = new Promise<void>((resolve) => (this.release = resolve));
  held = false;

  open(): void {
    this.release();
  }

  async run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    if (argv.includes('--version') && argv.some((a) => a.endsWith('nft'))) {
      this.held = true;
      await this.released;
      this.held = false;
      return { stdout: 'nftables v1.0.6 (Lester Gooch #5)', stderr: '', exitCode: 0 };
    }
    return this.inner.run(argv, options);
  }
}

test('registration and the KV read run during the local start; no view is planned until the policy init is done', async (t) => {
  const mesh = await startMesh(t, { label: 'xl-start-overlap', nodeTtl: '30s' });
  const peer = await startStaticAgent(t, mesh, { name: 'node-b', cluster: 'c2', podCidr: '10.245.1.0/24', stateDir: await tempDir(t, 'xl-start-b-') });
  const runner = new HeldPolicyInit();
  // A failing assertion must not leave the start waiting forever.
  t.teardown(() => runner.open());
  const dp = new FakeDataplane();
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  const starting = startStaticAgent(t, mesh, { name: 'node-a', cluster: 'c1', podCidr: '10.244.1.0/24', stateDir: await tempDir(t, 'xl-start-a-'), runner, logger, createDataplane: () => Promise.resolve(dp) });
  starting.catch(() => undefined);
  await waitFor(() => runner.held, { ...WAIT, what: 'the policy init to start' });
  // Registered while the local start still waits for the policy init: the coordinator wrote our record.
  await waitFor(async () => (await readNodeRecord(mesh, 'node-a')) !== undefined, { ...WAIT, what: 'node-a registered during its local start' });
  await waitFor(() => peerNodes(peer.dataplane.last()).includes('node-a'), { ...WAIT, what: 'node-b peers with node-a' });
  // And read and verified the KV (node-b's record with it) while the local start still waits.
  await waitFor(() => lines.some((l) => l.includes('KV snapshot loaded')), { ...WAIT, what: 'node-a read the KV during its local start' });
  t.true(runner.held, 'still in the policy init');
  // The interface-only start ran during the local start too; nothing was planned with a view (the gate is not initialised).
  await waitFor(() => dp.targets.length > 0, { ...WAIT, what: 'the interface-only start during the local start' });
  t.deepEqual(dp.targets.map((x) => x.desired), dp.targets.map(() => null), 'no view planned before the policy init');
  runner.open();
  await starting;
  // What was held is delivered once the local start is done: the view with node-b is planned.
  await waitFor(() => peerNodes(dp.last()).join() === 'node-b', { ...WAIT, what: 'node-a plans its view once started' });
  t.pass();
});
