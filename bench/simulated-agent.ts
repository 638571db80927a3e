// A simulated agent that speaks the coordinator protocol (signed registration, heartbeat,
// deregistration) without a data plane: the bench's fleets are made of these, and the tests' fake
// agent (test/helpers/fake-agent.ts) builds on them.
import type { NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import type { RegistrationRequest } from '../protocol/messages.ts';
import { generateSigningKeyPair, generateWireguardKeyPair, signEnvelope, type SigningKeyPair, type WireguardKeyPair } from '../protocol/signing.ts';
import { joinSign, type JoinCredential } from '../protocol/join-credential.ts';

export interface FakeAgent {
  readonly name: string;
  readonly identity: SigningKeyPair;
  readonly wireguard: WireguardKeyPair;
  /** The join credential its registrations are signed with (unset: the client's credentialFor decides). */
  joinCredential?: JoinCredential | undefined;
  /** A valid registration request for this node, with `overrides` applied. */
  request(overrides?: Partial<RegistrationRequest>): RegistrationRequest;
  /** A sentAt above every one this agent used before (the coordinator refuses a sentAt that does not move forward). */
  nextSentAt(): number;
}

export async function fakeAgent(name: string, base: Partial<RegistrationRequest> = {}): Promise<FakeAgent> {
  const identity = await generateSigningKeyPair();
  const wireguard = await generateWireguardKeyPair();
  let last = 0;
  const nextSentAt = (): number => (last = Math.max(Date.now(), last + 1));
  return {
    name,
    identity,
    wireguard,
    nextSentAt,
    request: (overrides = {}) => ({
      v: 1,
      name,
      cluster: 'c1',
      location: 'test',
      publicKey: wireguard.publicKey,
      identityKey: identity.publicKey,
      endpoints: ['192.0.2.10:51820'],
      privateAddresses: ['10.0.0.10'],
      podCidrs: ['10.10.0.0/24'],
      listenPort: 51820,
      topology: 'mesh',
      gatewayEligible: false,
      agentVersion: 'test',
      sentAt: nextSentAt(),
      ...base,
      ...overrides,
    }),
  };
}

/** JSON text of `value` in an envelope signed with `secretKey`. */
export async function signed(value: unknown, secretKey: string): Promise<string> {
  return JSON.stringify(await signEnvelope(value, secretKey));
}

/** Request/reply with a JSON body, parsing the reply with `schema`. */
export async function rpc<S extends z.ZodType>(nc: NatsConnection, subject: string, body: string, schema: S, timeoutMs = 3000): Promise<z.infer<S>> {
  const msg = await nc.request(subject, body, { timeout: timeoutMs });
  return schema.parse(JSON.parse(msg.string()));
}

/** A registration envelope: signed by the identity key and, given a credential, by the cluster's join key. */
export async function signedRegistration(request: RegistrationRequest, identitySecretKey: string, credential: JoinCredential | undefined): Promise<string> {
  const env = await signEnvelope(request, identitySecretKey);
  return JSON.stringify(credential ? { ...env, joinSig: await joinSign(env.payload, credential.secretKey) } : env);
}
