// The tests' fake agent: the bench's simulated agent and its protocol client (bench/simulated-agent.ts:
// signed registration, heartbeat, deregistration, with the knobs adversary tests need: overrides,
// signing with another key, lazily enrolled clusters).
export { agentClient, fakeAgent, rpc, signed, signedRegistration, type AgentClient, type AgentClientOptions, type FakeAgent } from '../../bench/simulated-agent.ts';
