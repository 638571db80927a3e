// The agent's flags → the multi-cluster services controller of Kubernetes mode. Shared by the
// daemon (agent/main.ts) and the end-to-end test, so what the test runs is what the daemon runs.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Clock } from '../../../lib/clock.ts';
import type { Logger } from '../../../lib/logger.ts';
import type { AgentConfig } from '../../config.ts';
import type { ServicesSyncFactory } from '../../services/sync.ts';
import { defaultKubeConfig } from '../kubeconfig.ts';
import { McsController } from './controller.ts';
import { mcsKubeApi } from './kube-api.ts';

export interface McsSyncDeps {
  readonly logger: Logger;
  readonly clock: Clock;
  /** Default: defaultKubeConfig() (service account in a pod, else KUBECONFIG, else ~/.kube/config). */
  readonly kubeConfig?: KubeConfig;
  readonly resyncMs?: number;
  readonly requestTimeoutMs?: number;
}

export function mcsSyncFromConfig(config: Pick<AgentConfig, 'cluster'>, deps: McsSyncDeps): ServicesSyncFactory {
  const kc = deps.kubeConfig ?? defaultKubeConfig();
  const api = mcsKubeApi(kc, { timeoutMs: deps.requestTimeoutMs ?? 30_000 });
  return (services) =>
    new McsController({
      cluster: config.cluster,
      api,
      services,
      clock: deps.clock,
      logger: deps.logger,
      ...(deps.resyncMs === undefined ? {} : { resyncMs: deps.resyncMs }),
    });
}
