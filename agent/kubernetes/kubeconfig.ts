// Where the agent finds the API server: the pod's service account when in a pod, else KUBECONFIG,
// else ~/.kube/config. Anything else is an error at start: the client library would otherwise fall
// back to http://localhost:8080 and the agent would wait for its Node forever.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { CrosslinkError, errorMessage } from '../../lib/errors.ts';

export const SERVICE_ACCOUNT_TOKEN_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** No usable Kubernetes client configuration; the message says where we looked and what to do. */
export class KubeConfigError extends CrosslinkError {
  override name = 'KubeConfigError';
}

/** True when running in a pod with a service account: the agent's Kubernetes mode can be auto-selected. */
export function detectKubernetes(
  env: Readonly<Record<string, string | undefined>> = process.env,
  tokenExists: (path: string) => boolean = existsSync,
): boolean {
  const host = env['KUBERNETES_SERVICE_HOST'];
  return host !== undefined && host !== '' && tokenExists(SERVICE_ACCOUNT_TOKEN_PATH);
}

/** Throws KubeConfigError (never a bare ENOENT or YAML error) so the agent can say what to fix. */
export function defaultKubeConfig(
  env: Readonly<Record<string, string | undefined>> = process.env,
  fileExists: (path: string) => boolean = existsSync,
  home: string = homedir(),
): KubeConfig {
  const kc = new KubeConfig();
  const host = env['KUBERNETES_SERVICE_HOST'];
  const kubeconfigEnv = env['KUBECONFIG'] ?? '';
  let from = 'the default locations';
  try {
    if (host !== undefined && host !== '') {
      from = 'the pod service account (KUBERNETES_SERVICE_HOST is set)';
      kc.loadFromCluster();
    } else if (kubeconfigEnv !== '') {
      from = `KUBECONFIG=${kubeconfigEnv}`;
      // Same semantics as kubectl and the client library: several files, the first one's context wins.
      const files = kubeconfigEnv.split(delimiter).filter((f) => f !== '');
      files.forEach((file, i) => {
        if (i === 0) kc.loadFromFile(file);
        else {
          const more = new KubeConfig();
          more.loadFromFile(file);
          kc.mergeConfig(more);
        }
      });
    } else {
      const file = join(home, '.kube', 'config');
      if (!fileExists(file)) {
        throw new KubeConfigError(
          `no Kubernetes API server configured: not in a pod (KUBERNETES_SERVICE_HOST is unset), KUBECONFIG is unset and ${file} does not exist; set KUBECONFIG for development, or run without --kubernetes`,
        );
      }
      from = file;
      kc.loadFromFile(file);
    }
  } catch (err) {
    if (err instanceof KubeConfigError) throw err;
    throw new KubeConfigError(`cannot load the Kubernetes client configuration from ${from}: ${errorMessage(err)}`, { cause: err });
  }
  if (!kc.getCurrentCluster()) {
    const context = kc.getCurrentContext();
    throw new KubeConfigError(
      `the Kubernetes client configuration from ${from} has no usable cluster: ${context ? `current-context "${context}" names no known cluster` : 'current-context is not set'}`,
    );
  }
  return kc;
}
