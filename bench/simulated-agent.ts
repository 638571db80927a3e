// A simulated agent that speaks the coordinator protocol (signed registration, heartbeat,
// deregistration) without a data plane: the bench's fleets are made of these, and the tests' fake
// agent (test/helpers/fake-agent.ts) builds on them.
import type { NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import { DeregisterReply, HeartbeatReply, RegisterReply, type Deregister, type Heartbeat, type RegistrationRequest } from '../protocol/messages.ts';
import { subjects } from '../protocol/subjects.ts';
import { generateSigningKeyPair, generateWireguardKeyPair, signEnvelope, type SigningKeyPair, type WireguardKeyPair } from '../protocol/signing.ts';
import { HeartbeatMacSession, heartbeatBody, type HeartbeatMac } from '../protocol/heartbeat-mac.ts';
import { joinSign, type JoinCredential } from '../protocol/join-credential.ts';

export interface SimulatedAgent {
  readonly name: string;
  readonly identity: SigningKeyPair;
  readonly wireguard: WireguardKeyPair;
  /** The join credential its registrations are signed with (unset: the client's credentialFor decides). */
  joinCredential?: JoinCredential | undefined;
  /** A valid registration request for this node, with `overrides` applied. */
  request(overrides?: Partial<RegistrationRequest>): RegistrationRequest;
  /** A sentAt above every one this agent used before (the coordinator refuses a sentAt that does not move forward). */
  nextSentAt(): number;
  /**
   * The coordinator epoch this agent last learned from a reply (registration, heartbeat), signed into
   * its heartbeats as the real agent does (agent/control/control-plane.ts); unset until a reply carried one.
   */
  epoch?: string | undefined;
  /** Its heartbeat MACs across registrations, kept as the agent keeps them (protocol/heartbeat-mac.ts). */
  readonly heartbeatMac: HeartbeatMacSession;
}

/**
 * The heartbeat form the bench's simulated agents use: `mac`, what the agent sends, unless
 * XL_BENCH_HEARTBEAT_FORM=signed forces signatures (both forms measured against one coordinator).
 */
export function benchHeartbeatForm(): 'mac' | 'signed' {
  return process.env['XL_BENCH_HEARTBEAT_FORM'] === 'signed' ? 'signed' : 'mac';
}


export async function simulatedAgent(name: string, base: Partial<RegistrationRequest> = {}): Promise<SimulatedAgent> {
  const identity = await generateSigningKeyPair();
  const wireguard = await generateWireguardKeyPair();
  let last = 0;
  const nextSentAt = (): number => (last = Math.max(Date.now(), last + 1));
  return {
    name,
    identity,
    wireguard,
    nextSentAt,
    heartbeatMac: new HeartbeatMacSession(identity),
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

export interface AgentClientOptions {
  readonly timeoutMs?: number;
  /** The credential for a request whose agent has none of its own (tests enroll clusters lazily here). */
  readonly credentialFor?: (request: RegistrationRequest) => Promise<JoinCredential | undefined>;
  /**
   * The coordinator public key to agree heartbeat MAC keys with: agents registered through this client
   * send MAC heartbeats (falling back to signed ones when refused), as the agent does. Unset: signed.
   */
  readonly heartbeatMac?: string;
}

export interface AgentClient {
  /** The signed registration body `register` would send (`signWith`: another identity secret key). */
  registrationBody(agent: SimulatedAgent, overrides?: Partial<RegistrationRequest>, signWith?: string): Promise<string>;
  register(agent: SimulatedAgent, overrides?: Partial<RegistrationRequest>): Promise<RegisterReply>;
  heartbeat(agent: SimulatedAgent, overrides?: Partial<Heartbeat>): Promise<HeartbeatReply>;
  deregister(agent: SimulatedAgent, overrides?: Partial<Deregister>): Promise<HeartbeatReply>;
}

/** The agent keeps the epoch a reply carries (every reply of a leader that knows one does). */
function learn<R extends { readonly epoch?: string | undefined }>(agent: SimulatedAgent, reply: R): R {
  if (reply.epoch !== undefined) agent.epoch = reply.epoch;
  return reply;
}

export function agentClient(nc: NatsConnection, prefix?: string, options: AgentClientOptions | number = {}): AgentClient {
  const s = subjects(prefix);
  const o: AgentClientOptions = typeof options === 'number' ? { timeoutMs: options } : options;
  const timeoutMs = o.timeoutMs ?? 3000;
  const registrationBody = async (agent: SimulatedAgent, overrides?: Partial<RegistrationRequest>, signWith?: string): Promise<string> => {
    const request = agent.request(overrides);
    const credential = agent.joinCredential ?? (await o.credentialFor?.(request));
    return signedRegistration(request, signWith ?? agent.identity.secretKey, credential);
  };
  return {
    registrationBody,
    register: async (agent, overrides) => {
      const reply = learn(agent, await rpc(nc, s.register, await registrationBody(agent, overrides), RegisterReply, timeoutMs));
      if (reply.ok) agent.heartbeatMac.registered(o.heartbeatMac);
      return reply;
    },
    heartbeat: async (agent, overrides = {}) => {
      const send = async (): Promise<{ reply: HeartbeatReply; mac: HeartbeatMac | undefined }> => {
        const hb: Heartbeat = { v: 1, name: agent.name, identityKey: agent.identity.publicKey, generation: 0, sentAt: agent.nextSentAt(), ...(agent.epoch === undefined ? {} : { epoch: agent.epoch }), ...overrides };
        const mac = agent.heartbeatMac.current;
        return { reply: learn(agent, await rpc(nc, s.heartbeat, heartbeatBody(hb, agent.identity, mac), HeartbeatReply, timeoutMs)), mac };
      };
      // Sent again at once, as the agent does: once after a MAC refusal (signed from then on), once
      // after a new epoch.
      let sent = await send();
      let epochResent = false;
      while (!sent.reply.ok) {
        const error = sent.reply.error;
        // A new leader (stale-epoch), or none learned yet (epoch-required): the reply names the current
        // epoch, and the agent signs it at once, as the real one does; not when the test pinned the epoch.
        const newEpoch = !epochResent && (error.code === 'stale-epoch' || error.code === 'epoch-required') && sent.reply.epoch !== undefined && !('epoch' in overrides);
        if (!agent.heartbeatMac.refused(sent.mac, error) && !newEpoch) break;
        if (newEpoch) epochResent = true;
        sent = await send();
      }
      return sent.reply;
    },
    deregister: async (agent, overrides) => {
      const d: Deregister = { v: 1, name: agent.name, identityKey: agent.identity.publicKey, sentAt: agent.nextSentAt(), ...overrides };
      return rpc(nc, s.deregister, await signed(d, agent.identity.secretKey), DeregisterReply, timeoutMs);
    },
  };
}
