// ANSI colour for terminal output: on only when stdout is a TTY, and off with NO_COLOR (any
// non-empty value, https://no-color.org) or --no-color. Piped output never has escape codes.
export interface Palette {
  readonly enabled: boolean;
  readonly red: (s: string) => string;
  readonly green: (s: string) => string;
  readonly yellow: (s: string) => string;
  readonly dim: (s: string) => string;
  readonly bold: (s: string) => string;
}

const wrap = (open: number, close: number) => (s: string) => `\u001b[${open}m${s}\u001b[${close}m`;
const plain = (s: string): string => s;

export const NO_COLOUR: Palette = { enabled: false, red: plain, green: plain, yellow: plain, dim: plain, bold: plain };
export const ANSI_COLOUR: Palette = { enabled: true, red: wrap(31, 39), green: wrap(32, 39), yellow: wrap(33, 39), dim: wrap(2, 22), bold: wrap(1, 22) };

export function colourEnabled(o: { readonly isTTY: boolean; readonly env: Readonly<Record<string, string | undefined>>; readonly noColorFlag: boolean }): boolean {
  if (o.noColorFlag) return false;
  const noColor = o.env['NO_COLOR'];
  if (noColor !== undefined && noColor !== '') return false;
  if (o.env['TERM'] === 'dumb') return false;
  return o.isTTY;
}

export function palette(enabled: boolean): Palette {
  return enabled ? ANSI_COLOUR : NO_COLOUR;
}

/** Removes ANSI SGR sequences (for width computations and tests). */
export function stripAnsi(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\u001b\[[0-9;]*m/g, '');
}
