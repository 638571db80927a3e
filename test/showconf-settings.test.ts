// `showconf --nats-url` computes exactly what the agent applies: the agent publishes its effective
// data-plane settings (interface, MTU, NAT keepalive, relay ports) in its signed node record, and
// showconf uses them. Real nats-server, real coordinator, real Agents (FakeDataplane records what
// the agent applied); a record without settings falls back to the defaults and says so.
import test from 'ava';
import { runCli } from '../cli/main.ts';
import { showconfSettings } from '../cli/showconf-settings.ts';
import { waitFor } from '../lib/wait.ts';
import { ValidationError } from '../lib/errors.ts';
import { expectNodeRecord, peerNodes, startMesh, startStaticAgent } from './helpers/agent-mesh.ts';
import { captureIo } from './helpers/cli-io.ts';
import { tempDir } from './helpers/temp-dir.ts';
import { nodeRecord } from './agent-helpers.ts';

const WAIT = { timeoutMs: 20_000, intervalMs: 100 } as const;

test('an agent with non-default flags: showconf --nats-url equals what the agent applied, without repeating its flags', async (t) => {
  const mesh = await startMesh(t, { label: 'xl-showconf', nodeTtl: '30s' });
  const extra = ['--interface', 'xlsc7', '--mtu', '1380', '--nat-keepalive', '17', '--relay-port-range', '53000-53099'];
  const a = await startStaticAgent(t, mesh, { name: 'sc-a', cluster: 'c1', podCidr: '10.71.0.0/24', stateDir: await tempDir(t, 'xl-sc-a-'), extra });
  await startStaticAgent(t, mesh, { name: 'sc-b', cluster: 'c2', podCidr: '10.72.0.0/24', stateDir: await tempDir(t, 'xl-sc-b-') });
  await waitFor(() => peerNodes(a.dataplane.last()).includes('sc-b'), { ...WAIT, what: 'sc-a applying its peer sc-b' });

  t.deepEqual((await expectNodeRecord(mesh, 'sc-a')).settings, { interfaceName: 'xlsc7', mtu: 1380, natKeepaliveSec: 17, relayPortBase: 53000, relayPortSpan: 100 });
  const kvArgs = ['--nats-url', mesh.server.url, '--coordinator-key', mesh.coordinatorKey.publicKey, '--node', 'sc-a'];
  const j = captureIo();
  t.is(await runCli(['showconf', ...kvArgs, '--json'], j), 0, j.err());
  // The desired state from the KV equals the one the agent applied last (same snapshot: both settled on sc-b).
  const applied = a.dataplane.last();
  t.deepEqual(JSON.parse(j.out()), JSON.parse(JSON.stringify(applied)));
  t.is(j.err(), '', 'nothing assumed');

  const w = captureIo();
  t.is(await runCli(['showconf', ...kvArgs], w), 0, w.err());
  t.regex(w.out(), /^MTU = 1380$/m);
  t.regex(w.out(), /dev xlsc7$/m);
  t.regex(w.out(), /with the settings the agent published in its record/);
  t.notRegex(w.out(), /NOTE/);

  // A flag given explicitly overrides the record and says so; the result then differs from the agent's (negative control).
  const o = captureIo();
  t.is(await runCli(['showconf', ...kvArgs, '--mtu', '1420'], o), 0, o.err());
  t.regex(o.out(), /^# NOTE: overridden by flags \(the agent applies the record's values\): --mtu 1420$/m);
  t.regex(o.out(), /^MTU = 1420$/m);
});

test('a record without settings (an older agent): the defaults are used and listed as assumed; bad flags name flag, value and what is allowed', async (t) => {
  const old = await nodeRecord({ name: 'old-1' });
  const r = showconfSettings(old, { interface: 'xl9' });
  t.like(r.config, { interfaceName: 'xl9', mtu: 1420, natKeepaliveSec: 25, relayPortBase: 52000, relayPortSpan: 1000, listenPort: 51820 });
  t.deepEqual(r.notes, ['the record of old-1 carries no settings (its agent predates them); assumed: --mtu 1420, --nat-keepalive 25, --relay-port-range 52000-52999 — pass the agent\'s flags if it runs with others']);
  t.deepEqual(showconfSettings(old, { interface: 'a', mtu: '1400', natKeepalive: '0', relayPortRange: '53000-53001' }).notes, []);
  const withSettings = { ...old, settings: { interfaceName: 'xl1', mtu: 1300, natKeepaliveSec: 5, relayPortBase: 54000, relayPortSpan: 10 } };
  t.like(showconfSettings(withSettings, {}), { config: { interfaceName: 'xl1', mtu: 1300, natKeepaliveSec: 5, relayPortBase: 54000, relayPortSpan: 10 }, notes: [] });
  t.throws(() => showconfSettings(withSettings, { natKeepalive: '-1' }), { instanceOf: ValidationError, message: /^--nat-keepalive: "-1" is not valid; must be 0-3600/ });
  t.throws(() => showconfSettings(withSettings, { interface: 'bad/name' }), { instanceOf: ValidationError, message: /^--interface: "bad\/name" is not valid; must be 1-15 characters/ });
});
