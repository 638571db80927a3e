// The agent's NodeSource in Kubernetes mode: its identity comes from its own Node object (watched),
// and it publishes its state back onto that Node (annotations + the CrosslinkReady condition).
import { CoreV1Api, type ConfigurationOptions, type KubeConfig, type V1Node } from '@kubernetes/client-node';
import { systemClock, type Clock } from '../../lib/clock.ts';
import { ValidationError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { ClusterName, LocationName, NodeName } from '../../protocol/messages.ts';
import type { NodeIdentity, NodeSource, PublishedState } from '../plan/model.ts';
import { CONDITION_TYPE, type IgnoredValue } from './annotations.ts';
import { PatchContentType, apiErrorMessage, apiStatus, requestOptions } from './api-requests.ts';
import { defaultKubeConfig } from './kubeconfig.ts';
import { deriveIdentity, nodeFacts, sameIdentity, type DerivedIdentity, type IdentityDefaults } from './node-identity.ts';
import { annotationPatch, conditionPatch, findCondition, withdrawAnnotationPatch, type ConditionInputs } from './node-publication.ts';
import { backoffDelay, type BackoffPolicy } from '../../lib/backoff.ts';
import { DEFAULT_BACKOFF, runNodeWatch } from './node-watch.ts';

export interface KubernetesNodeSourceOptions {
  /** Default: the pod's service account when KUBERNETES_SERVICE_HOST is set, else ~/.kube/config. */
  readonly kubeConfig?: KubeConfig;
  /** This node's name (the DaemonSet passes spec.nodeName as NODE_NAME through the downward API). */
  readonly nodeName: string;
  readonly cluster: string;
  readonly defaults: IdentityDefaults;
  readonly logger: Logger;
  /** Used for backoff sleeps (must honour the abort signal) and condition timestamps. */
  readonly clock?: Clock;
  readonly backoff?: BackoffPolicy;
  readonly watchTimeoutSeconds?: number;
  readonly requestTimeoutMs?: number;
  /** An unchanged CrosslinkReady condition is re-written this often so lastHeartbeatTime stays fresh. Default 5 min. */
  readonly heartbeatRefreshMs?: number;
  /** Immediate re-read-and-retry attempts on 409 Conflict before falling back to backoff. Default 5. */
  readonly conflictRetries?: number;
}

export interface KubernetesNodeSource extends NodeSource {
  /** Removes the annotations and condition this agent wrote (uninstall with --cleanup). Never throws. */
  withdraw(): Promise<void>;
  /** Invalid annotation/label values currently ignored (also in the condition message). */
  ignored(): readonly IgnoredValue[];
}

export function createKubernetesNodeSource(options: KubernetesNodeSourceOptions): KubernetesNodeSource {
  validateOptions(options);
  return new NodeObjectSource(options);
}

function validateOptions(o: KubernetesNodeSourceOptions): void {
  if (!NodeName.safeParse(o.nodeName).success) {
    throw new ValidationError('node name (NODE_NAME)', o.nodeName, 'must be the Kubernetes node name: a DNS subdomain (set it from spec.nodeName via the downward API)');
  }
  if (!ClusterName.safeParse(o.cluster).success) throw new ValidationError('cluster', o.cluster, 'must be a DNS label: lowercase letters, digits and "-"');
  if (o.defaults.location !== undefined && !LocationName.safeParse(o.defaults.location).success) {
    throw new ValidationError('location', o.defaults.location, 'must be 1-63 letters, digits, "-", "_" or "."');
  }
  if (!Number.isInteger(o.defaults.listenPort) || o.defaults.listenPort < 1 || o.defaults.listenPort > 65535) {
    throw new ValidationError('listen port', o.defaults.listenPort, 'must be an integer from 1 to 65535');
  }
}

class NodeObjectSource implements KubernetesNodeSource {
  private readonly api: CoreV1Api;
  private readonly kubeConfig: KubeConfig;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly stopper = new AbortController();
  private readonly listeners: ((identity: NodeIdentity) => void)[] = [];
  private tasks: Promise<void>[] = [];

  /** From the list/watch stream only (ordered), so identity never flips back to an older state. */
  private derived: DerivedIdentity | undefined;
  private identity: NodeIdentity | null = null;
  private started = false;
  private resolveFirst: ((identity: NodeIdentity) => void) | undefined;
  private lastLogged = { missing: null as string | null, ignored: '' };
  private nodeMissing = false;

  /** Newest Node seen from any response (watch or our own patches), for publish diffs. */
  private latest: V1Node | undefined;
  private desired: PublishedState | undefined;
  private publishing: Promise<void> | undefined;
  private publishAgain = false;
  private publishFailures = 0;
  private retryScheduled = false;

  constructor(private readonly opts: KubernetesNodeSourceOptions) {
    this.kubeConfig = opts.kubeConfig ?? defaultKubeConfig();
    this.api = this.kubeConfig.makeApiClient(CoreV1Api);
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger.child({ component: 'kubernetes-node-source', node: opts.nodeName });
  }

  start(signal: AbortSignal): Promise<NodeIdentity> {
    if (this.started) return Promise.reject(new Error('kubernetes node source already started'));
    this.started = true;
    const first = new Promise<NodeIdentity>((resolve, reject) => {
      this.resolveFirst = resolve;
      const onAbort = (): void => {
        // Reject first: aborting the stopper rejects too, with a message that does not say what we waited for.
        reject(new Error(`stopped before node ${this.opts.nodeName} could be read from the API server`));
        this.stopper.abort();
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      this.stopper.signal.addEventListener('abort', () => reject(new Error('kubernetes node source stopped')), { once: true });
    });
    this.track(
      runNodeWatch(
        {
          kubeConfig: this.kubeConfig,
          nodeName: this.opts.nodeName,
          logger: this.opts.logger,
          clock: this.clock,
          onNode: (node) => this.onNode(node),
          ...(this.opts.backoff ? { backoff: this.opts.backoff } : {}),
          ...(this.opts.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: this.opts.watchTimeoutSeconds } : {}),
          ...(this.opts.requestTimeoutMs !== undefined ? { requestTimeoutMs: this.opts.requestTimeoutMs } : {}),
        },
        this.stopper.signal,
      ),
    );
    this.track(this.refreshHeartbeats());
    return first;
  }

  onChange(listener: (identity: NodeIdentity) => void): void {
    this.listeners.push(listener);
  }

  ignored(): readonly IgnoredValue[] {
    return this.derived?.ignored ?? [];
  }

  async publish(state: PublishedState): Promise<void> {
    this.desired = state;
    await this.flushPublish();
  }

  async withdraw(): Promise<void> {
    this.desired = undefined;
    await this.publishing;
    try {
      // Not tied to the stop signal: withdrawing is part of shutting down.
      const node = await this.api.readNode({ name: this.opts.nodeName }, this.requestOpts(undefined, false));
      const annotations = withdrawAnnotationPatch(node.metadata?.annotations ?? {});
      if (annotations) {
        await this.api.patchNode({ name: this.opts.nodeName, body: { metadata: { annotations } } }, this.requestOpts(PatchContentType.merge, false));
      }
      if (findCondition(node.status?.conditions)) {
        // Strategic merge "$patch: delete" removes just our entry from the list kubelet also writes to.
        await this.api.patchNodeStatus(
          { name: this.opts.nodeName, body: { status: { conditions: [{ type: CONDITION_TYPE, $patch: 'delete' }] } } },
          this.requestOpts(PatchContentType.strategic, false),
        );
      }
      this.log.info('removed crosslink annotations and condition from the Node');
    } catch (err) {
      this.log.warn({ err: apiErrorMessage(err) }, 'could not remove crosslink annotations/condition from the Node');
    }
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    await Promise.allSettled([...this.tasks, this.publishing]);
  }

  // ---- identity ----

  private onNode(node: V1Node | null): void {
    if (node === null) {
      if (!this.nodeMissing) this.log.warn('Node object not found; keeping the last identity and waiting for it to (re)appear');
      this.nodeMissing = true;
      return;
    }
    this.nodeMissing = false;
    this.noteLatest(node);
    const derived = deriveIdentity(nodeFacts(node), { cluster: this.opts.cluster, defaults: this.opts.defaults });
    this.derived = derived;
    this.logDerivation(derived);

    if (derived.identity && !sameIdentity(derived.identity, this.identity)) {
      const previous = this.identity;
      this.identity = derived.identity;
      if (previous === null && this.resolveFirst) {
        this.log.info({ identity: derived.identity }, 'node identity read from the Node object');
        this.resolveFirst(derived.identity);
        this.resolveFirst = undefined;
      } else {
        this.log.info({ identity: derived.identity }, 'node identity changed');
        for (const listener of this.listeners) {
          try {
            listener(derived.identity);
          } catch (err) {
            this.log.error({ err }, 'identity change listener threw');
          }
        }
      }
    }
    // Someone removed our annotations, or the condition message must change (ignored values changed).
    if (this.desired && this.needsPublish(node, this.desired, Number.POSITIVE_INFINITY)) void this.flushPublish();
  }

  private logDerivation(derived: DerivedIdentity): void {
    const ignoredKey = derived.ignored.map((i) => i.message).join('\n');
    if (ignoredKey !== this.lastLogged.ignored) {
      for (const i of derived.ignored) this.log.warn({ annotation: i.field, value: i.value, allowed: i.allowed }, i.message);
    }
    if (derived.missing !== null && derived.missing !== this.lastLogged.missing) {
      this.log.warn({ missing: derived.missing }, `cannot register this node yet: ${derived.missing}`);
    }
    this.lastLogged = { missing: derived.missing, ignored: ignoredKey };
  }

  // ---- publishing ----

  /** Serialised: one publish in flight; a newer desired state queued during it is written right after. */
  private flushPublish(): Promise<void> {
    this.publishAgain = true;
    this.publishing ??= this.publishLoop().finally(() => {
      this.publishing = undefined;
    });
    return this.publishing;
  }

  private async publishLoop(): Promise<void> {
    while (this.publishAgain && !this.stopper.signal.aborted) {
      this.publishAgain = false;
      const state = this.desired;
      if (!state) return;
      try {
        await this.publishOnce(state);
        this.publishFailures = 0;
      } catch (err) {
        this.publishFailures++;
        this.log.warn({ err: apiErrorMessage(err), failures: this.publishFailures }, 'publishing state on the Node failed; will retry');
        this.scheduleRetry();
        return;
      }
    }
  }

  private scheduleRetry(): void {
    if (this.retryScheduled) return;
    this.retryScheduled = true;
    const delay = backoffDelay(this.opts.backoff ?? DEFAULT_BACKOFF, this.publishFailures);
    this.track(
      this.clock.sleep(delay, this.stopper.signal).then(async () => {
        this.retryScheduled = false;
        if (!this.stopper.signal.aborted) await this.flushPublish();
      }),
    );
  }

  /** Background work that stop() waits for; removed when done so a long-running agent does not accumulate it. */
  private track(task: Promise<void>): void {
    const tracked: Promise<void> = task.finally(() => {
      this.tasks = this.tasks.filter((t) => t !== tracked);
    });
    this.tasks.push(tracked);
  }

  private async refreshHeartbeats(): Promise<void> {
    const every = this.heartbeatRefreshMs();
    while (!this.stopper.signal.aborted) {
      await this.clock.sleep(every, this.stopper.signal);
      if (this.desired && !this.stopper.signal.aborted) await this.flushPublish();
    }
  }

  private async publishOnce(state: PublishedState): Promise<void> {
    const name = this.opts.nodeName;
    let node = this.latest ?? this.noteLatest(await this.api.readNode({ name }, this.requestOpts()));
    const annotations = annotationPatch(node.metadata?.annotations ?? {}, state);
    if (annotations) {
      // Merge patch of our own keys only, no resourceVersion: nothing to conflict with.
      node = this.noteLatest(await this.api.patchNode({ name, body: { metadata: { annotations } } }, this.requestOpts(PatchContentType.merge)));
    }
    const retries = this.opts.conflictRetries ?? 5;
    for (let attempt = 0; ; attempt++) {
      // 90%: the refresh timer fires every heartbeatRefreshMs and must find the heartbeat due.
      const condition = conditionPatch(findCondition(node.status?.conditions), this.conditionInputs(state, this.heartbeatRefreshMs() * 0.9));
      if (!condition) return;
      try {
        // resourceVersion makes this conditional: lastTransitionTime was computed from what we read.
        // Strategic merge keys conditions by type, so kubelet's conditions are left alone.
        const body = { metadata: { resourceVersion: node.metadata?.resourceVersion }, status: { conditions: [condition] } };
        this.noteLatest(await this.api.patchNodeStatus({ name, body }, this.requestOpts(PatchContentType.strategic)));
        this.log.debug({ status: condition.status, reason: condition.reason }, 'published CrosslinkReady condition');
        return;
      } catch (err) {
        if (apiStatus(err) !== 409 || attempt >= retries) throw err;
        this.log.debug({ attempt: attempt + 1 }, 'Node changed under us (409 Conflict); re-reading and retrying');
        node = this.noteLatest(await this.api.readNode({ name }, this.requestOpts()));
      }
    }
  }

  private needsPublish(node: V1Node, state: PublishedState, heartbeatRefreshMs: number): boolean {
    return (
      annotationPatch(node.metadata?.annotations ?? {}, state) !== null ||
      conditionPatch(findCondition(node.status?.conditions), this.conditionInputs(state, heartbeatRefreshMs)) !== null
    );
  }

  private conditionInputs(state: PublishedState, heartbeatRefreshMs: number): ConditionInputs {
    return {
      state,
      ignored: this.derived?.ignored ?? [],
      missing: this.derived?.missing ?? null,
      now: this.clock.now(),
      heartbeatRefreshMs,
    };
  }

  private heartbeatRefreshMs(): number {
    return this.opts.heartbeatRefreshMs ?? 5 * 60_000;
  }

  /** Keeps the newer of what we hold and `node` (resourceVersions are etcd revisions: numeric in practice). */
  private noteLatest(node: V1Node): V1Node {
    const held = Number(this.latest?.metadata?.resourceVersion);
    const seen = Number(node.metadata?.resourceVersion);
    if (this.latest === undefined || !Number.isFinite(held) || !Number.isFinite(seen) || seen >= held) this.latest = node;
    return node;
  }

  private requestOpts(contentType?: string, stoppable = true): ConfigurationOptions {
    return requestOptions({
      timeoutMs: this.opts.requestTimeoutMs ?? 30_000,
      ...(stoppable ? { signal: this.stopper.signal } : {}),
      ...(contentType !== undefined ? { contentType } : {}),
    });
  }
}
