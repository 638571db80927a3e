// The layer rule as data: lib ← protocol ← agent | coordinator ← cli ← lab ← bench. An import may go
// to its own folder or to a lower layer; never up, never sideways (agent ↔ coordinator). bench sits
// above lab: benchmarks bring up labs (bench/idle.ts), a lab never imports a benchmark. scripts/
// (the build) sits on top: it may bundle anything, and no module imports it.
import { posix } from 'node:path';

/** Layer of each top-level folder; equal numbers are siblings that must not import each other. */
export const LAYERS: Readonly<Record<string, number>> = {
  lib: 0,
  protocol: 1,
  agent: 2,
  coordinator: 2,
  cli: 3,
  lab: 4,
  bench: 5,
  /** The build (scripts/build-agent.ts): it bundles the others; nothing imports it. */
  scripts: 6,
};

export interface ImportViolation {
  readonly file: string;
  readonly line: number;
  readonly specifier: string;
  readonly reason: string;
}

/** Static `import … from`, `export … from`, side-effect `import '…'`, dynamic `import('…')` and CommonJS `require('…')`. */
const IMPORT_RE = /(?:\bimport\s*(?:[\w*{}\s,]+\bfrom\s*)?|\bexport\s*(?:type\s*)?[\w*{}\s,]*\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*)['"]([^'"]+)['"]/g;

export function importsOf(source: string): { specifier: string; line: number }[] {
  const out: { specifier: string; line: number }[] = [];
  for (const m of source.matchAll(IMPORT_RE)) {
    const specifier = m[1];
    if (specifier === undefined) continue;
    out.push({ specifier, line: source.slice(0, m.index).split('\n').length });
  }
  return out;
}

/** Checks every relative import of `files` (path relative to the repo root → source text). */
export function layerViolations(files: ReadonlyMap<string, string>): ImportViolation[] {
  const violations: ImportViolation[] = [];
  for (const [file, source] of files) {
    const from = file.split('/')[0] ?? '';
    const fromLayer = LAYERS[from];
    if (fromLayer === undefined) {
      violations.push({ file, line: 1, specifier: '', reason: `folder "${from}" has no layer (add it to LAYERS)` });
      continue;
    }
    for (const { specifier, line } of importsOf(source)) {
      if (!specifier.startsWith('.')) continue;
      const target = posix.normalize(posix.join(posix.dirname(file), specifier));
      const to = target.split('/')[0] ?? '';
      if (to === from) continue;
      const toLayer = LAYERS[to];
      const v = (reason: string): void => void violations.push({ file, line, specifier, reason });
      if (toLayer === undefined) v(`imports outside the layered tree (${to})`);
      else if (toLayer > fromLayer) v(`${from} (layer ${fromLayer}) imports up into ${to} (layer ${toLayer})`);
      else if (toLayer === fromLayer) v(`${from} imports sideways into its sibling ${to}`);
    }
  }
  return violations;
}

/** Exported names that say "test double": they belong under test/helpers/, not in the production tree. */
const TEST_FAKE_RE = /^export\s+(?:default\s+)?(?:abstract\s+|async\s+)?(?:class|function\*?|const|let|var)\s+((?:Fake|Mock|Stub|Dummy|Manual|Recording|fake|mock|stub|dummy)\w*)/gm;

/** `file:line Name` of every export of `files` named like a test fake. */
export function testFakesIn(files: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  for (const [file, source] of files) {
    for (const m of source.matchAll(TEST_FAKE_RE)) out.push(`${file}:${source.slice(0, m.index).split('\n').length} ${m[1] ?? ''}`);
  }
  return out;
}
