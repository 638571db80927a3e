// One MTU bound (protocol/mtu.ts) everywhere: the agent's --mtu, its auto-detection, the /view
// document the CLI reads and the CLI's showconf --mtu (test/cli-kv.test.ts) all say 1280-9000.
import test from 'ava';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { parseAgentConfig } from '../agent/config.ts';
import { defaultMtu } from '../agent/dataplane/mtu.ts';
import { RecordingRunner } from './helpers/recording-runner.ts';
import { showconfSettings } from '../cli/showconf-settings.ts';
import { MTU_FALLBACK, MTU_MAX, MTU_MIN, Mtu, WIREGUARD_OVERHEAD } from '../protocol/mtu.ts';
import { ViewDocument } from '../protocol/status-api.ts';
import { nodeRecord } from './agent-helpers.ts';

const KEY = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
const BASE = ['--nats-url', 'nats://127.0.0.1:4222', '--cluster', 'c1', '--location', 'lab', '--pod-cidr', '10.244.1.0/24', '--coordinator-key', KEY];
const agentMtu = (v: string): number | 'auto' => parseAgentConfig([...BASE, '--mtu', v], { env: {}, hostname: 'n', fileExists: () => false }).mtu;

const underlay = (mtu: number): RecordingRunner =>
  new RecordingRunner().on(['ip', '-j', 'route', 'show', 'default'], '[{"dst":"default","dev":"eth0"}]').on(['ip', '-j', 'link', 'show', 'dev', 'eth0'], `[{"mtu":${mtu}}]`);

test('the bound is 1280 (IPv6 minimum) to 9000', (t) => {
  t.is(MTU_MIN, 1280);
  t.is(MTU_MAX, 9000);
});

test('--mtu: the agent accepts exactly the bound, and its error names it', (t) => {
  t.is(agentMtu(String(MTU_MIN)), MTU_MIN);
  t.is(agentMtu(String(MTU_MAX)), MTU_MAX);
  t.is(agentMtu('auto'), 'auto');
  for (const bad of [String(MTU_MIN - 1), '576', String(MTU_MAX + 1), '1400.5']) {
    const err = t.throws(() => agentMtu(bad));
    t.regex(err.message, /^--mtu: ".*" is not valid; must be "auto" or a whole number 1280-9000/, bad);
  }
});

test('auto-detection never returns less than the bound: a small underlay is clamped to 1280 with a warning', async (t) => {
  t.is(await defaultMtu(underlay(1500)), 1420);
  t.is(await defaultMtu(underlay(MTU_MIN + 80)), MTU_MIN, 'exactly fits');
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, new Writable({ write: (chunk: Buffer, _enc, cb) => (lines.push(chunk.toString()), cb()) }));
  for (const small of [1300, 600, 576]) {
    const mtu = await defaultMtu(underlay(small), logger);
    t.is(mtu, MTU_MIN, `underlay ${small}`);
    t.true(Mtu.safeParse(mtu).success, 'what auto-detection returns is a valid --mtu');
  }
  t.is(lines.length, 3);
  t.regex(lines[0] ?? '', /underlay MTU 1300 leaves 1220 for the tunnel, below the IPv6 minimum 1280; using 1280/);
});

test('the /view document refuses an MTU outside the bound (the CLI computes nothing from it)', async (t) => {
  const self = await nodeRecord({ name: 'node-a' });
  const doc = (mtu: number): unknown => ({
    self,
    nodes: [self],
    clusters: [],
    dataplaneConfig: { interfaceName: 'xl0', listenPort: 51820, mtu, natKeepaliveSec: 25, relayPortBase: 52000, relayPortSpan: 1000 },
  });
  t.true(ViewDocument.safeParse(doc(1420)).success);
  t.false(ViewDocument.safeParse(doc(576)).success);
});

test('a record without settings: showconf assumes the MTU the agent falls back to when the underlay is unknown', async (t) => {
  t.is(MTU_FALLBACK, 1500 - WIREGUARD_OVERHEAD);
  const agentFallback = await defaultMtu(new RecordingRunner().fail(['ip'], 'no route table'));
  t.is(agentFallback, MTU_FALLBACK);
  const old = await nodeRecord({ name: 'old-1' });
  t.is(old.settings, undefined, 'an older agent\'s record carries no settings');
  const assumed = showconfSettings(old, {});
  t.is(assumed.config.mtu, agentFallback, 'the CLI computes with the MTU the agent itself would have used');
  t.regex(assumed.notes.join('\n'), new RegExp(`assumed: .*--mtu ${agentFallback}`));
});
