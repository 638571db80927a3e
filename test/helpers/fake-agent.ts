// The tests' fake agent: the bench's simulated agent and its protocol client (bench/simulated-agent.ts:
// signed registration, heartbeat, deregistration, with the knobs adversary tests need: overrides,
// signing with another key, lazily enrolled clusters).
// (Named fakeAgent here, in test/; in bench/ it is the simulated agent: no test fake in the tree.)
export { agentClient, simulatedAgent as fakeAgent, rpc, signed, signedRegistration, type AgentClient, type AgentClientOptions, type SimulatedAgent as FakeAgent } from '../../bench/simulated-agent.ts';
