// The tests' fake agent: the bench's simulated agent (bench/simulated-agent.ts) plus a client with
// the knobs adversary tests need (overrides, signing with another key, lazily enrolled clusters).
import type { NatsConnection } from '@nats-io/transport-node';
import { fakeAgent, rpc, signed, signedRegistration, type FakeAgent } from '../../bench/simulated-agent.ts';
import { DeregisterReply, HeartbeatReply, RegisterReply, type Deregister, type Heartbeat, type RegistrationRequest } from '../../protocol/messages.ts';
import type { JoinCredential } from '../../protocol/join-credential.ts';
import { subjects } from '../../protocol/subjects.ts';

export { fakeAgent, rpc, signed, signedRegistration, type FakeAgent };

export interface AgentClientOptions {
  readonly timeoutMs?: number;
  /** The credential for a request whose agent has none of its own (tests enroll clusters lazily here). */
  readonly credentialFor?: (request: RegistrationRequest) => Promise<JoinCredential | undefined>;
}

export interface AgentClient {
  /** The signed registration body `register` would send (`signWith`: another identity secret key). */
  registrationBody(agent: FakeAgent, overrides?: Partial<RegistrationRequest>, signWith?: string): Promise<string>;
  register(agent: FakeAgent, overrides?: Partial<RegistrationRequest>): Promise<RegisterReply>;
  heartbeat(agent: FakeAgent, overrides?: Partial<Heartbeat>): Promise<HeartbeatReply>;
  deregister(agent: FakeAgent, overrides?: Partial<Deregister>): Promise<HeartbeatReply>;
}

export function agentClient(nc: NatsConnection, prefix?: string, options: AgentClientOptions | number = {}): AgentClient {
  const s = subjects(prefix);
  const o: AgentClientOptions = typeof options === 'number' ? { timeoutMs: options } : options;
  const timeoutMs = o.timeoutMs ?? 3000;
  const registrationBody = async (agent: FakeAgent, overrides?: Partial<RegistrationRequest>, signWith?: string): Promise<string> => {
    const request = agent.request(overrides);
    const credential = agent.joinCredential ?? (await o.credentialFor?.(request));
    return signedRegistration(request, signWith ?? agent.identity.secretKey, credential);
  };
  return {
    registrationBody,
    register: async (agent, overrides) => rpc(nc, s.register, await registrationBody(agent, overrides), RegisterReply, timeoutMs),
    heartbeat: async (agent, overrides) => {
      const hb: Heartbeat = { v: 1, name: agent.name, identityKey: agent.identity.publicKey, generation: 0, sentAt: agent.nextSentAt(), ...overrides };
      return rpc(nc, s.heartbeat, await signed(hb, agent.identity.secretKey), HeartbeatReply, timeoutMs);
    },
    deregister: async (agent, overrides) => {
      const d: Deregister = { v: 1, name: agent.name, identityKey: agent.identity.publicKey, sentAt: agent.nextSentAt(), ...overrides };
      return rpc(nc, s.deregister, await signed(d, agent.identity.secretKey), DeregisterReply, timeoutMs);
    },
  };
}
