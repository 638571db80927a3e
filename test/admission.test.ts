// protocol/admission.ts admitToCluster: the join signature, the pod CIDRs inside the cluster's
// enrolled ranges, and endpoints / private addresses outside every enrolled pod range. The enrolled
// ranges are parsed once per definition object: a changed definition (a new object) is honoured at once.
import test from 'ava';
import { admitToCluster } from '../protocol/admission.ts';
import { generateJoinCredential, joinSign, type JoinCredential } from '../protocol/join-credential.ts';
import type { ClusterDefinition, RegistrationRequest } from '../protocol/messages.ts';
import { generateSigningKeyPair, generateWireguardKeyPair } from '../protocol/signing.ts';
import { registrationRequest } from './helpers/registration-request.ts';

let cred: JoinCredential;
let other: JoinCredential;
let identityKey: string;
let wg: string;
test.before(async () => {
  cred = await generateJoinCredential('aws');
  other = await generateJoinCredential('gcp');
  identityKey = (await generateSigningKeyPair()).publicKey;
  wg = (await generateWireguardKeyPair()).publicKey;
});

const definition = (name: string, podCidrs: string[], joinKey: string): ClusterDefinition => ({
  kind: 'cluster-definition',
  v: 1,
  name,
  podCidrs,
  topology: 'mesh',
  allowPublic: false,
  joinKey,
  credentialGeneration: 1,
  createdAt: 1,
  updatedAt: 1,
});

const request = (o: Partial<RegistrationRequest> = {}): RegistrationRequest => registrationRequest({ wg, identityKey }, 1, o);

async function admit(req: RegistrationRequest, defs: ClusterDefinition[], signer: JoinCredential = cred) {
  const payload = Buffer.from(JSON.stringify(req)).toString('base64');
  return admitToCluster({ request: req, payload, joinSig: await joinSign(payload, signer.secretKey), definition: defs.find((d) => d.name === req.cluster), definitions: defs });
}

test('admitted: signed with the cluster credential, pods inside its ranges, addresses outside every pod range', async (t) => {
  const r = await admit(request(), [definition('aws', ['10.10.0.0/16'], cred.publicKey), definition('gcp', ['10.20.0.0/16'], other.publicKey)]);
  t.deepEqual(r, { ok: true, value: 'mesh' });
});

test('refused: another cluster credential, pods outside the enrolled ranges, an address inside a pod range', async (t) => {
  const defs = [definition('aws', ['10.10.0.0/16'], cred.publicKey), definition('gcp', ['10.20.0.0/16'], other.publicKey)];
  const wrongKey = await admit(request(), defs, other);
  t.like(wrongKey, { ok: false, error: { code: 'unauthorized', field: 'joinSig' } });
  const outside = await admit(request({ podCidrs: ['10.11.0.0/24'] }), defs);
  t.like(outside, { ok: false, error: { code: 'unauthorized', field: 'podCidrs[0]' } });
  const endpoint = await admit(request({ endpoints: ['10.20.3.4:51820'] }), defs);
  t.like(endpoint, { ok: false, error: { code: 'invalid', field: 'endpoints[0]' } });
  if (!endpoint.ok) t.regex(endpoint.error.message, /10\.20\.0\.0\/16 of cluster "gcp"/);
  const own = await admit(request({ privateAddresses: ['10.10.9.9'] }), defs);
  t.like(own, { ok: false, error: { code: 'invalid', field: 'privateAddresses[0]' } });
});

test('a changed definition (a new object) is checked with its new ranges, the old object with its own', async (t) => {
  const gcp = definition('gcp', ['10.20.0.0/16'], other.publicKey);
  const aws = definition('aws', ['10.10.0.0/16'], cred.publicKey);
  t.true((await admit(request({ endpoints: ['10.30.0.1:51820'] }), [aws, gcp])).ok, 'gcp does not hold 10.30/16 yet');
  const widened = { ...gcp, podCidrs: ['10.20.0.0/16', '10.30.0.0/16'] };
  t.like(await admit(request({ endpoints: ['10.30.0.1:51820'] }), [aws, widened]), { ok: false, error: { field: 'endpoints[0]' } });
  t.true((await admit(request({ endpoints: ['10.30.0.1:51820'] }), [aws, gcp])).ok, 'the old object still answers with its own ranges');
  const moved = { ...aws, podCidrs: ['10.40.0.0/16'] };
  t.like(await admit(request(), [moved, gcp]), { ok: false, error: { code: 'unauthorized', field: 'podCidrs[0]' } });
  t.deepEqual(await admit(request({ podCidrs: ['10.40.1.0/24'] }), [moved, gcp]), { ok: true, value: 'mesh' });
});
