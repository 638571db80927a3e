// lab/nats-health.ts against canned /jsz documents (a recording runner, no servers): server names
// map to the lab's process names, the stream leader's own report is preferred (it alone knows its
// followers' currency), a member that does not answer is reported down with why.
import test from 'ava';
import type { RunOptions, RunResult, Runner } from '../lib/runner.ts';
import { formatNatsHealth, readNatsHealth } from '../lab/nats-health.ts';
import { planNats } from '../lab/nats-plan.ts';

const nats = planNats('lab', '203.0.113.2', 3);

function jsz(leader: string, replicas: readonly [string, boolean][]): string {
  return JSON.stringify({
    meta_cluster: { leader: 'xl-lab-nats-0' },
    account_details: [{ stream_detail: [{ name: 'KV_crosslink', cluster: { leader, replicas: replicas.map(([name, current]) => ({ name, current })) } }] }],
  });
}

class CannedRunner implements Runner {
  readonly calls: string[][] = [];
  constructor(private readonly byPort: Record<number, RunResult>) {}
  run(argv: readonly string[], _options?: RunOptions): Promise<RunResult> {
    this.calls.push([...argv]);
    const port = Number(/:(\d+)\/jsz/.exec(argv.at(-1) ?? '')?.[1]);
    return Promise.resolve(this.byPort[port] ?? { exitCode: 7, stdout: '', stderr: 'curl: (7) Failed to connect' });
  }
}

test("the stream leader's report wins; names are the lab's; a silent member is down with curl's reason", async (t) => {
  const runner = new CannedRunner({
    // nats-0 (a follower) sees nats-2 as not current yet; nats-1 leads and says nats-0 current, nats-2 not.
    8222: { exitCode: 0, stderr: '', stdout: jsz('xl-lab-nats-1', [['xl-lab-nats-1', true], ['xl-lab-nats-2', false]]) },
    8223: { exitCode: 0, stderr: '', stdout: jsz('xl-lab-nats-1', [['xl-lab-nats-0', true], ['xl-lab-nats-2', false]]) },
  });
  const h = await readNatsHealth(runner, 'xl-lab-ctl', nats);
  t.deepEqual(runner.calls[0]?.slice(0, 5), ['ip', 'netns', 'exec', 'xl-lab-ctl', 'curl']);
  t.deepEqual(h.stream, { stream: 'KV_crosslink', leader: 'nats-1', followers: [{ name: 'nats-0', current: true }, { name: 'nats-2', current: false }], reportedBy: 'nats-1' });
  t.deepEqual(h.members.map((m) => [m.name, m.up, m.metaLeader]), [['nats-0', true, 'nats-0'], ['nats-1', true, 'nats-0'], ['nats-2', false, null]]);
  t.regex(h.members[2]?.error ?? '', /Failed to connect/);
  t.deepEqual(formatNatsHealth(nats, h), [
    'nats cluster xl-lab-nats: 2/3 servers answering (not: nats-2), meta leader nats-0',
    'bucket stream KV_crosslink (R3): leader nats-1; replicas nats-0 current, nats-2 NOT current',
  ]);
});

test('a document that is not /jsz, and no stream anywhere, are said so', async (t) => {
  const runner = new CannedRunner({
    8222: { exitCode: 0, stderr: '', stdout: JSON.stringify({ meta_cluster: { leader: 42 } }) },
    8223: { exitCode: 0, stderr: '', stdout: JSON.stringify({ meta_cluster: { leader: 'xl-lab-nats-1' } }) },
  });
  const h = await readNatsHealth(runner, 'xl-lab-ctl', nats);
  t.regex(h.members[0]?.error ?? '', /unexpected \/jsz document/);
  t.is(h.stream.reportedBy, null);
  t.is(formatNatsHealth(nats, h)[1], 'bucket stream KV_crosslink: not found on any answering server');
});
