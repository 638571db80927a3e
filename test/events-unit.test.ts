// Pure parts of mesh events: the agent reports reconcile failures on transitions only, events are
// validated and bounded, the coordinator's builders say what happened, the text line, colour rules.
import test from 'ava';
import { AgentEvents } from '../agent/events/agent-events.ts';
import { RateLimitedEvents } from '../agent/events/event-rate-limit.ts';
import { repairsOf } from '../agent/events/repairs.ts';
import { gatewayChangedEvent, nodeRemovedEvent } from '../coordinator/events.ts';
import { formatEvent } from '../cli/event-format.ts';
import { matchesFilter } from '../cli/events.ts';
import { ANSI_COLOUR, NO_COLOUR, colourEnabled, stripAnsi } from '../lib/colour.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { CrosslinkEvent, MAX_EVENT_BYTES, NatsEventPublisher, completeEvent, type EventInput } from '../protocol/events.ts';
import { verifyEvent, type EventSigners } from '../protocol/event-verify.ts';
import { generateSigningKeyPair, signEnvelopeNow, verifyEnvelope } from '../protocol/signing.ts';

function recorder(): { events: EventInput[]; publish: (e: EventInput) => void } {
  const events: EventInput[] = [];
  return { events, publish: (e) => events.push(e) };
}

test('AgentEvents: one reconcile-failed per failing streak or changed error, none while ok', (t) => {
  const r = recorder();
  const a = new AgentEvents(r, () => ({ name: 'n1', cluster: 'c1' }), 'xl0');
  a.reconciled({ ok: true, error: null, reasons: ['start'] });
  a.reconciled({ ok: false, error: 'ip route replace exited 2', reasons: ['resync'] });
  a.reconciled({ ok: false, error: 'ip route replace exited 2', reasons: ['resync'] });
  a.reconciled({ ok: false, error: 'wg set exited 1', reasons: ['resync'] });
  a.reconciled({ ok: true, error: null, reasons: ['resync'] });
  a.reconciled({ ok: false, error: 'wg set exited 1', reasons: ['resync'] });
  t.deepEqual(
    r.events.map((e) => e.message),
    ['reconcile on n1 failed: ip route replace exited 2', 'reconcile on n1 failed: wg set exited 1', 'reconcile on n1 failed: wg set exited 1'],
  );
  a.wireguardRestarted(3);
  t.like(r.events.at(-1), { type: 'wireguard-restarted', node: 'n1', cluster: 'c1', details: { generation: 3 } });
});

test('NatsEventPublisher: publishes a valid event, signed with the reporter\'s key, on <prefix>.events.<type>; drops an invalid one; no connection is not an error', async (t) => {
  const sent: { subject: string; payload: string }[] = [];
  let connected = true;
  const identity = await generateSigningKeyPair();
  const p = new NatsEventPublisher({
    nc: () => (connected ? { publish: (subject, payload) => sent.push({ subject, payload }) } : undefined),
    subjectPrefix: 'crosslink.v1',
    reporter: () => ({ role: 'agent', name: 'n1' }),
    signingKey: identity.secretKey,
    clock: new ManualClock(5000),
    logger: silentLogger(),
  });
  p.publish({ type: 'route-repaired', severity: 'info', node: 'n1', message: 'route 10.1.0.0/24 re-added' });
  p.publish({ type: 'route-repaired', severity: 'info', node: 'NOT A NODE NAME', message: 'x' });
  connected = false;
  p.publish({ type: 'route-repaired', severity: 'info', node: 'n1', message: 'while disconnected' });
  t.is(sent.length, 1);
  t.is(sent[0]?.subject, 'crosslink.v1.events.route-repaired');
  const e = await verifyEnvelope(sent[0]?.payload ?? '', identity.publicKey, CrosslinkEvent);
  t.like(e, { v: 1, at: 5000, reporter: { role: 'agent', name: 'n1' }, message: 'route 10.1.0.0/24 re-added' });
});

test('completeEvent: long messages and details are cut so an event stays under MAX_EVENT_BYTES', (t) => {
  const e = completeEvent({ type: 'reconcile-failed', severity: 'warning', message: 'x'.repeat(5000), details: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, 'v'.repeat(400)])) }, { role: 'agent', name: 'n1' }, 1);
  t.true(Buffer.byteLength(JSON.stringify(e)) <= MAX_EVENT_BYTES);
  t.true(CrosslinkEvent.safeParse(e).success);
});

test('verifyEvent: junk, unknown fields and unknown types are invalid, not events', async (t) => {
  const coordinator = await generateSigningKeyPair();
  const signers: EventSigners = { coordinator: coordinator.publicKey, identityOf: () => Promise.resolve(undefined) };
  const bytes = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
  t.like(await verifyEvent(bytes('nope'), undefined, signers), { ok: false, kind: 'invalid', reason: 'not JSON' });
  const good = completeEvent({ type: 'node-joined', severity: 'info', node: 'a', message: 'joined' }, { role: 'coordinator', name: 'c' }, 1);
  t.like(await verifyEvent(bytes(signEnvelopeNow(good, coordinator.secretKey)), 'x.events.node-joined', signers), { ok: true, event: good });
  t.like(await verifyEvent(bytes(signEnvelopeNow({ ...good, extra: 1 }, coordinator.secretKey)), undefined, signers), { ok: false, kind: 'invalid' });
  t.like(await verifyEvent(bytes(signEnvelopeNow({ ...good, type: 'made-up' }, coordinator.secretKey)), undefined, signers), { ok: false, kind: 'invalid' });
  t.like(await verifyEvent(bytes({ ...good, type: 'made-up' }), undefined, signers), { ok: false, kind: 'invalid' });
});

test('coordinator event builders', (t) => {
  const rec = { kind: 'cluster', v: 1, name: 'gcp', topology: 'gateway', gatewayEpoch: 4, generation: 9, updatedAt: 1 } as const;
  t.like(gatewayChangedEvent({ ...rec, gateway: 'gcp-n2' }, 'gcp-n1'), { severity: 'warning', node: 'gcp-n2', message: 'cluster gcp: active gateway gcp-n1 → gcp-n2', details: { previous: 'gcp-n1', gatewayEpoch: 4 } });
  t.like(gatewayChangedEvent({ ...rec, gateway: null }, 'gcp-n1'), { severity: 'warning', message: 'cluster gcp has no active gateway (was gcp-n1): no eligible live node' });
  t.is(gatewayChangedEvent({ ...rec, gateway: null }, 'gcp-n1').node, undefined);
  const node = { name: 'n1', cluster: 'c1', overlayIp: '100.96.0.1' } as Parameters<typeof nodeRemovedEvent>[0];
  t.like(nodeRemovedEvent(node, 'expired', 1000, 61_000), { type: 'node-expired', severity: 'warning', message: 'node n1 expired: no heartbeat within the node TTL (last heartbeat 60s ago)' });
  t.like(nodeRemovedEvent(node, 'revoked', null, 0), { type: 'node-revoked' });
  t.like(nodeRemovedEvent(node, 'deregistered', null, 0), { type: 'node-left', severity: 'info' });
});

test('formatEvent and the filter', (t) => {
  const e = completeEvent({ type: 'gateway-changed', severity: 'warning', node: 'gcp-n2', cluster: 'gcp', message: 'cluster gcp: active gateway gcp-n1 → gcp-n2' }, { role: 'coordinator', name: 'c-1' }, Date.UTC(2026, 11, 2, 16, 30, 1));
  t.is(formatEvent(e, NO_COLOUR), '2026-12-02 16:30:01Z  warning  gateway-changed      gcp/gcp-n2                cluster gcp: active gateway gcp-n1 → gcp-n2  (coordinator c-1)');
  t.is(stripAnsi(formatEvent(e, ANSI_COLOUR)), formatEvent(e, NO_COLOUR));
  t.not(formatEvent(e, ANSI_COLOUR), formatEvent(e, NO_COLOUR));
  t.true(matchesFilter(e, { cluster: 'gcp', types: ['gateway-changed'] }));
  t.false(matchesFilter(e, { node: 'gcp-n1' }));
  const byAgent = completeEvent({ type: 'route-repaired', severity: 'info', message: 'x' }, { role: 'agent', name: 'a1' }, 1);
  t.true(matchesFilter(byAgent, { node: 'a1' }), 'an agent\'s own events match --node');
});

test('colour: on for a terminal only; NO_COLOR, --no-color and TERM=dumb turn it off', (t) => {
  t.true(colourEnabled({ isTTY: true, env: {}, noColorFlag: false }));
  t.false(colourEnabled({ isTTY: false, env: {}, noColorFlag: false }));
  t.false(colourEnabled({ isTTY: true, env: { NO_COLOR: '1' }, noColorFlag: false }));
  t.true(colourEnabled({ isTTY: true, env: { NO_COLOR: '' }, noColorFlag: false }), 'an empty NO_COLOR does not count (no-color.org)');
  t.false(colourEnabled({ isTTY: true, env: {}, noColorFlag: true }));
  t.false(colourEnabled({ isTTY: true, env: { TERM: 'dumb' }, noColorFlag: false }));
});

test('repairsOf: only a self-heal run counts; routes, peers put back and the MTU are told apart; removals and other interfaces are not repairs', (t) => {
  const commands = [
    ['ip', 'route', 'replace', '10.2.0.0/24', 'dev', 'xl0', 'proto', '149'],
    ['ip', 'route', 'replace', '10.9.0.0/24', 'dev', 'other0', 'proto', '149'],
    ['ip', 'link', 'set', 'dev', 'xl0', 'mtu', '1380'],
    ['wg', 'set', 'xl0', 'peer', 'KEY-A', 'endpoint', '192.0.2.1:51820', 'allowed-ips', '10.2.0.0/24', 'peer', 'KEY-B', 'allowed-ips', '10.3.0.0/24'],
    ['wg', 'set', 'xl0', 'peer', 'KEY-GONE', 'remove'],
  ];
  t.deepEqual(repairsOf({ reasons: ['drift: route deleted: 10.2.0.0/24 dev xl0'], commands }, 'xl0'), { routes: ['10.2.0.0/24'], peers: ['KEY-A', 'KEY-B'], mtu: 1380 });
  t.deepEqual(repairsOf({ reasons: ['probe to n2 lost', 'resync'], commands }, 'xl0').peers, ['KEY-A', 'KEY-B']);
  // The mesh moving on (or a restart, or the start) is not a repair, even mixed with a drift reason.
  for (const reasons of [['mesh changed'], ['drift: x', 'mesh changed'], ['wireguard restarted'], ['start'], []]) {
    t.deepEqual(repairsOf({ reasons, commands }, 'xl0'), { routes: [], peers: [], mtu: null }, reasons.join(','));
  }
});

test('AgentEvents: a self-heal reconcile publishes route-, peer- and mtu-repaired; a mesh change publishes nothing', (t) => {
  const r = recorder();
  const a = new AgentEvents(r, () => ({ name: 'n1', cluster: 'c1' }), 'xl0');
  a.reconciled({ ok: true, error: null, reasons: ['mesh changed'], commands: [['ip', 'route', 'replace', '10.2.0.0/24', 'dev', 'xl0']] });
  t.deepEqual(r.events, []);
  a.reconciled({ ok: true, error: null, reasons: ['drift: route deleted'], commands: [['ip', 'route', 'replace', '10.2.0.0/24', 'dev', 'xl0'], ['ip', 'link', 'set', 'dev', 'xl0', 'mtu', '1420'], ['wg', 'set', 'xl0', 'peer', 'K', 'allowed-ips', '10.2.0.0/24']] });
  t.deepEqual(r.events.map((e) => e.type), ['route-repaired', 'peer-repaired', 'mtu-repaired']);
  t.like(r.events[0], { node: 'n1', cluster: 'c1', details: { count: 1, routes: '10.2.0.0/24' } });
  t.regex(r.events[2]?.message ?? '', /MTU of xl0 had changed and was set back to 1420/);
  t.true(r.events.every((e) => CrosslinkEvent.safeParse(completeEvent(e, { role: 'agent', name: 'n1' }, 1)).success));
});

test('RateLimitedEvents: at most `burst` per type per window; the next one out says how many were held back; other types pass', (t) => {
  const r = recorder();
  const clock = new ManualClock(0);
  const limited = new RateLimitedEvents(r, { clock, burst: 3, windowMs: 60_000 });
  const restart = (n: number): EventInput => ({ type: 'wireguard-restarted', severity: 'warning', node: 'n1', message: `restart ${n}` });
  for (let i = 0; i < 50; i++) {
    limited.publish(restart(i));
    clock.advance(100);
  }
  t.is(r.events.length, 3, 'a flapping wireguard-go makes 3 events a minute, not 50');
  limited.publish({ type: 'route-repaired', severity: 'warning', node: 'n1', message: 'another type' });
  t.is(r.events.length, 4);
  t.is(limited.heldBack().get('wireguard-restarted'), 47);
  clock.advance(60_000);
  limited.publish(restart(99));
  t.like(r.events.at(-1), { message: 'restart 99', details: { suppressed: 47 } });
  t.is(limited.heldBack().size, 0);
});
