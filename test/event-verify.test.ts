// Who said it (protocol/event-verify.ts): an event is attributed only when it verifies with the key
// its reporter holds — the coordinator key set for the coordinator's types, the identity key bound
// to the node's name for an agent's — and is about the reporter, of its role's types, on the subject
// of its type. Every forgery an agent credential (or an unaccounted publisher) can post is a row.
import test from 'ava';
import { completeEvent, type CrosslinkEvent, type EventInput, type EventReporter } from '../protocol/events.ts';
import { isAgentEventType, verifyEvent, type EventSigners } from '../protocol/event-verify.ts';
import { generateSigningKeyPair, signEnvelopeNow, type SigningKeyPair } from '../protocol/signing.ts';

const P = 'crosslink.v1';
const bytes = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
const event = (input: EventInput, reporter: EventReporter): CrosslinkEvent => completeEvent(input, reporter, 1_000);
const repaired = (node: string | undefined): EventInput => ({ type: 'route-repaired', severity: 'warning', ...(node === undefined ? {} : { node }), message: 'route put back' });

interface Keys {
  coordinator: SigningKeyPair;
  previous: SigningKeyPair;
  nodeB: SigningKeyPair;
  attacker: SigningKeyPair;
  rebound: SigningKeyPair;
}
let k: Keys;
test.before(async () => {
  k = { coordinator: await generateSigningKeyPair(), previous: await generateSigningKeyPair(), nodeB: await generateSigningKeyPair(), attacker: await generateSigningKeyPair(), rebound: await generateSigningKeyPair() };
});

/** Node records: node-b → its identity key, node-x → the attacker's (a registered attacker node). */
function signers(o: { bound?: Record<string, string>; fresh?: Record<string, string> } = {}): EventSigners & { asked: string[] } {
  const asked: string[] = [];
  const bound = o.bound ?? { 'node-b': k.nodeB.publicKey, 'node-x': k.attacker.publicKey };
  return {
    asked,
    coordinator: [k.coordinator.publicKey, k.previous.publicKey],
    identityOf: (name, fresh) => {
      asked.push(`${name}${fresh ? ' (fresh)' : ''}`);
      return Promise.resolve(fresh ? (o.fresh?.[name] ?? bound[name]) : bound[name]);
    },
  };
}

test('an agent event signed by the node\'s own identity key is attributed to it', async (t) => {
  const e = event(repaired('node-b'), { role: 'agent', name: 'node-b' });
  t.deepEqual(await verifyEvent(bytes(signEnvelopeNow(e, k.nodeB.secretKey)), `${P}.events.route-repaired`, signers()), { ok: true, event: e });
  const aboutNothing = event(repaired(undefined), { role: 'agent', name: 'node-b' });
  t.true((await verifyEvent(bytes(signEnvelopeNow(aboutNothing, k.nodeB.secretKey)), undefined, signers())).ok);
});

test('coordinator events verify with any key of the coordinator set (rotation)', async (t) => {
  const e = event({ type: 'node-joined', severity: 'info', node: 'node-b', message: 'joined' }, { role: 'coordinator', name: 'coord-0' });
  t.true((await verifyEvent(bytes(signEnvelopeNow(e, k.coordinator.secretKey)), `${P}.events.node-joined`, signers())).ok);
  t.true((await verifyEvent(bytes(signEnvelopeNow(e, k.previous.secretKey)), `${P}.events.node-joined`, signers())).ok);
});

const forgeries: { what: string; make: () => unknown; subject?: string; reason: RegExp }[] = [
  {
    what: 'unsigned event in node-b\'s name (what every agent credential could post before)',
    make: () => event(repaired('node-b'), { role: 'agent', name: 'node-b' }),
    reason: /^not signed$/,
  },
  {
    what: 'in node-b\'s name, signed by the attacker\'s own identity key',
    make: () => signEnvelopeNow(event(repaired('node-b'), { role: 'agent', name: 'node-b' }), k.attacker.secretKey),
    reason: /does not verify with the identity key of node node-b/,
  },
  {
    what: 'the attacker\'s own registered node reporting about node-b',
    make: () => signEnvelopeNow(event(repaired('node-b'), { role: 'agent', name: 'node-x' }), k.attacker.secretKey),
    reason: /agent node-x reports about another node \(node-b\)/,
  },
  {
    what: 'a node name with no record (the identity key is unknown)',
    make: () => signEnvelopeNow(event(repaired('ghost'), { role: 'agent', name: 'ghost' }), k.attacker.secretKey),
    reason: /no verified node record for ghost/,
  },
  {
    what: 'a coordinator event type reported by an agent, correctly signed by that agent',
    make: () => signEnvelopeNow(event({ type: 'node-revoked', severity: 'warning', node: 'node-x', message: 'revoked' }, { role: 'agent', name: 'node-x' }), k.attacker.secretKey),
    reason: /node-revoked is the coordinator's event type; agent node-x cannot report it/,
  },
  {
    what: 'a coordinator event signed by another key (an unaccounted publisher)',
    make: () => signEnvelopeNow(event({ type: 'node-revoked', severity: 'warning', node: 'node-b', message: 'revoked' }, { role: 'coordinator', name: 'coord-0' }), k.attacker.secretKey),
    reason: /does not verify with the coordinator key/,
  },
  {
    what: 'an agent event type in the coordinator\'s name',
    make: () => signEnvelopeNow(event(repaired('node-b'), { role: 'coordinator', name: 'coord-0' }), k.coordinator.secretKey),
    reason: /route-repaired is an agent's event type/,
  },
  {
    what: 'node-b\'s genuine event re-posted on another type\'s subject',
    make: () => signEnvelopeNow(event(repaired('node-b'), { role: 'agent', name: 'node-b' }), k.nodeB.secretKey),
    subject: `${P}.events.peer-repaired`,
    reason: /published on crosslink\.v1\.events\.peer-repaired, not on the subject of type route-repaired/,
  },
];

/** The type a message claims (signed or not): forgeries come on their claimed type's subject unless a row says otherwise. */
function claimedType(message: unknown): string {
  const { payload } = message as { payload?: string };
  const e = (payload === undefined ? message : JSON.parse(Buffer.from(payload, 'base64').toString('utf8'))) as CrosslinkEvent;
  return e.type;
}

for (const f of forgeries) {
  test(`not attributed: ${f.what}`, async (t) => {
    const message = f.make();
    const v = await verifyEvent(bytes(message), f.subject ?? `${P}.events.${claimedType(message)}`, signers());
    if (v.ok) return t.fail('attributed');
    t.is(v.kind, 'unverified');
    if (v.kind === 'unverified') t.regex(v.reason, f.reason);
  });
}

test('a name released and bound to a new identity key: the record is read again once before giving up', async (t) => {
  const e = event(repaired('node-b'), { role: 'agent', name: 'node-b' });
  const s = signers({ fresh: { 'node-b': k.rebound.publicKey } });
  t.true((await verifyEvent(bytes(signEnvelopeNow(e, k.rebound.secretKey)), undefined, s)).ok);
  t.deepEqual(s.asked, ['node-b', 'node-b (fresh)']);
  const stale = signers();
  t.false((await verifyEvent(bytes(signEnvelopeNow(e, k.attacker.secretKey)), undefined, stale)).ok);
  t.deepEqual(stale.asked, ['node-b', 'node-b (fresh)'], 'asked again, still not the signer');
});

test('isAgentEventType: the agent types and nothing else', (t) => {
  t.true(isAgentEventType('route-repaired'));
  t.true(isAgentEventType('wireguard-restarted'));
  t.false(isAgentEventType('node-revoked'));
  t.false(isAgentEventType('consumer-removed'));
});

test('a record that cannot be read (the bucket unavailable) leaves the event unverified with that reason, not "no record"', async (t) => {
  const e = event(repaired('node-b'), { role: 'agent', name: 'node-b' });
  const failing: EventSigners = { coordinator: k.coordinator.publicKey, identityOf: () => Promise.reject(new Error('bucket unavailable')) };
  const v = await verifyEvent(bytes(signEnvelopeNow(e, k.nodeB.secretKey)), `${P}.events.route-repaired`, failing);
  t.false(v.ok);
  t.is(v.ok ? undefined : v.kind, 'unverified');
  t.regex(v.ok ? '' : v.reason, /cannot read node node-b's record to check its signature \(bucket unavailable\)/);
});
