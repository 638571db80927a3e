// Test and lab support: a minimal stand-in for an agent that speaks the coordinator protocol
// (signed registration, heartbeat, deregistration). Not used by the coordinator itself.
import type { NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import {
  DeregisterReply,
  HeartbeatReply,
  RegisterReply,
  type Deregister,
  type Heartbeat,
  type RegistrationRequest,
} from '../protocol/messages.ts';
import { generateSigningKeyPair, generateWireguardKeyPair, signEnvelope, type SigningKeyPair, type WireguardKeyPair } from '../protocol/signing.ts';
import { subjects } from '../protocol/subjects.ts';

export interface FakeAgent {
  readonly name: string;
  readonly identity: SigningKeyPair;
  readonly wireguard: WireguardKeyPair;
  /** A valid registration request for this node, with `overrides` applied. */
  request(overrides?: Partial<RegistrationRequest>): RegistrationRequest;
}

export async function fakeAgent(name: string, base: Partial<RegistrationRequest> = {}): Promise<FakeAgent> {
  const identity = await generateSigningKeyPair();
  const wireguard = await generateWireguardKeyPair();
  return {
    name,
    identity,
    wireguard,
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
      sentAt: Date.now(),
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

export interface AgentClient {
  register(agent: FakeAgent, overrides?: Partial<RegistrationRequest>): Promise<RegisterReply>;
  heartbeat(agent: FakeAgent, overrides?: Partial<Heartbeat>): Promise<HeartbeatReply>;
  deregister(agent: FakeAgent, overrides?: Partial<Deregister>): Promise<HeartbeatReply>;
}

export function agentClient(nc: NatsConnection, prefix?: string, timeoutMs = 3000): AgentClient {
  const s = subjects(prefix);
  return {
    register: async (agent, overrides) => rpc(nc, s.register, await signed(agent.request(overrides), agent.identity.secretKey), RegisterReply, timeoutMs),
    heartbeat: async (agent, overrides) => {
      const hb: Heartbeat = { v: 1, name: agent.name, identityKey: agent.identity.publicKey, generation: 0, sentAt: Date.now(), ...overrides };
      return rpc(nc, s.heartbeat, await signed(hb, agent.identity.secretKey), HeartbeatReply, timeoutMs);
    },
    deregister: async (agent, overrides) => {
      const d: Deregister = { v: 1, name: agent.name, identityKey: agent.identity.publicKey, sentAt: Date.now(), ...overrides };
      return rpc(nc, s.deregister, await signed(d, agent.identity.secretKey), DeregisterReply, timeoutMs);
    },
  };
}
