import test, { type ExecutionContext } from 'ava';
import { parseCidr } from '../protocol/cidr.ts';
import { RegistrationRequest, type ErrorBody, type NodeRecord } from '../protocol/messages.ts';
import { generateSigningKeyPair, generateWireguardKeyPair, signEnvelope, type SigningKeyPair } from '../protocol/signing.ts';
import { checkSentAt, openSignedRequest, validateRegistration, type Checked, type RegistrationPolicy } from '../protocol/validate-registration.ts';
import { registrationRequest } from './helpers/registration-request.ts';

const NOW = 1_700_000_000_000;
const ZERO = Buffer.alloc(32).toString('base64');

const policy: RegistrationPolicy = {
  overlay: parseCidr('100.96.0.0/16')!,
  minPodCidrPrefixV4: 16,
  minPodCidrPrefixV6: 48,
  maxClockSkewMs: 5 * 60_000,
};

interface Keys {
  identity: SigningKeyPair;
  wg: string;
  otherIdentity: SigningKeyPair;
  otherWg: string;
}
let keys: Keys;

test.before(async () => {
  keys = {
    identity: await generateSigningKeyPair(),
    wg: (await generateWireguardKeyPair()).publicKey,
    otherIdentity: await generateSigningKeyPair(),
    otherWg: (await generateWireguardKeyPair()).publicKey,
  };
});

const request = (overrides: Partial<RegistrationRequest> = {}): RegistrationRequest => registrationRequest({ wg: keys.wg, identityKey: keys.identity.publicKey }, NOW, overrides);

/** A live node of another cluster that owns 10.20.0.0/16. */
function otherNode(): NodeRecord {
  return {
    kind: 'node',
    v: 1,
    name: 'node-b',
    cluster: 'gcp',
    location: 'europe-west4',
    publicKey: keys.otherWg,
    identityKey: keys.otherIdentity.publicKey,
    endpoints: ['198.51.100.20:51820'],
    privateAddresses: ['10.1.1.20'],
    podCidrs: ['10.20.0.0/16', 'fd20::/64'],
    listenPort: 51820,
    topology: 'mesh',
    gatewayEligible: false,
    overlayIp: '100.96.0.2',
    generation: 1,
    registeredAt: NOW - 1000,
    updatedAt: NOW - 1000,
  };
}

/** A live record for node-a itself, held by another identity (TOFU case). */
function selfHeldByOther(): NodeRecord {
  return { ...otherNode(), name: 'node-a', cluster: 'aws', podCidrs: ['10.30.0.0/24'], publicKey: keys.otherWg };
}

interface RejectRow {
  name: string;
  req: () => Partial<RegistrationRequest>;
  live?: () => NodeRecord[];
  lastAcceptedSentAt?: number;
  code: ErrorBody['code'];
  field: string;
  /** Must appear in the message (the bad value). */
  value: () => string;
}

const rejects: RejectRow[] = [
  { name: 'sentAt too old', req: () => ({ sentAt: NOW - 6 * 60_000 }), code: 'stale', field: 'sentAt', value: () => String(NOW - 6 * 60_000) },
  { name: 'sentAt in the future', req: () => ({ sentAt: NOW + 6 * 60_000 }), code: 'stale', field: 'sentAt', value: () => String(NOW + 6 * 60_000) },
  { name: 'sentAt older than the last accepted registration (replay)', req: () => ({ sentAt: NOW - 10 }), lastAcceptedSentAt: NOW, code: 'stale', field: 'sentAt', value: () => String(NOW - 10) },
  { name: 'identity mismatch with a live node of that name', req: () => ({}), live: () => [selfHeldByOther()], code: 'unauthorized', field: 'identityKey', value: () => keys.identity.publicKey },
  { name: 'all-zero WireGuard key', req: () => ({ publicKey: ZERO }), code: 'invalid', field: 'publicKey', value: () => ZERO },
  { name: 'all-zero identity key', req: () => ({ identityKey: ZERO }), code: 'invalid', field: 'identityKey', value: () => ZERO },
  { name: 'WireGuard key equals identity key', req: () => ({ publicKey: keys.identity.publicKey }), code: 'invalid', field: 'publicKey', value: () => keys.identity.publicKey },
  { name: 'WireGuard key of another live node', req: () => ({ publicKey: keys.otherWg }), live: () => [otherNode()], code: 'conflict', field: 'publicKey', value: () => keys.otherWg },
  { name: 'loopback endpoint', req: () => ({ endpoints: ['127.0.0.1:51820'] }), code: 'invalid', field: 'endpoints[0]', value: () => '127.0.0.1:51820' },
  { name: 'unspecified endpoint', req: () => ({ endpoints: ['192.0.2.1:51820', '0.0.0.0:51820'] }), code: 'invalid', field: 'endpoints[1]', value: () => '0.0.0.0:51820' },
  { name: 'multicast endpoint', req: () => ({ endpoints: ['224.0.0.5:51820'] }), code: 'invalid', field: 'endpoints[0]', value: () => '224.0.0.5:51820' },
  { name: 'link-local endpoint', req: () => ({ endpoints: ['169.254.10.1:51820'] }), code: 'invalid', field: 'endpoints[0]', value: () => '169.254.10.1:51820' },
  { name: 'broadcast endpoint', req: () => ({ endpoints: ['255.255.255.255:51820'] }), code: 'invalid', field: 'endpoints[0]', value: () => '255.255.255.255:51820' },
  { name: 'IPv6 loopback endpoint', req: () => ({ endpoints: ['[::1]:51820'] }), code: 'invalid', field: 'endpoints[0]', value: () => '[::1]:51820' },
  { name: 'IPv6 unspecified endpoint', req: () => ({ endpoints: ['[::]:51820'] }), code: 'invalid', field: 'endpoints[0]', value: () => '[::]:51820' },
  { name: 'IPv6 link-local endpoint', req: () => ({ endpoints: ['[fe80::1]:51820'] }), code: 'invalid', field: 'endpoints[0]', value: () => '[fe80::1]:51820' },
  { name: 'IPv6 multicast endpoint', req: () => ({ endpoints: ['[ff02::1]:51820'] }), code: 'invalid', field: 'endpoints[0]', value: () => '[ff02::1]:51820' },
  { name: 'endpoint inside the overlay', req: () => ({ endpoints: ['100.96.3.4:51820'] }), code: 'invalid', field: 'endpoints[0]', value: () => '100.96.3.4:51820' },
  { name: 'loopback private address', req: () => ({ privateAddresses: ['127.0.0.2'] }), code: 'invalid', field: 'privateAddresses[0]', value: () => '127.0.0.2' },
  { name: 'pod CIDR overlaps another live node (other cluster)', req: () => ({ podCidrs: ['10.20.5.0/24'] }), live: () => [otherNode()], code: 'conflict', field: 'podCidrs[0]', value: () => '10.20.5.0/24' },
  { name: 'IPv6 pod CIDR overlaps another live node', req: () => ({ podCidrs: ['10.10.0.0/24', 'fd20::/48'] }), live: () => [otherNode()], code: 'conflict', field: 'podCidrs[1]', value: () => 'fd20::/48' },
  { name: 'pod CIDR overlaps the overlay', req: () => ({ podCidrs: ['100.96.1.0/24'] }), code: 'conflict', field: 'podCidrs[0]', value: () => '100.96.1.0/24' },
  { name: 'pod CIDRs overlap each other', req: () => ({ podCidrs: ['10.10.0.0/24', '10.10.0.128/25'] }), code: 'invalid', field: 'podCidrs[1]', value: () => '10.10.0.128/25' },
  { name: 'duplicate pod CIDRs', req: () => ({ podCidrs: ['10.10.0.0/24', '10.10.0.0/24'] }), code: 'invalid', field: 'podCidrs[1]', value: () => '10.10.0.0/24' },
  { name: 'pod CIDR 0.0.0.0/0', req: () => ({ podCidrs: ['0.0.0.0/0'] }), code: 'invalid', field: 'podCidrs[0]', value: () => '0.0.0.0/0' },
  { name: 'pod CIDR ::/0', req: () => ({ podCidrs: ['::/0'] }), code: 'invalid', field: 'podCidrs[0]', value: () => '::/0' },
  { name: 'pod CIDR broader than --min-pod-cidr-prefix', req: () => ({ podCidrs: ['10.0.0.0/8'] }), code: 'invalid', field: 'podCidrs[0]', value: () => '10.0.0.0/8' },
  { name: 'IPv6 pod CIDR broader than /48', req: () => ({ podCidrs: ['fd00::/32'] }), code: 'invalid', field: 'podCidrs[0]', value: () => 'fd00::/32' },
  { name: 'pod CIDR in 127/8', req: () => ({ podCidrs: ['127.1.0.0/16'] }), code: 'invalid', field: 'podCidrs[0]', value: () => '127.1.0.0/16' },
  { name: 'pod CIDR in 169.254/16', req: () => ({ podCidrs: ['169.254.0.0/24'] }), code: 'invalid', field: 'podCidrs[0]', value: () => '169.254.0.0/24' },
  { name: 'pod CIDR in 224/4', req: () => ({ podCidrs: ['239.1.0.0/16'] }), code: 'invalid', field: 'podCidrs[0]', value: () => '239.1.0.0/16' },
  { name: 'pod CIDR in 0/8', req: () => ({ podCidrs: ['0.1.0.0/16'] }), code: 'invalid', field: 'podCidrs[0]', value: () => '0.1.0.0/16' },
  { name: 'pod CIDR ::1', req: () => ({ podCidrs: ['::1/128'] }), code: 'invalid', field: 'podCidrs[0]', value: () => '::1/128' },
  { name: 'pod CIDR in fe80::/10', req: () => ({ podCidrs: ['fe80::/64'] }), code: 'invalid', field: 'podCidrs[0]', value: () => 'fe80::/64' },
  { name: 'pod CIDR in ff00::/8', req: () => ({ podCidrs: ['ff05::/64'] }), code: 'invalid', field: 'podCidrs[0]', value: () => 'ff05::/64' },
];

/** `r` is a rejection with the expected code and field, and its message quotes the offending value. */
function assertRejected(t: ExecutionContext, r: Checked<unknown>, want: Pick<RejectRow, 'code' | 'field' | 'value'>): void {
  if (r.ok) {
    t.fail('accepted');
    return;
  }
  t.is(r.error.code, want.code);
  t.is(r.error.field, want.field);
  t.true(r.error.message.includes(want.value()), r.error.message);
}

for (const row of rejects) {
  test(`rejects: ${row.name}`, (t) => {
    const r = validateRegistration(request(row.req()), policy, {
      now: NOW,
      liveNodes: row.live?.() ?? [],
      ...(row.lastAcceptedSentAt === undefined ? {} : { lastAcceptedSentAt: row.lastAcceptedSentAt }),
    });
    assertRejected(t, r, row);
  });
}

interface AcceptRow {
  name: string;
  req: () => Partial<RegistrationRequest>;
  live?: () => NodeRecord[];
  expect?: (r: RegistrationRequest) => Partial<RegistrationRequest>;
}

const accepts: AcceptRow[] = [
  { name: 'a plain registration', req: () => ({}) },
  { name: 'behind NAT (no endpoints)', req: () => ({ endpoints: [] }) },
  { name: 'sentAt within the skew window', req: () => ({ sentAt: NOW - 4 * 60_000 }) },
  { name: 'IPv6 endpoint and dual-stack pod CIDRs', req: () => ({ endpoints: ['[2001:db8::10]:51820'], podCidrs: ['10.10.0.0/24', 'fd10::/64'] }) },
  { name: 'next to a live node without overlap', req: () => ({ podCidrs: ['10.21.0.0/16'] }), live: () => [otherNode()] },
  {
    name: 're-registration of the same node with new pod CIDRs (its own old CIDRs do not conflict)',
    req: () => ({ podCidrs: ['10.10.0.0/23'] }),
    live: () => [{ ...otherNode(), name: 'node-a', identityKey: keys.identity.publicKey, publicKey: keys.wg, podCidrs: ['10.10.0.0/24'] }],
  },
  { name: 'a new identity may take the name once the old node has expired', req: () => ({ identityKey: keys.otherIdentity.publicKey }) },
  {
    name: 'normalises addresses and drops duplicate endpoints',
    req: () => ({ endpoints: ['[2001:DB8:0::1]:51820', '[2001:db8::1]:51820'], privateAddresses: ['fd00:0::7'], podCidrs: ['fd10:0:0:1::/64'] }),
    expect: () => ({ endpoints: ['[2001:db8::1]:51820'], privateAddresses: ['fd00::7'], podCidrs: ['fd10:0:0:1::/64'] }),
  },
];

for (const row of accepts) {
  test(`accepts: ${row.name}`, (t) => {
    const req = request(row.req());
    const r = validateRegistration(req, policy, { now: NOW, liveNodes: row.live?.() ?? [] });
    if (!r.ok) {
      t.fail(r.error.message);
      return;
    }
    t.like(r.value, row.expect?.(req) ?? { name: req.name, podCidrs: req.podCidrs, endpoints: req.endpoints });
  });
}

test('the minimum prefix is a policy knob', (t) => {
  const r = validateRegistration(request({ podCidrs: ['10.0.0.0/8'] }), { ...policy, minPodCidrPrefixV4: 8 }, { now: NOW, liveNodes: [] });
  t.true(r.ok);
});

test('checkSentAt accepts the window edges and names the field', (t) => {
  t.true(checkSentAt(NOW - 1000, NOW, 1000).ok);
  t.true(checkSentAt(NOW + 1000, NOW, 1000).ok);
  const r = checkSentAt(NOW - 1001, NOW, 1000);
  t.false(r.ok);
  if (!r.ok) t.is(r.error.field, 'sentAt');
});

// ---- openSignedRequest: bytes → verified RegistrationRequest ----

interface OpenRow {
  name: string;
  raw: () => Promise<string>;
  code: ErrorBody['code'];
  field: string;
  value: () => string;
}

const enc = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64');
/** The wire text of `payload` signed by `signer` (default: the node's own identity key). */
const signedText = async (payload: unknown, signer: SigningKeyPair = keys.identity): Promise<string> => JSON.stringify(await signEnvelope(payload, signer.secretKey));
/** A validly signed request whose payload was then replaced by `payload`. */
const swappedPayload = async (payload: string): Promise<string> => JSON.stringify({ ...(await signEnvelope(request(), keys.identity.secretKey)), payload });

const openRows: OpenRow[] = [
  { name: 'not JSON', raw: () => Promise.resolve('hello there'), code: 'invalid', field: '(root)', value: () => 'hello there' },
  { name: 'not an envelope', raw: () => Promise.resolve(JSON.stringify({ name: 'x' })), code: 'invalid', field: 'payload', value: () => 'payload' },
  { name: 'payload not base64 JSON', raw: () => swappedPayload('bm90IGpzb24='), code: 'invalid', field: 'payload', value: () => 'bm90IGpzb24=' },
  { name: 'bad node name', raw: () => signedText(request({ name: 'Bad_Name' })), code: 'invalid', field: 'name', value: () => 'Bad_Name' },
  { name: 'malformed pod CIDR (host bits)', raw: () => signedText(request({ podCidrs: ['10.10.0.1/24'] })), code: 'invalid', field: 'podCidrs[0]', value: () => '10.10.0.1/24' },
  { name: 'malformed WireGuard key', raw: () => signedText(request({ publicKey: 'short' })), code: 'invalid', field: 'publicKey', value: () => 'short' },
  { name: 'unknown field', raw: () => signedText({ ...request(), extra: 1 }), code: 'invalid', field: '(root)', value: () => 'extra' },
  { name: 'signed by a key other than identityKey', raw: () => signedText(request(), keys.otherIdentity), code: 'unauthorized', field: 'sig', value: () => keys.identity.publicKey },
  { name: 'payload swapped under a valid signature', raw: () => swappedPayload(enc(request({ podCidrs: ['10.99.0.0/24'] }))), code: 'unauthorized', field: 'sig', value: () => keys.identity.publicKey },
];

for (const row of openRows) {
  test(`openSignedRequest rejects: ${row.name}`, async (t) => {
    const r = await openSignedRequest(await row.raw(), RegistrationRequest);
    assertRejected(t, r, row);
  });
}

test('openSignedRequest accepts a request signed by its identityKey (text and bytes)', async (t) => {
  const env = await signedText(request());
  const a = await openSignedRequest(env, RegistrationRequest);
  const b = await openSignedRequest(new TextEncoder().encode(env), RegistrationRequest);
  t.true(a.ok && b.ok);
  if (a.ok) t.is(a.value.name, 'node-a');
});
