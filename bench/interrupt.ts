// Ctrl-C / SIGTERM of `npm run bench`: stop everything the bench started before exiting. The
// sections' own `finally` blocks do not run (the process exits mid-section), and the exit hook's
// SIGTERM (lib/exit-cleanup.ts) is not waited for: a coordinator slow to stop (its nats-server
// stopping at the same moment) outlived the bench once. So on the first signal every child still
// running (coordinators, nats-servers, agents, workers: lib/child-process.ts stopAllChildren) is
// stopped — SIGTERM, `graceMs`, SIGKILL, waited for — then the registered cleanups run (a lab's
// teardown by id: its processes are detached and its namespaces outlive us; a store directory),
// each bounded, and the bench exits 130 (SIGINT) or 143 (SIGTERM). Further signals are ignored
// meanwhile (lab/interrupt.ts): stopping half-way would leave the rest behind.
import { settlesWithin, stopAllChildren } from '../lib/child-process.ts';
import { errorMessage } from '../lib/errors.ts';
import { catchInterrupts, type Interrupt } from '../lab/interrupt.ts';
import { Lab, type LabUpOptions } from '../lab/lab.ts';
import { teardownLab } from '../lab/teardown.ts';
import { ProcessRunner } from '../lib/runner.ts';

const cleanups = new Set<() => Promise<unknown>>();

/** Runs `cleanup` if the bench is interrupted; the returned function unregisters it (call it in the section's `finally`). */
export function onBenchInterrupt(cleanup: () => Promise<unknown>): () => void {
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

export interface BenchInterruptOptions {
  /** How long a child gets after SIGTERM before SIGKILL (default 5 s). */
  readonly graceMs?: number;
  /** How long each registered cleanup may take (default 60 s: a lab teardown). */
  readonly cleanupMs?: number;
  /** Default process.exit. */
  readonly exit?: (code: number) => void;
  readonly log?: (line: string) => void;
}

/** Installs the handler (see the file comment) for the rest of the run. */
export function stopOnInterrupt(o: BenchInterruptOptions = {}): Interrupt {
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const exit = o.exit ?? ((code: number) => process.exit(code));
  const interrupt = catchInterrupts((sig) => {
    log(`${sig}: stopping every process the bench started, then exiting`);
    void stopEverything(o, log).finally(() => exit(sig === 'SIGINT' ? 130 : 143));
  });
  return interrupt;
}

async function stopEverything(o: BenchInterruptOptions, log: (line: string) => void): Promise<void> {
  const survivors = await stopAllChildren({ graceMs: o.graceMs ?? 5000, onEscalate: () => log('a child ignored SIGTERM; SIGKILL') });
  if (survivors.length > 0) log(`still running after SIGKILL: pid ${survivors.join(', ')}`);
  for (const cleanup of [...cleanups]) {
    const done = cleanup().catch((err: unknown) => log(`cleanup failed: ${errorMessage(err)}`));
    if (!(await settlesWithin(done, o.cleanupMs ?? 60_000))) log(`a cleanup took over ${o.cleanupMs ?? 60_000} ms; exiting without it`);
  }
}

/**
 * Lab.up for a bench section, torn down by its id if the bench is interrupted — while it comes up
 * too (lab/teardown.ts finds it by its state file and namespaces). `down()` unregisters that and
 * tears the lab down (the section's `finally`).
 */
export async function upLabForBench(options: LabUpOptions): Promise<{ readonly lab: Lab; readonly down: () => Promise<void> }> {
  const unregister = onBenchInterrupt(() => teardownLab(options.id, new ProcessRunner()));
  try {
    const lab = await Lab.up(options);
    return {
      lab,
      down: async () => {
        unregister();
        await lab.down();
      },
    };
  } catch (err) {
    // Lab.up tore down what it had started.
    unregister();
    throw err;
  }
}
