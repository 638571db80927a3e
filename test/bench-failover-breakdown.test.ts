// The failover bench's per-phase breakdown (bench/failover-breakdown.ts): read from pino lines of
// the lab's processes; lines before the fault, about another gateway or another cluster never count.
import test from 'ava';
import { failoverBreakdown, parsePinoLog, reportedDown } from '../bench/failover-breakdown.ts';

const line = (time: number, msg: string, fields: Record<string, unknown> = {}): string => JSON.stringify({ level: 30, time, msg, ...fields });

test('breakdown: detection by the quorum-completing reporter, quorum, election and the observer\'s apply', (t) => {
  const t0 = 10_000;
  const agent = (lines: string[]) => parsePinoLog(['not json', ...lines, '{"broken'].join('\n'));
  const agents = new Map([
    ['aws-n1', agent([line(9_000, 'peer probe state down', { peer: 'gcp-n1' }), line(11_900, 'peer probe state down', { peer: 'gcp-n1' }), line(12_300, 'reconciled', { durationMs: 50 }), line(13_000, 'reconciled', { durationMs: 400 })])],
    ['aws-n2', agent([line(11_500, 'peer probe state down', { peer: 'gcp-n1' })])],
    ['gcp-n2', agent([line(11_000, 'reconciled', { durationMs: 10 }), line(12_600, 'reconciled', { durationMs: 300 })])],
    ['azure-n1', agent([line(11_600, 'peer probe state down', { peer: 'other' }), line(11_700, 'peer probe state down', { peer: 'gcp-n1' })])],
  ]);
  const coordinator = agent([
    line(9_500, 'gateway changed', { cluster: 'gcp', previous: 'gcp-n1' }),
    line(11_920, 'gateway reported down by a quorum of its peers', { gateway: 'gcp-n1', down: ['aws-n1', 'aws-n2', 'azure-n1'], up: ['x'] }),
    line(11_930, 'gateway changed', { cluster: 'aws', previous: 'gcp-n1' }),
    line(12_000, 'gateway changed', { cluster: 'gcp', previous: 'gcp-n1' }),
  ]);
  const b = failoverBreakdown({ agents, coordinator }, { t0, oldGateway: 'gcp-n1', newGateway: 'gcp-n2', cluster: 'gcp', observer: 'aws-n1', quorum: 2 });
  t.deepEqual(b.reporters, [['aws-n2', 1500], ['azure-n1', 1700], ['aws-n1', 1900]]);
  t.is(b.detect, 1900, 'three down verdicts completed the quorum');
  t.is(b.quorum, 1920);
  t.is(b.elected, 2000);
  t.is(b.applied, 2300);
  t.is(b.applyStart, 2250);
  t.is(b.gatewayApplied, 2600);
  const none = failoverBreakdown({ agents: new Map(), coordinator: [] }, { t0, oldGateway: 'gcp-n1', newGateway: 'gcp-n2', cluster: 'gcp', observer: 'aws-n1', quorum: 2 });
  t.true(Number.isNaN(none.detect) && Number.isNaN(none.elected) && Number.isNaN(none.applied));
  t.true(reportedDown(coordinator, 'gcp-n1'));
  t.false(reportedDown([...coordinator, ...parsePinoLog(line(13_000, 'gateway no longer reported down', { gateway: 'gcp-n1' }))], 'gcp-n1'));
  t.false(reportedDown(coordinator, 'gcp-n2'));
});
