// bin/crosslink-agent (what the image and the DaemonSet run) starts node with the agent's V8
// settings: a 1 MiB semi-space keeps the young generation at 2 MiB (agent RSS at 1,000 peers
// 125 → 95 MiB, docs/benchmarks.md) and --optimize-for-size keeps its old generation near its live
// size (RSS after joins and idle 137–148 → 89 MiB); --no-opt keeps TurboFan's code and zones out
// (RSS at 3,000 peers 82 → 74 MiB); --expose-gc gives lib/heap-trim.ts its full GC. bin/crosslink-coordinator: semi-spaces of at most 8 MiB
// and 10 % heap growth (RSS at 10,000 nodes ~187 → ~125 MiB), the same flags the bench starts it
// with; not --optimize-for-size, which cost ~20 % more CPU per registration and ~15 % per heartbeat
// for ~14 MiB less (issue 7, docs/benchmarks.md round 19).
// The CLI keeps node's defaults.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { COORDINATOR_NODE_FLAGS } from '../bench/processes.ts';
import { tempDir } from './helpers/temp-dir.ts';

const run = promisify(execFile);
const BIN = join(import.meta.dirname, '..', 'bin');

/** Runs `bin/<program> --help` with a preloaded hook that prints node's execArgv and the new-space size limit. */
async function flagsOf(t: ExecutionContext, program: string): Promise<{ execArgv: string[]; newSpaceMiB: number; gc: string; stderr: string }> {
  const dir = await tempDir(t, 'xl-node-flags-');
  const hook = join(dir, `${program}-hook.cjs`);
  await writeFile(hook, `const v8 = require('node:v8');
const ns = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
process.stderr.write('XL-FLAGS ' + JSON.stringify({ execArgv: process.execArgv, newSpaceMiB: ns ? ns.space_size / 1048576 : -1, gc: typeof globalThis.gc }) + '\\n');
`);
  const { stderr } = await run(join(BIN, program), ['--help'], { env: { ...process.env, NODE_OPTIONS: `--require=${hook}` }, timeout: 60_000 });
  const line = stderr.split('\n').find((l) => l.startsWith('XL-FLAGS '));
  if (line === undefined) throw new Error(`no XL-FLAGS line in: ${stderr}`);
  return { ...(JSON.parse(line.slice('XL-FLAGS '.length)) as { execArgv: string[]; newSpaceMiB: number; gc: string }), stderr };
}

test('the agent runs with a 1 MiB semi-space, optimised for size, without the optimising compiler; the coordinator with semi-spaces of at most 8 MiB and 10 % heap growth, not optimised for size, with the flags the bench measures', async (t) => {
  const agent = await flagsOf(t, 'crosslink-agent');
  t.true(agent.execArgv.includes('--max-semi-space-size=1'), JSON.stringify(agent.execArgv));
  t.true(agent.execArgv.includes('--optimize-for-size'), `the old generation stays near its live size: ${JSON.stringify(agent.execArgv)}`);
  t.true(agent.newSpaceMiB <= 2, `agent new space ${agent.newSpaceMiB} MiB`);
  t.true(agent.execArgv.includes('--no-opt'), `the agent runs without TurboFan: ${JSON.stringify(agent.execArgv)}`);
  // lib/heap-trim.ts needs node's gc(): without it the agent's heap grows ~8 MiB past its live size.
  t.true(agent.execArgv.includes('--expose-gc'), JSON.stringify(agent.execArgv));
  t.is(agent.gc, 'function', 'the agent can run a full GC (heap trim)');
  t.false(/Warning/.test(agent.stderr), `no V8 warning at start: ${agent.stderr}`);
  const coordinator = await flagsOf(t, 'crosslink-coordinator');
  t.deepEqual(coordinator.execArgv.filter((a) => !a.startsWith('--require')), [...COORDINATOR_NODE_FLAGS], JSON.stringify(coordinator.execArgv));
  t.true(coordinator.newSpaceMiB <= 2, `coordinator new space ${coordinator.newSpaceMiB} MiB`);
  t.true(coordinator.execArgv.includes('--max-semi-space-size=8'), `the young generation stays small: ${JSON.stringify(coordinator.execArgv)}`);
  t.true(coordinator.execArgv.includes('--heap-growing-percent=10'), `the coordinator's heap grows slowly: ${JSON.stringify(coordinator.execArgv)}`);
  t.false(coordinator.execArgv.includes('--optimize-for-size'), `--optimize-for-size costs the coordinator CPU per heartbeat: ${JSON.stringify(coordinator.execArgv)}`);
  t.false(/Warning/.test(coordinator.stderr), `no V8 warning at start: ${coordinator.stderr}`);
  t.is(coordinator.gc, 'undefined');
  const cli = await flagsOf(t, 'crosslink');
  t.false(cli.execArgv.includes('--optimize-for-size'), JSON.stringify(cli.execArgv));
});
