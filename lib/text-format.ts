// Plain-text formatting shared by the CLI, the coordinator's admin commands, the lab and the
// benchmarks: tables, ages, byte counts. Pure functions (table-tested in test/cli-format.test.ts).

/** "4s ago", "3m ago", "2h ago", "5d ago"; "never" for null; "just now" for clock skew into the future. */
export function formatAge(at: number | null, now: number): string {
  if (at === null || at <= 0) return 'never';
  const s = Math.floor((now - at) / 1000);
  if (s < 0) return 'just now';
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.floor(s / 60)}m ago`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i] ?? 'TiB'}`;
}

/** Left-aligned columns separated by two spaces; no trailing whitespace. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd())
    .join('\n');
}
