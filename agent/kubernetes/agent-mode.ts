// Everything the agent's Kubernetes mode loads, behind one lazy import in agent/main.ts: the node
// source, the multi-cluster services sync and the Node events. The build (scripts/build-agent.ts)
// makes each lazy import of the agent a CommonJS bundle of its own, so one module here means one
// copy of the Kubernetes client, loaded only in Kubernetes mode.
export { kubernetesNodeSourceFromConfig } from './from-agent-config.ts';
export { mcsSyncFromConfig } from './mcs/from-agent-config.ts';
export { kubernetesNodeEventsFromConfig } from './node-events.ts';
