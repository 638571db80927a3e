// The agent's flags → the Kubernetes node source. Shared by the daemon (agent/main.ts) and the
// end-to-end tests, so what the tests run is what `crosslink-agent --kubernetes` runs.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Clock } from '../../lib/clock.ts';
import type { Logger } from '../../lib/logger.ts';
import type { AgentConfig } from '../config.ts';
import { createKubernetesNodeSource, type KubernetesNodeSource } from './node-source.ts';
import type { BackoffPolicy } from '../../lib/backoff.ts';

export interface KubernetesSourceDeps {
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Default: defaultKubeConfig() (service account in a pod, else KUBECONFIG, else ~/.kube/config). */
  readonly kubeConfig?: KubeConfig;
  readonly backoff?: BackoffPolicy;
  readonly requestTimeoutMs?: number;
}

/** Throws ValidationError / KubeConfigError for a configuration that cannot work. */
export function kubernetesNodeSourceFromConfig(config: AgentConfig, deps: KubernetesSourceDeps): KubernetesNodeSource {
  const ignored = [
    config.podCidrs.length > 0 ? '--pod-cidr' : null,
    config.endpoints.length > 0 ? '--endpoint' : null,
    config.privateAddresses.length > 0 ? '--private-address' : null,
    config.zone !== null ? '--zone' : null,
    config.persistentKeepalive !== null ? '--persistent-keepalive' : null,
  ].filter((f) => f !== null);
  if (ignored.length > 0) {
    deps.logger.warn({ ignored }, 'Kubernetes mode takes these from the Node object (spec, addresses, crosslink.dev/ annotations); the flags are ignored');
  }
  return createKubernetesNodeSource({
    nodeName: config.nodeName,
    cluster: config.cluster,
    defaults: {
      topology: config.topology,
      listenPort: config.listenPort,
      ...(config.location === null ? {} : { location: config.location }),
      ...(config.gatewayEligible === null ? {} : { gatewayEligible: config.gatewayEligible }),
    },
    logger: deps.logger,
    ...(deps.clock ? { clock: deps.clock } : {}),
    ...(deps.kubeConfig ? { kubeConfig: deps.kubeConfig } : {}),
    ...(deps.backoff ? { backoff: deps.backoff } : {}),
    ...(deps.requestTimeoutMs !== undefined ? { requestTimeoutMs: deps.requestTimeoutMs } : {}),
  });
}
