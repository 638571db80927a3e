// The `crosslink` CLI run in-process: its output captured instead of written to the terminal.
import type { CliIo } from '../../cli/main.ts';

export function captureIo(): CliIo & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return { stdout: (s) => (out += s), stderr: (s) => (err += s), env: {}, now: () => Date.now(), out: () => out, err: () => err };
}
