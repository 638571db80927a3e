// Ctrl-C / SIGTERM while the lab CLI or the demo works: run the handler (full teardown) once, then exit.
// A second signal while tearing down is ignored: stopping half-way would leave wireguard-go behind.

export function onInterrupt(handler: (signal: NodeJS.Signals) => Promise<void>): () => void {
  let running = false;
  const listener = (signal: NodeJS.Signals): void => {
    if (running) {
      process.stderr.write(`(${signal} ignored: teardown in progress)\n`);
      return;
    }
    running = true;
    process.stderr.write(`\n${signal}: tearing the lab down…\n`);
    handler(signal)
      .catch((err: unknown) => process.stderr.write(`teardown failed: ${err instanceof Error ? err.message : String(err)}\n`))
      .finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', listener);
  process.on('SIGTERM', listener);
  return () => {
    process.off('SIGINT', listener);
    process.off('SIGTERM', listener);
  };
}

/** "[ 12.3s] message": one progress line per phase, with time since `start`. */
export function progressPrinter(start = Date.now(), write: (s: string) => void = (s) => process.stdout.write(s)): (line: string) => void {
  return (line) => write(`[${((Date.now() - start) / 1000).toFixed(1).padStart(5)}s] ${line}\n`);
}
