// agent/health/targets.ts: one probe target per WireGuard peer, in code-unit order of the node
// names (lib/compare.ts) — the same order on every machine. The agent never uses locale-aware
// comparison (localeCompare, Intl): it pages ICU's collation data into the process, ~3 MiB of
// resident memory (docs/benchmarks.md, issue 10 round 18).
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { probeTargets } from '../agent/health/targets.ts';
import type { DesiredState } from '../agent/plan/model.ts';
import type { NodeRecord } from '../protocol/messages.ts';

test('probe targets follow the peers, in code-unit order of the names (not the locale order)', (t) => {
  const names = ['b1', 'a', 'B', 'b-1', 'é', 'Z'];
  const desired = { peers: names.map((node) => ({ node })) } as unknown as DesiredState;
  const nodes = new Map(names.map((name, i) => [name, { name, overlayIp: `100.96.0.${i + 1}` } as unknown as NodeRecord]));
  const targets = probeTargets(desired, nodes, new Set(['a']));
  t.deepEqual(targets.map((x) => x.name), ['B', 'Z', 'a', 'b-1', 'b1', 'é']);
  t.deepEqual(targets.find((x) => x.name === 'a'), { name: 'a', ip: '100.96.0.2', fast: true });
});

test('no locale-aware comparison or formatting in what the agent runs (agent/, lib/, protocol/)', (t) => {
  const offenders: string[] = [];
  const scan = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) scan(p);
      else if (e.name.endsWith('.ts')) {
        readFileSync(p, 'utf8').split('\n').forEach((line, i) => {
          if (/^\s*\/\//.test(line)) return;
          if (/\.localeCompare\(|\bIntl\.|\.toLocale(?:String|DateString|TimeString|UpperCase|LowerCase)\(/.test(line)) offenders.push(`${p}:${i + 1}: ${line.trim()}`);
        });
      }
    }
  };
  for (const d of ['agent', 'lib', 'protocol']) scan(join(import.meta.dirname, '..', d));
  t.deepEqual(offenders, []);
});
