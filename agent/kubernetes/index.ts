// Kubernetes mode of the agent: the one import the daemon needs.
export { createKubernetesNodeSource, type KubernetesNodeSource, type KubernetesNodeSourceOptions } from './node-source.ts';
export { detectKubernetes, defaultKubeConfig, KubeConfigError, SERVICE_ACCOUNT_TOKEN_PATH } from './kubeconfig.ts';
export { kubernetesNodeSourceFromConfig, type KubernetesSourceDeps } from './from-agent-config.ts';
export type { IdentityDefaults } from './node-identity.ts';
export type { IgnoredValue } from './annotations.ts';
export { ANNOTATION_PREFIX, CONDITION_TYPE, InputAnnotations, OutputAnnotations, TopologyLabels } from './annotations.ts';
