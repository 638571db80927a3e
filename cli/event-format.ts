// One line per event for `crosslink events` (pure; table-tested).
import type { Palette } from '../lib/colour.ts';
import type { CrosslinkEvent } from '../protocol/events.ts';

/** "2026-12-02 16:30:01Z  warning  gateway-changed  gcp/gcp-n2  cluster gcp: …  (coordinator c-1)" */
export function formatEvent(e: CrosslinkEvent, p: Palette): string {
  const at = new Date(e.at).toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, 'Z');
  const severity = e.severity === 'warning' ? p.yellow('warning') : p.dim('info   ');
  const where = [e.cluster ?? '-', e.node ?? '-'].join('/');
  return `${p.dim(at)}  ${severity}  ${e.type.padEnd(19)}  ${where.padEnd(24)}  ${e.message}  ${p.dim(`(${e.reporter.role} ${e.reporter.name})`)}`;
}
