// Mesh events end to end on a real nats-server: the coordinator publishes joins, removals and
// gateway changes into its bounded stream; an agent-side publisher's events land there too;
// `crosslink events` shows the history and, with --follow, live events; every event is verified
// (signed by the coordinator, or by the reporting node's identity key): junk on the subject is
// refused and an unverifiable event is reported as such, never shown as an event.
import test from 'ava';
import { jetstreamManager } from '@nats-io/jetstream';
import { runCli } from '../cli/main.ts';
import { fakeAgent } from './helpers/fake-agent.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import { CrosslinkEvent, EVENT_HISTORY, NatsEventPublisher, eventStreamName } from '../protocol/events.ts';
import { captureIo } from './helpers/cli-io.ts';
import { startCoordinatorEnv } from './helpers/coordinator-fixture.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';

const nats = useNatsServer('xl-events');

const eventsOf = (out: string): CrosslinkEvent[] =>
  out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => CrosslinkEvent.parse(JSON.parse(l)));

test('coordinator events (join, gateway change, leave) are kept in a bounded stream and shown by `crosslink events`', async (t) => {
  const env = await startCoordinatorEnv(t, { natsUrl: nats().url, bucketTag: 'xlev', config: {} });
  const info = await (await jetstreamManager(env.nc)).streams.info(eventStreamName(env.bucket));
  t.is(info.config.max_msgs, EVENT_HISTORY.maxMsgs);
  t.is(info.config.max_bytes, EVENT_HISTORY.maxBytes);

  const gw = await fakeAgent('gw-1', { cluster: 'gcp', topology: 'gateway', gatewayEligible: true, podCidrs: ['10.20.0.0/24'] });
  t.like(await env.client.register(gw), { ok: true });
  const other = await fakeAgent('aws-1', { cluster: 'aws', podCidrs: ['10.21.0.0/24'], endpoints: ['192.0.2.21:51820'] });
  t.like(await env.client.register(other), { ok: true });
  t.like(await env.client.deregister(other), { ok: true });

  const url = nats().url;
  let events: CrosslinkEvent[] = [];
  await waitFor(
    async () => {
      const io = captureIo();
      t.is(await runCli(['events', '--json', '--nats-url', url, '--bucket', env.bucket, '--coordinator-key', env.key.publicKey], io), 0, io.err());
      events = eventsOf(io.out());
      return events.some((e) => e.type === 'node-left');
    },
    { timeoutMs: 15_000, intervalMs: 200, what: 'the node-left event' },
  );
  const types = events.map((e) => `${e.type}:${e.node ?? ''}`);
  t.true(types.includes('node-joined:gw-1'), types.join(' '));
  t.true(types.includes('gateway-changed:gw-1'), types.join(' '));
  t.true(types.includes('node-joined:aws-1'), types.join(' '));
  t.true(types.includes('node-left:aws-1'), types.join(' '));
  t.true(events.every((e) => e.reporter.role === 'coordinator'));

  // Filters, and the text form.
  const io = captureIo();
  t.is(await runCli(['events', '--nats-url', url, '--bucket', env.bucket, '--coordinator-key', env.key.publicKey, '--cluster', 'gcp', '--type', 'gateway-changed'], io), 0);
  t.regex(io.out(), /gateway-changed\s+gcp\/gw-1\s+cluster gcp: gw-1 is the active gateway/);
  t.notRegex(io.out(), /aws-1/);
  t.false(io.out().includes('\u001b['), 'no colour when not a terminal');

  // A bad --type names the flag, the value and what is allowed.
  const bad = captureIo();
  t.is(await runCli(['events', '--nats-url', url, '--bucket', env.bucket, '--coordinator-key', env.key.publicKey, '--type', 'nope'], bad), 2);
  t.regex(bad.err(), /--type: "nope" is not valid; .*gateway-changed/);
  // Events are only shown verified: no coordinator key, no events.
  const keyless = captureIo();
  t.is(await runCli(['events', '--nats-url', url, '--bucket', env.bucket], keyless), 2);
  t.regex(keyless.err(), /--coordinator-key.*required/);
});

test('--follow shows agent events as they are published, verified with the node\'s identity key; invalid and unverifiable messages on the subject are not shown', async (t) => {
  const env = await startCoordinatorEnv(t, { natsUrl: nats().url, bucketTag: 'xlev', config: {} });
  // Registered nodes: their records bind the names to the identity keys that sign their events.
  const [a, b] = [await fakeAgent('node-a', { cluster: 'c1', podCidrs: ['10.22.0.0/24'] }), await fakeAgent('node-b', { cluster: 'c1', podCidrs: ['10.22.1.0/24'] })];
  t.like(await env.client.register(a), { ok: true });
  t.like(await env.client.register(b), { ok: true });
  const publisher = new NatsEventPublisher({ nc: () => env.nc, subjectPrefix: env.prefix, reporter: { role: 'agent', name: 'node-a' }, signingKey: a.identity.secretKey, clock: systemClock, logger: silentLogger() });
  publisher.publish({ type: 'reconcile-failed', severity: 'warning', node: 'node-a', cluster: 'c1', message: 'reconcile on node-a failed: before follow' });
  await env.nc.flush();

  const stop = new AbortController();
  const io = { ...captureIo(), signal: stop.signal };
  const running = runCli(['events', '--follow', '--json', '--nats-url', nats().url, '--bucket', env.bucket, '--coordinator-key', env.key.publicKey, '--node', 'node-a'], io);
  await waitFor(() => io.out().includes('before follow'), { timeoutMs: 10_000, what: 'the stored event' });

  // A forged/garbled message on the subject: reported on stderr, never printed as an event.
  env.nc.publish(`${env.prefix}.events.node-revoked`, JSON.stringify({ v: 1, type: 'node-revoked', message: 'fake' }));
  // Well-formed but unsigned, in node-a's name: reported as unverified, never shown as node-a's.
  env.nc.publish(`${env.prefix}.events.route-repaired`, JSON.stringify({ v: 1, id: 'abcdefabcdef', at: Date.now(), type: 'route-repaired', severity: 'warning', reporter: { role: 'agent', name: 'node-a' }, node: 'node-a', message: 'forged repair' }));
  publisher.publish({ type: 'wireguard-restarted', severity: 'warning', node: 'node-a', cluster: 'c1', message: 'wireguard-go on node-a restarted (generation 2)' });
  const other = new NatsEventPublisher({ nc: () => env.nc, subjectPrefix: env.prefix, reporter: { role: 'agent', name: 'node-b' }, signingKey: b.identity.secretKey, clock: systemClock, logger: silentLogger() });
  other.publish({ type: 'route-repaired', severity: 'info', node: 'node-b', cluster: 'c1', message: 'not ours: filtered by --node' });
  await waitFor(() => io.out().includes('generation 2') && io.err().includes('invalid event') && io.err().includes('UNVERIFIED'), { timeoutMs: 10_000, what: 'the live event' });
  stop.abort();
  t.is(await running, 0);
  const shown = eventsOf(io.out());
  // node-a's own events in order (the coordinator's node-joined about node-a matches --node too;
  // it comes from another connection, so its place among them is not fixed).
  t.deepEqual(
    shown.filter((e) => e.reporter.role === 'agent').map((e) => `${e.type} by ${e.reporter.name}`),
    ['reconcile-failed by node-a', 'wireguard-restarted by node-a'],
  );
  t.deepEqual(shown.filter((e) => e.reporter.role === 'coordinator').map((e) => `${e.type}:${e.node ?? ''}`), ['node-joined:node-a']);
  t.false(io.out().includes('fake'));
  t.false(io.out().includes('forged repair'), 'the unsigned event is not shown as node-a\'s');
  t.regex(io.err(), /crosslink: ignored an invalid event on .*node-revoked/);
  t.regex(io.err(), /crosslink: ignored an UNVERIFIED event on .*route-repaired \(not signed\); it claims to be route-repaired from agent "node-a"/);
});
