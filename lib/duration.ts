// Durations at the edges (flags, env, files): a number WITH a unit — "250ms", "10s", "1.5m", "1h" —
// or "0". A bare number is refused: it used to mean milliseconds in the coordinator and seconds in
// the agent, so `--node-ttl 1500` meant 25 minutes to one reader and 1.5 s to another. Every
// program checks its durations through checkDuration, so the error is the same everywhere: it names
// the value and what is allowed (the caller adds the field). Values are returned in milliseconds.

import { ValidationError } from './errors.ts';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** Milliseconds for "1500ms", "90s", "2m", "1h" or "0"; undefined for anything else, a bare number included. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (/^0+(\.0+)?$/.test(t)) return 0;
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$/.exec(t);
  if (!m || m[1] === undefined || m[2] === undefined) return undefined;
  const ms = Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]);
  return Number.isFinite(ms) ? ms : undefined;
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0 && ms > 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

export interface DurationBounds {
  readonly minMs: number;
  readonly maxMs: number;
  /** What 0 means when allowed (minMs 0), e.g. "0 disables". */
  readonly zero?: string;
}

/** A valid duration in bounds, or what is allowed instead (for a ValidationError or a zod issue). */
export type DurationCheck = { readonly ms: number } | { readonly allowed: string };

/**
 * Checks a duration against bounds. The "allowed" text names the forms (1500ms, 90s, 2m), the range,
 * and for a bare number the readings it could have had: "1500" → "write 1500ms or 1500s (= 25m)".
 */
export function checkDuration(text: string, b: DurationBounds): DurationCheck {
  const range = `from ${b.minMs === 0 ? '0' : formatDuration(b.minMs)} to ${formatDuration(b.maxMs)}${b.zero !== undefined ? ` (${b.zero})` : ''}`;
  const t = text.trim();
  if (/^[0-9]+(\.[0-9]+)?$/.test(t) && Number(t) !== 0) {
    const asSeconds = Math.round(Number(t) * 1000);
    const hint = asSeconds >= 60_000 && formatDuration(asSeconds) !== `${t}s` ? ` (= ${formatDuration(asSeconds)})` : '';
    return { allowed: `a bare number has no unit: write ${t}ms or ${t}s${hint}; a duration ${range}` };
  }
  const ms = parseDuration(t);
  if (ms === undefined) return { allowed: `use a number with a unit (ms, s, m, h), e.g. 1500ms, 90s or 2m; ${range}` };
  if (ms < b.minMs || ms > b.maxMs) return { allowed: `use a duration ${range}, e.g. ${formatDuration(Math.max(b.minMs, Math.min(b.maxMs, 30_000)))}` };
  return { ms };
}

/** checkDuration for a flag or variable: the milliseconds, or a ValidationError naming `field`, the value and what is allowed. */
export function durationFlag(field: string, text: string, bounds: DurationBounds): number {
  const c = checkDuration(text, bounds);
  if ('allowed' in c) throw new ValidationError(field, text, c.allowed);
  return c.ms;
}
