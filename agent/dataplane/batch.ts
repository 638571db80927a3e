// Batched data-plane commands: many planned changes, a constant number of process spawns.
//   - routes: ONE `ip -force -batch -` per apply (the lines on stdin). -force attempts every line;
//     iproute2 prints the error of a failed line followed by "Command failed -:<line>", which
//     attributes each failure to its item. A failed batch whose output names no line is retried
//     item by item, so a failure is always reported per item.
//   - WireGuard peers: ONE `wg set <if> peer … peer …` carrying every peer change (split only when
//     the argv would pass maxArgvBytes). `wg set` is one transaction with no per-peer report, so a
//     failed batch is retried item by item (re-setting a peer is idempotent) to find the failures.
// Items keep their single-command argv (`ip route replace …`, `wg set <if> peer …`): that is what the
// apply report lists, and the form a per-item retry runs.
import { CommandError, CrosslinkError, errorMessage } from '../../lib/errors.ts';
import type { Runner } from '../../lib/runner.ts';
import type { PlannedCommand } from './wg-diff.ts';

/** What running a list of planned commands did, item by item. */
export interface BatchOutcome {
  /** Items that took effect. */
  readonly succeeded: readonly PlannedCommand[];
  readonly failures: readonly { readonly item: PlannedCommand; readonly error: Error }[];
}

/** A planned command that cannot be put into a batch (a token with whitespace would split an `ip -batch` line). */
export class BatchItemError extends CrosslinkError {
  override name = 'BatchItemError';
}

/** Linux ARG_MAX is at least 2 MiB by default; one `wg set` stays well below it (≈ 4,000 peers per command). */
export const DEFAULT_MAX_ARGV_BYTES = 512 * 1024;
/** A batch of thousands of changes takes longer than a single command's default 10 s timeout allows for under load. */
const BATCH_TIMEOUT_MS = 60_000;

const EMPTY: BatchOutcome = { succeeded: [], failures: [] };

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(errorMessage(err)));

/** Each item on its own: the fallback when a batch failed without saying which item. */
async function oneByOne(runner: Runner, items: readonly PlannedCommand[]): Promise<BatchOutcome> {
  const succeeded: PlannedCommand[] = [];
  const failures: { item: PlannedCommand; error: Error }[] = [];
  for (const item of items) {
    try {
      await runner.run(item.argv);
      succeeded.push(item);
    } catch (err) {
      failures.push({ item, error: asError(err) });
    }
  }
  return { succeeded, failures };
}

/** `ip route replace 10.1.0.0/24 dev xl0 proto 149` → `route replace 10.1.0.0/24 dev xl0 proto 149`. */
export function ipBatchLine(item: PlannedCommand): string {
  const [ip, ...rest] = item.argv;
  if (ip !== 'ip' || rest.length === 0) throw new BatchItemError(`${item.argv.join(' ')}: only ip commands go into an ip batch`);
  for (const token of rest) {
    if (token === '' || /[\s"'\\#]/.test(token)) {
      throw new BatchItemError(`${item.argv.join(' ')}: token ${JSON.stringify(token)} cannot be put on an ip -batch line (whitespace, quote, backslash or # not allowed)`);
    }
  }
  return rest.join(' ');
}

/**
 * Attributes `ip -force -batch` stderr to lines: every "Command failed <file>:<n>" closes the error
 * text printed since the previous one. Returns line number (1-based) → error text.
 */
export function parseIpBatchErrors(stderr: string): Map<number, string> {
  const out = new Map<number, string>();
  let pending: string[] = [];
  for (const line of stderr.split('\n')) {
    const m = /^Command failed .*:(\d+)\s*$/.exec(line);
    if (m) {
      out.set(Number(m[1]), pending.join('\n').trim());
      pending = [];
    } else if (line.trim() !== '') {
      pending.push(line);
    }
  }
  return out;
}

/** All `ip` items in one `ip -force -batch -`; failures attributed per line. */
export async function runIpBatch(runner: Runner, items: readonly PlannedCommand[]): Promise<BatchOutcome> {
  if (items.length === 0) return EMPTY;
  const lines = items.map(ipBatchLine);
  const argv = ['ip', '-force', '-batch', '-'];
  let result;
  try {
    result = await runner.run(argv, { input: `${lines.join('\n')}\n`, allowFailure: true, timeoutMs: BATCH_TIMEOUT_MS });
  } catch {
    // Could not run at all (timeout, spawn failure): which lines took effect is unknown; one by one settles it.
    return oneByOne(runner, items);
  }
  if (result.exitCode === 0) return { succeeded: items, failures: [] };
  const errors = parseIpBatchErrors(result.stderr);
  if (errors.size === 0 || [...errors.keys()].some((n) => n < 1 || n > items.length)) return oneByOne(runner, items);
  const succeeded: PlannedCommand[] = [];
  const failures: { item: PlannedCommand; error: Error }[] = [];
  items.forEach((item, i) => {
    const text = errors.get(i + 1);
    if (text === undefined) succeeded.push(item);
    else failures.push({ item, error: new CommandError(item.argv, result.exitCode, text, false) });
  });
  return { succeeded, failures };
}

/**
 * `wg set <iface> …` items merged into as few commands as the argv limit allows (one for thousands
 * of peers), in order. A failed command is retried item by item to find the failing peers.
 */
export async function runWgSetBatch(runner: Runner, iface: string, items: readonly PlannedCommand[], maxArgvBytes = DEFAULT_MAX_ARGV_BYTES): Promise<BatchOutcome> {
  const prefix = ['wg', 'set', iface];
  const chunks: { argv: string[]; items: PlannedCommand[]; bytes: number }[] = [];
  for (const item of items) {
    if (!prefix.every((p, i) => item.argv[i] === p)) throw new BatchItemError(`${item.argv.join(' ')}: only "wg set ${iface}" commands go into a wg set batch`);
    const args = item.argv.slice(prefix.length);
    const bytes = args.reduce((n, a) => n + Buffer.byteLength(a) + 1, 0);
    const last = chunks.at(-1);
    if (last && last.bytes + bytes <= maxArgvBytes) {
      last.argv.push(...args);
      last.items.push(item);
      last.bytes += bytes;
    } else {
      chunks.push({ argv: [...prefix, ...args], items: [item], bytes: prefix.reduce((n, a) => n + a.length + 1, 0) + bytes });
    }
  }
  const succeeded: PlannedCommand[] = [];
  const failures: { item: PlannedCommand; error: Error }[] = [];
  for (const chunk of chunks) {
    try {
      await runner.run(chunk.argv, { timeoutMs: BATCH_TIMEOUT_MS });
      succeeded.push(...chunk.items);
    } catch (err) {
      // A one-item command already was that item: its error is the item's.
      const [only] = chunk.items;
      const each = chunk.items.length === 1 && only ? { succeeded: [], failures: [{ item: only, error: asError(err) }] } : await oneByOne(runner, chunk.items);
      succeeded.push(...each.succeeded);
      failures.push(...each.failures);
    }
  }
  return { succeeded, failures };
}
