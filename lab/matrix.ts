// Pod × pod connectivity: one ping per ordered pair (each source pod pings all its targets at once), failed pairs retried until
// a deadline (the first packet of a pair may ride a WireGuard handshake), then a printable table.
import type { PingResult } from './lab.ts';
import { mapLimit } from '../lib/pool.ts';
import type { PodPlan } from './plan.ts';

export interface Pinger {
  /** One echo from `from` to each of `to`, all at once (one process start per source pod). */
  pingMany(from: PodPlan, to: readonly PodPlan[], timeoutSec?: number): Promise<PingResult[]>;
}

export interface MatrixOptions {
  /** Source pods pinging at the same time (each pings all its targets at once). */
  readonly concurrency?: number;
  /** Keep retrying failed pairs until this much time has passed since the start. */
  readonly retryForMs?: number;
  readonly pingTimeoutSec?: number;
  /** Called after each round with the number of pairs still failing. */
  readonly onRound?: (round: number, failing: number) => void;
  /** Stops between pings (in-flight pings finish); the promise rejects with the abort reason. */
  readonly signal?: AbortSignal;
}

export interface MatrixResult {
  readonly pods: readonly PodPlan[];
  /** Key `${from}>${to}`. */
  readonly results: ReadonlyMap<string, PingResult>;
  readonly failures: readonly PingResult[];
  readonly pairs: number;
}

const key = (from: string, to: string): string => `${from}>${to}`;

export function allPairs(pods: readonly PodPlan[]): [PodPlan, PodPlan][] {
  return pods.flatMap((a) => pods.filter((b) => b !== a).map((b): [PodPlan, PodPlan] => [a, b]));
}

export async function connectivityMatrix(pinger: Pinger, pods: readonly PodPlan[], options: MatrixOptions = {}): Promise<MatrixResult> {
  const started = Date.now();
  const results = new Map<string, PingResult>();
  let todo = allPairs(pods);
  for (let round = 1; ; round++) {
    const bySource = new Map<PodPlan, PodPlan[]>();
    for (const [a, b] of todo) bySource.set(a, [...(bySource.get(a) ?? []), b]);
    const got = await mapLimit([...bySource], options.concurrency ?? 4, ([a, targets]) => {
      options.signal?.throwIfAborted();
      return pinger.pingMany(a, targets, options.pingTimeoutSec ?? 1);
    });
    for (const r of got.flat()) results.set(key(r.from, r.to), r);
    todo = todo.filter(([a, b]) => !results.get(key(a.name, b.name))?.ok);
    options.onRound?.(round, todo.length);
    if (todo.length === 0 || Date.now() - started >= (options.retryForMs ?? 0)) break;
    options.signal?.throwIfAborted();
    await new Promise((r) => setTimeout(r, 300));
  }
  const failures = [...results.values()].filter((r) => !r.ok);
  return { pods, results, failures, pairs: results.size };
}

/** Rows = source pod, columns = destination pod (numbered, legend in the row labels); cells = RTT ms or FAIL. */
export function formatMatrix(m: MatrixResult): string {
  const labels = m.pods.map((p, i) => `${String(i + 1).padStart(2)} ${p.name}`);
  const width = Math.max(...labels.map((l) => l.length));
  const cell = (s: string): string => s.padStart(5);
  const header = `${' '.repeat(width)} ${m.pods.map((_, i) => cell(String(i + 1))).join('')}`;
  const rows = m.pods.map((a, i) => {
    const cells = m.pods.map((b) => {
      if (a === b) return cell('·');
      const r = m.results.get(key(a.name, b.name));
      if (!r) return cell('?');
      if (!r.ok) return cell('FAIL');
      return cell(r.rttMs === null ? 'ok' : r.rttMs < 10 ? r.rttMs.toFixed(1) : String(Math.round(r.rttMs)));
    });
    return `${(labels[i] ?? '').padEnd(width)} ${cells.join('')}`;
  });
  return [header, ...rows].join('\n');
}
