// Which coordinator the control-plane benchmarks start, and how. By default this checkout's compiled
// coordinator (dist/coordinator/main.js, what bin/crosslink-coordinator and the image run) with the
// V8 flags bin/run-compiled gives it. XL_BENCH_COORDINATOR_DIR=<checkout> runs another checkout's
// coordinator the way that checkout's bin/crosslink-coordinator did (e.g. /work/pre7, the code before
// the issue 7 restructuring: TypeScript through its own tsx loader, node's default V8 flags), so the
// same bench measures both sides of an A/B. Read-only use of that checkout: nothing is built there.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CrosslinkError } from '../lib/errors.ts';

const ROOT = new URL('..', import.meta.url).pathname;

/** The V8 flags bin/run-compiled gives the coordinator (test/agent-node-flags.test.ts keeps them equal). */
export const COORDINATOR_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8', '--heap-growing-percent=10'];

export interface CoordinatorCommand {
  /** argv up to (not including) the coordinator's own arguments. */
  readonly argv: readonly string[];
  /** True for this checkout's coordinator (dist/ must be built first). */
  readonly own: boolean;
  /**
   * Whether the coordinator knows cluster enrollment and join credentials (issue 8). One that does not
   * refuses a registration envelope carrying a `joinSig` and has no cluster records to enroll.
   */
  readonly enrollment: boolean;
  /** For the bench's header: which coordinator ran. */
  readonly label: string;
}

/**
 * The coordinator to run, from XL_BENCH_COORDINATOR_DIR (another checkout) and
 * XL_BENCH_COORDINATOR_NODE_FLAGS (node flags added for profiling, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p";
 * --cpu-prof is refused in NODE_OPTIONS; empty by default: the measured process is unchanged).
 */
export function coordinatorCommand(env: NodeJS.ProcessEnv = process.env): CoordinatorCommand {
  const nodeFlags = (env['XL_BENCH_COORDINATOR_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== '');
  const dir = env['XL_BENCH_COORDINATOR_DIR'];
  if (dir === undefined || dir === '') {
    return { argv: [process.execPath, ...COORDINATOR_NODE_FLAGS, ...nodeFlags, join(ROOT, 'dist', 'coordinator', 'main.js')], own: true, enrollment: true, label: 'this checkout (dist/)' };
  }
  const checkout = resolve(dir);
  const entry = join(checkout, 'coordinator', 'main.ts');
  const loader = join(checkout, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');
  for (const [what, path] of [['coordinator/main.ts', entry], ['node_modules/tsx', loader]] as const) {
    if (!existsSync(path)) throw new CrosslinkError(`XL_BENCH_COORDINATOR_DIR=${JSON.stringify(dir)}: ${what} not found at ${path}; allowed: a Crosslink checkout with its node_modules installed`);
  }
  return {
    // What that checkout's bin/crosslink-coordinator execs (no build step, node's default V8 flags).
    argv: [process.execPath, '--no-warnings=ExperimentalWarning', '--import', `file://${loader}`, ...nodeFlags, entry],
    own: false,
    enrollment: existsSync(join(checkout, 'protocol', 'join-credential.ts')),
    label: `${checkout} (through its tsx)`,
  };
}
