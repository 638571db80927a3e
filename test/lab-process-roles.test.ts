// The lab finds its processes through their namespaces and command lines (teardown after a lost
// state file, `lab status`): the command line bin/ really execs must be recognised. The entries are
// read from bin/, so a renamed entry (the agent became main.cjs) fails here, not in a lab teardown.
import { readFileSync } from 'node:fs';
import test from 'ava';
import { roleOfCommandLine } from '../lab/processes.ts';

const root = new URL('..', import.meta.url).pathname.replace(/\/$/, '');

function entryOf(bin: string): string {
  const m = /run-compiled" ([a-z]+\/main\.c?js)/.exec(readFileSync(`${root}/bin/${bin}`, 'utf8'));
  if (!m?.[1]) throw new Error(`bin/${bin} runs no compiled entry`);
  return m[1];
}

for (const [bin, role] of [
  ['crosslink-agent', 'agent'],
  ['crosslink-coordinator', 'coordinator'],
] as const) {
  test(`what bin/${bin} execs (node, its flags, the compiled entry) is recognised as the ${role}`, (t) => {
    const argv = ['node', '--max-semi-space-size=1', '--expose-gc', `${root}/dist/${entryOf(bin)}`, 'run', '--log-level', 'info'];
    t.is(roleOfCommandLine(argv), role);
    t.is(roleOfCommandLine(['/bin/bash', `${root}/bin/${bin}`, 'run']), role);
  });
}

test('the TypeScript entries, wireguard-go and nats-server are recognised; other programs are not ours', (t) => {
  t.is(roleOfCommandLine(['node', '--import', 'tsx', `${root}/agent/main.ts`, 'run']), 'agent');
  t.is(roleOfCommandLine(['node', `${root}/coordinator/main.ts`, 'run']), 'coordinator');
  t.is(roleOfCommandLine(['wireguard-go', '-f', 'xl-ab12-wg0']), 'wireguard-go');
  t.is(roleOfCommandLine(['/usr/sbin/nats-server', '-c', '/run/x/nats.conf']), 'nats-server');
  t.is(roleOfCommandLine(['node', '/srv/other/agent/main.cjs.bak']), 'other');
  t.is(roleOfCommandLine(['sleep', '60']), 'other');
});
