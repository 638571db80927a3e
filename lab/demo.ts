// `npm run demo`: bring up the default lab, wait for convergence, ping every pod from every pod,
// print the matrix and the mesh summary, tear down (always). Exit 0 only if every pair connected.
import { readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { errorMessage } from '../lib/errors.ts';
import { ProcessRunner } from '../lib/runner.ts';
import { catchInterrupts, progressPrinter } from './interrupt.ts';
import { Lab } from './lab.ts';
import { connectivityMatrix, formatMatrix } from './matrix.ts';
import { servicesDemo } from './services.ts';
import { REPO_ROOT } from './state.ts';
import { formatSummary, meshSummary } from './summary.ts';
import { teardownLab } from './teardown.ts';

const DEMO_ID = 'demo';
const CONVERGE_TIMEOUT_MS = 60_000;
const MATRIX_RETRY_MS = 20_000;

async function main(): Promise<number> {
  const start = Date.now();
  const progress = progressPrinter(start);
  const file = process.argv[2] ?? join(REPO_ROOT, 'lab', 'topologies', 'default.yaml');
  const runner = new ProcessRunner();
  // Ctrl-C aborts the current step; the `finally` below always tears down, in order.
  const interrupt = catchInterrupts((sig) => progress(`${sig}: stopping, then tearing the lab down…`));
  const signal = interrupt.signal;
  let lab: Lab | undefined;
  let ok = false;
  try {
    progress(`Crosslink demo: lab "${DEMO_ID}" from ${relative(process.cwd(), file)}`);
    const text = await readFile(file, 'utf8');
    lab = await Lab.up({ id: DEMO_ID, topologyText: text, topologySource: relative(REPO_ROOT, file), runner, onProgress: progress, signal });
    progress('waiting for convergence (agents registered, ready, every cross-cloud path known)');
    await lab.waitConverged(CONVERGE_TIMEOUT_MS, signal);
    progress(`converged: ${lab.plan.nodes.length} agents ready`);

    const pods = lab.plan.pods;
    progress(`connectivity: pinging ${pods.length * (pods.length - 1)} pod pairs (4 source pods at a time)`);
    const m = await connectivityMatrix(lab, pods, {
      concurrency: 4,
      retryForMs: MATRIX_RETRY_MS,
      signal,
      onRound: (round, failing) => {
        if (failing > 0) progress(`  round ${round}: ${failing} pair(s) not connected yet (first packets wait for handshakes), retrying`);
      },
    });
    const connected = m.pairs - m.failures.length;
    progress(`connectivity: ${connected}/${m.pairs} pod pairs connected (RTT in ms)`);
    process.stdout.write(`\n${formatMatrix(m)}\n\n`);
    for (const f of m.failures) process.stdout.write(`  FAIL ${f.from} → ${f.to}: ${f.detail}\n`);

    const statuses = await lab.waitConverged(10_000, signal);
    const summary = meshSummary(lab.plan, statuses);
    process.stdout.write(`Mesh:\n${formatSummary(summary)}\n\n`);
    const kinds = new Map<string, number>();
    for (const p of summary.pairs) kinds.set(p.path, (kinds.get(p.path) ?? 0) + 1);
    progress(`node pairs by path: ${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')}`);
    if (m.failures.length > 0) process.stdout.write(`${await lab.diagnostics({ logLines: 5 })}\n`);
    process.stdout.write(`${(await servicesDemo(lab, progress)).join('\n')}\n\n`);
    ok = m.failures.length === 0;
  } catch (err) {
    progress(`demo ${signal.aborted ? 'interrupted' : `failed: ${errorMessage(err)}`}`);
    if (lab && !signal.aborted) process.stdout.write(`${await lab.diagnostics({ logLines: 10 })}\n`);
  } finally {
    progress('teardown: agents, wireguard-go, coordinator, nats-server, namespaces');
    // Lab.up tears down itself when it fails; this also covers a crash between its steps.
    const report = lab ? await lab.down() : await teardownLab(DEMO_ID, runner, { onProgress: progress });
    if (report.errors.length > 0) {
      ok = false;
      progress(`teardown problems: ${report.errors.join('; ')}`);
    }
    interrupt.dispose();
  }
  const total = ((Date.now() - start) / 1000).toFixed(1);
  progress(ok ? `done: every pod reached every other pod (${total} s)` : `done: ${interrupt.received() ? 'interrupted' : 'FAILED'} (${total} s)`);
  return interrupt.exitCode() ?? (ok ? 0 : 1);
}

process.exitCode = await main();
