// Where the agent finds the API server: the pod's service account when in a pod, else ~/.kube/config.
import { existsSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';

export const SERVICE_ACCOUNT_TOKEN_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** True when running in a pod with a service account: the agent's Kubernetes mode can be auto-selected. */
export function detectKubernetes(
  env: Readonly<Record<string, string | undefined>> = process.env,
  tokenExists: (path: string) => boolean = existsSync,
): boolean {
  const host = env['KUBERNETES_SERVICE_HOST'];
  return host !== undefined && host !== '' && tokenExists(SERVICE_ACCOUNT_TOKEN_PATH);
}

export function defaultKubeConfig(env: Readonly<Record<string, string | undefined>> = process.env): KubeConfig {
  const kc = new KubeConfig();
  const host = env['KUBERNETES_SERVICE_HOST'];
  if (host !== undefined && host !== '') kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}
