// The real promtool (Debian `prometheus` package, scripts/setup.sh): lints a scrape and checks rule
// files, exactly as an operator's CI would.
import { spawn } from 'node:child_process';

export interface PromtoolResult {
  readonly code: number | null;
  readonly output: string;
}

/** Runs `promtool <args>` with `stdin` (if any); killed after `timeoutMs`. */
export function promtool(args: readonly string[], stdin?: string, timeoutMs = 30_000): Promise<PromtoolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
    child.stdin.end(stdin ?? '');
  });
}

/** `promtool check metrics` on a scrape body: exit 0 and no lint findings. */
export function checkMetrics(body: string): Promise<PromtoolResult> {
  return promtool(['check', 'metrics'], body);
}
