// Colour for `status`, `peers` and `diagnose` (and anything else printing the same marks), applied
// to the finished text so table alignment is computed on plain text: ✓ green, ✗ red, a skipped
// check ("- " mark) and hints yellow; in peer tables the STATE column (the last one) green for
// up/idle, yellow for pending, red for down/stale/never; in `status` the words that mean trouble
// (FAILED, DISCONNECTED, NOT …, REVOKED, "Ready: no") red and the Problems list yellow. With the
// NO_COLOUR palette (not a TTY, NO_COLOR, --no-color: lib/colour.ts) the text is unchanged.
import type { Palette } from '../lib/colour.ts';

const STATE_COLOUR: Readonly<Record<string, 'green' | 'yellow' | 'red'>> = {
  up: 'green',
  idle: 'green',
  pending: 'yellow',
  down: 'red',
  stale: 'red',
  never: 'red',
};

const TROUBLE = /\b(FAILED|DISCONNECTED|NOT registered|NOT ANSWERING|REVOKED)\b/g;

/** Colours one finished block of CLI output (status, peers, diagnose). */
export function colourText(text: string, p: Palette): string {
  if (!p.enabled) return text;
  let inPeerTable = false;
  let inProblems = false;
  return text
    .split('\n')
    .map((line) => {
      if (/^PEER\s+CLUSTER\s/.test(line)) {
        inPeerTable = true;
        return p.bold(line);
      }
      if (line === '') {
        inPeerTable = false;
        inProblems = false;
        return line;
      }
      if (line === 'Problems:') {
        inProblems = true;
        return p.yellow(line);
      }
      if (inProblems) return p.yellow(line);
      if (inPeerTable) {
        const m = /^(.*\s)(\S+)$/.exec(line);
        const colour = m?.[2] === undefined ? undefined : STATE_COLOUR[m[2]];
        return m && colour ? `${m[1] ?? ''}${p[colour](m[2] ?? '')}` : line;
      }
      if (line.startsWith('✓ ')) return `${p.green('✓')}${line.slice(1)}`;
      if (line.startsWith('✗ ')) return `${p.red('✗')}${line.slice(1)}`;
      if (line.startsWith('- ')) return `${p.yellow('-')}${line.slice(1)}`;
      if (/^\s+hint: /.test(line)) return p.yellow(line);
      if (/^Ready:\s+no$/.test(line)) return line.replace(/no$/, p.red('no'));
      if (/^Ready:\s+yes$/.test(line)) return line.replace(/yes$/, p.green('yes'));
      return line.replace(TROUBLE, (w) => p.red(w)).replace(/ ✓ /g, ` ${p.green('✓')} `).replace(/ ✗ /g, ` ${p.red('✗')} `);
    })
    .join('\n');
}
