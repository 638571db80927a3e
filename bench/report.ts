// Figures and tables for the benchmark sections: percentiles and a plain aligned table with the
// parameters it was measured under. Benchmarks print; they never assert.
import { renderTable } from '../lib/text-format.ts';

/** Nearest-rank percentile (p in 0..100) of `xs`; NaN for an empty list. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] ?? NaN;
}

export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** Milliseconds with a precision that suits their size. */
export function ms(x: number): string {
  if (!Number.isFinite(x)) return '-';
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

export type Cell = string | number;

export interface Table {
  readonly title: string;
  /** What was measured under which settings, printed above the table. */
  readonly params?: Readonly<Record<string, Cell>>;
  readonly header: readonly string[];
  readonly rows: readonly (readonly Cell[])[];
  /** Lines printed under the table (how a figure was measured, caveats). */
  readonly notes?: readonly string[];
}

export function formatTable(t: Table): string {
  const rows = t.rows.map((r) => r.map((c) => String(c)));
  const widths = t.header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const out = [`## ${t.title}`];
  if (t.params && Object.keys(t.params).length > 0) {
    out.push(Object.entries(t.params).map(([k, v]) => `${k}=${v}`).join(', '));
  }
  out.push(renderTable(t.header, [widths.map((w) => '-'.repeat(w)), ...rows]));
  for (const n of t.notes ?? []) out.push(`  ${n}`);
  return out.join('\n');
}

export function printTable(t: Table): void {
  console.log(`${formatTable(t)}\n`);
}
