// Waiting for a started child to say it is ready ("listening") on stdout or stderr: resolves on the
// marker, rejects if the child exits first or the deadline passes, each error naming `what` and the
// output so far. Was written twice (lab/bulk.ts's TCP sink, test/helpers/tcp-probe.ts's server).
import type { Readable } from 'node:stream';
import { CrosslinkError } from './errors.ts';

/** The part of a node:child_process ChildProcess this needs. */
export interface OutputSource {
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  once(event: 'exit', listener: () => void): unknown;
  off(event: 'exit', listener: () => void): unknown;
}

export class OutputMarkerError extends CrosslinkError {
  override name = 'OutputMarkerError';
}

export function waitForOutput(child: OutputSource, marker: string, o: { readonly timeoutMs: number; readonly what: string }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let out = '';
    const done = (err?: Error): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve();
    };
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (out.includes(marker)) done();
    };
    const onExit = (): void => done(new OutputMarkerError(`${o.what} exited: ${out}`));
    const timer = setTimeout(() => done(new OutputMarkerError(`${o.what} did not start within ${o.timeoutMs} ms: ${out}`)), o.timeoutMs);
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}
