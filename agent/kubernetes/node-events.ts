// Kubernetes mode: the agent's events (protocol/events.ts) also as core/v1 Events on its Node, so
// `kubectl describe node` and `kubectl get events` show them next to the kubelet's. As the kubelet
// does for Node events: namespace `default`, involvedObject {kind: Node, name, uid: <node name>},
// source {component: crosslink-agent, host: <node>}. The reason is the event type in CamelCase
// (wireguard-restarted → WireguardRestarted), the type Warning or Normal from the severity.
//
// Repeats are aggregated as client-go's EventCorrelator does: the same reason on the same Node
// within AGGREGATE_WINDOW_MS replaces the existing Event with count + 1, a new lastTimestamp and the
// latest message, instead of creating another object. (The agent's RateLimitedEvents already bounds
// how often this is called.) Calls run one at a time from a bounded queue: publish() never blocks
// and never throws; a failed call is logged (once a minute per reason) and the event dropped.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Clock } from '../../lib/clock.ts';
import type { Logger } from '../../lib/logger.ts';
import { RateLimitedLog } from '../../lib/rate-limited-log.ts';
import type { EventInput, EventPublisher } from '../../protocol/events.ts';
import { apiErrorMessage, apiStatus } from './api-requests.ts';
import type { AgentConfig } from '../config.ts';
import { eventsApi, type EventsApi, type NodeEventBody } from './events-api.ts';
import { defaultKubeConfig } from './kubeconfig.ts';

/** Where Node events live (cluster-scoped objects' events go to `default`, as the kubelet's). */
export const NODE_EVENTS_NAMESPACE = 'default';
export const EVENT_SOURCE_COMPONENT = 'crosslink-agent';
/** Repeats of a reason within this window bump the count of one Event (client-go: 10 minutes). */
export const AGGREGATE_WINDOW_MS = 10 * 60_000;
/** Events waiting for the API beyond this are dropped (a slow or unreachable API server). */
export const MAX_PENDING = 32;

export interface KubernetesNodeEventsOptions {
  readonly api: EventsApi;
  /** The Node this agent runs on (its name can only change with a restart, but read it late). */
  readonly nodeName: () => string;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** wireguard-restarted → WireguardRestarted. */
export function eventReason(type: string): string {
  return type
    .split('-')
    .map((w) => (w.length === 0 ? w : `${w[0]?.toUpperCase() ?? ''}${w.slice(1)}`))
    .join('');
}

interface Aggregate {
  readonly firstAt: number;
  body: NodeEventBody;
}

export class KubernetesNodeEvents implements EventPublisher {
  private readonly pending: EventInput[] = [];
  private draining: Promise<void> | undefined;
  private readonly byReason = new Map<string, Aggregate>();
  private readonly warnings: RateLimitedLog;
  /** Makes names unique within a millisecond (client-go: <object>.<unix nanos in hex>). */
  private seq = 0;
  /** Events dropped because the queue was full (status, tests). */
  dropped = 0;

  constructor(private readonly o: KubernetesNodeEventsOptions) {
    this.warnings = new RateLimitedLog(o.logger, o.clock);
  }

  publish(event: EventInput): void {
    if (this.pending.length >= MAX_PENDING) {
      this.dropped++;
      this.warnings.warn('queue', { type: event.type, pending: this.pending.length }, 'Kubernetes Event dropped: the API server is not keeping up');
      return;
    }
    this.pending.push(event);
    this.draining ??= this.drain().finally(() => (this.draining = undefined));
  }

  /** Resolves when every queued event has been sent (or has failed). */
  async flush(): Promise<void> {
    while (this.draining) await this.draining;
  }

  private async drain(): Promise<void> {
    for (let next = this.pending.shift(); next !== undefined; next = this.pending.shift()) {
      try {
        await this.send(next);
      } catch (err) {
        this.warnings.warn(`send:${next.type}`, { type: next.type, err: apiErrorMessage(err) }, 'Kubernetes Event not recorded');
      }
    }
  }

  private async send(input: EventInput): Promise<void> {
    const now = this.o.clock.now();
    const reason = eventReason(input.type);
    const node = this.o.nodeName();
    const previous = this.byReason.get(reason);
    if (previous && now - previous.firstAt < AGGREGATE_WINDOW_MS) {
      const body: NodeEventBody = { ...previous.body, count: previous.body.count + 1, lastTimestamp: new Date(now), message: input.message, type: kubeType(input) };
      try {
        const answer = await this.o.api.replace(body);
        previous.body = { ...body, resourceVersion: answer.resourceVersion };
        return;
      } catch (err) {
        // Deleted (events have a TTL) or changed by someone else: start a new one.
        const status = apiStatus(err);
        if (status !== 404 && status !== 409) throw err;
      }
    }
    const body: NodeEventBody = {
      namespace: NODE_EVENTS_NAMESPACE,
      name: `${node}.${(BigInt(now) * 1_000_000n + BigInt(this.seq++ % 1_000_000)).toString(16)}`,
      node,
      reason,
      message: input.message,
      type: kubeType(input),
      count: 1,
      firstTimestamp: new Date(now),
      lastTimestamp: new Date(now),
      component: EVENT_SOURCE_COMPONENT,
    };
    const answer = await this.o.api.create(body);
    this.byReason.set(reason, { firstAt: now, body: { ...body, name: answer.name, resourceVersion: answer.resourceVersion } });
  }
}

const kubeType = (e: EventInput): 'Warning' | 'Normal' => (e.severity === 'warning' ? 'Warning' : 'Normal');

export interface NodeEventsDeps {
  readonly logger: Logger;
  readonly clock: Clock;
  /** Default: defaultKubeConfig() (service account in a pod, else KUBECONFIG, else ~/.kube/config). */
  readonly kubeConfig?: KubeConfig;
  readonly requestTimeoutMs?: number;
}

/** The agent's flags → its Node's event sink (agent/main.ts and the tests build it the same way). */
export function kubernetesNodeEventsFromConfig(config: Pick<AgentConfig, 'nodeName'>, deps: NodeEventsDeps): KubernetesNodeEvents {
  const api = eventsApi(deps.kubeConfig ?? defaultKubeConfig(), { timeoutMs: deps.requestTimeoutMs ?? 10_000 });
  return new KubernetesNodeEvents({ api, nodeName: () => config.nodeName, clock: deps.clock, logger: deps.logger });
}
