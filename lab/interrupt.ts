// Ctrl-C / SIGTERM while the lab CLI or the demo works: abort the work (it stops between steps and
// its `finally` tears the lab down in order). Further signals are ignored while that runs: stopping
// half-way would leave wireguard-go and namespaces behind.

export interface Interrupt {
  readonly signal: AbortSignal;
  /** The first signal received, if any. */
  received(): NodeJS.Signals | undefined;
  /** Exit code for an interrupted run (130 for SIGINT, 143 for SIGTERM). */
  exitCode(): number | undefined;
  dispose(): void;
}

export function catchInterrupts(onFirst: (signal: NodeJS.Signals) => void = () => undefined): Interrupt {
  const controller = new AbortController();
  let first: NodeJS.Signals | undefined;
  const listener = (sig: NodeJS.Signals): void => {
    if (first) {
      process.stderr.write(`(${sig} ignored: tearing down, please wait)\n`);
      return;
    }
    first = sig;
    onFirst(sig);
    controller.abort(new Error(`interrupted by ${sig}`));
  };
  process.on('SIGINT', listener);
  process.on('SIGTERM', listener);
  return {
    signal: controller.signal,
    received: () => first,
    exitCode: () => (first === undefined ? undefined : first === 'SIGINT' ? 130 : 143),
    dispose: () => {
      process.off('SIGINT', listener);
      process.off('SIGTERM', listener);
    },
  };
}

/** "[ 12.3s] message": one progress line per phase, with time since `start`. */
export function progressPrinter(start = Date.now(), write: (s: string) => void = (s) => process.stdout.write(s)): (line: string) => void {
  return (line) => write(`[${((Date.now() - start) / 1000).toFixed(1).padStart(5)}s] ${line}\n`);
}
