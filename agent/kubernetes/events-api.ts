// The two Kubernetes calls Node events need, through the real @kubernetes/client-node: create a
// core/v1 Event about a Node and replace it (a repeat bumps its count). Every call has a timeout;
// failures surface as the client's ApiException (apiStatus() tells a 404 or 409).
import { CoreV1Api, CoreV1Event, V1EventSource, V1ObjectMeta, V1ObjectReference, type KubeConfig } from '@kubernetes/client-node';
import { requestOptions } from './api-requests.ts';

/** One core/v1 Event about a Node, as plain data. */
export interface NodeEventBody {
  readonly namespace: string;
  readonly name: string;
  /** Set when replacing: the version we last saw (a stale one is a 409). */
  readonly resourceVersion?: string | undefined;
  readonly node: string;
  readonly reason: string;
  readonly message: string;
  readonly type: 'Warning' | 'Normal';
  readonly count: number;
  readonly firstTimestamp: Date;
  readonly lastTimestamp: Date;
  /** source.component and reportingComponent. */
  readonly component: string;
}

/** What the API server answered (the name and version a replace needs). */
export interface StoredEvent {
  readonly name: string;
  readonly resourceVersion: string | undefined;
}

export interface EventsApi {
  create(body: NodeEventBody): Promise<StoredEvent>;
  replace(body: NodeEventBody): Promise<StoredEvent>;
}

/** The client's model of the body (its classes; the node as involvedObject, as the kubelet sets it). */
function toCoreV1Event(b: NodeEventBody): CoreV1Event {
  const metadata = Object.assign(new V1ObjectMeta(), { name: b.name, namespace: b.namespace, ...(b.resourceVersion === undefined ? {} : { resourceVersion: b.resourceVersion }) });
  const involvedObject = Object.assign(new V1ObjectReference(), { kind: 'Node', apiVersion: 'v1', name: b.node, uid: b.node });
  const source = Object.assign(new V1EventSource(), { component: b.component, host: b.node });
  return Object.assign(new CoreV1Event(), {
    metadata,
    involvedObject,
    source,
    reason: b.reason,
    message: b.message,
    type: b.type,
    count: b.count,
    firstTimestamp: b.firstTimestamp,
    lastTimestamp: b.lastTimestamp,
    reportingComponent: b.component,
    reportingInstance: b.node,
  });
}

const stored = (e: CoreV1Event, fallback: string): StoredEvent => ({ name: e.metadata.name ?? fallback, resourceVersion: e.metadata.resourceVersion });

export function eventsApi(kc: KubeConfig, o: { readonly timeoutMs: number }): EventsApi {
  const core = kc.makeApiClient(CoreV1Api);
  const opts = () => requestOptions({ timeoutMs: o.timeoutMs });
  return {
    create: async (b) => stored(await core.createNamespacedEvent({ namespace: b.namespace, body: toCoreV1Event(b) }, opts()), b.name),
    replace: async (b) => stored(await core.replaceNamespacedEvent({ name: b.name, namespace: b.namespace, body: toCoreV1Event(b) }, opts()), b.name),
  };
}
