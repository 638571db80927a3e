// List+watch of ONE Node (fieldSelector metadata.name=<node>), resumable: re-watches from the last
// resourceVersion when a watch ends, re-lists on 410 Gone, and backs off while the API server is down.
import { CoreV1Api, Watch, type KubeConfig, type V1Node } from '@kubernetes/client-node';
import type { Clock } from '../../lib/clock.ts';
import { ClockTimer } from '../../lib/clock-timer.ts';
import type { Logger } from '../../lib/logger.ts';
import { apiErrorMessage, requestOptions } from './api-requests.ts';
import { backoffDelay, type BackoffPolicy, type Random } from '../../lib/backoff.ts';

/** ±20 % jitter so a fleet of agents does not reconnect in lockstep. */
export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 30_000, jitter: 0.2 };

export interface NodeWatchOptions {
  readonly kubeConfig: KubeConfig;
  readonly nodeName: string;
  readonly logger: Logger;
  readonly clock: Clock;
  /**
   * Called with the Node after each list and each ADDED/MODIFIED event, and with null when the Node
   * does not exist (yet, or any more). Objects from watch events are the raw JSON (times are strings).
   */
  readonly onNode: (node: V1Node | null) => void;
  readonly backoff?: BackoffPolicy;
  readonly random?: Random;
  /** Asks the server to end each watch after this long; it is then re-opened from the last resourceVersion. */
  readonly watchTimeoutSeconds?: number;
  readonly requestTimeoutMs?: number;
}

type WatchEnd =
  | { readonly kind: 'closed'; readonly rv: string; readonly events: number }
  | { readonly kind: 'expired'; readonly rv: string }
  | { readonly kind: 'failed'; readonly rv: string; readonly events: number; readonly error: unknown };

/** Runs until `signal` aborts. Never rejects: every failure is logged and retried with backoff. */
export async function runNodeWatch(opts: NodeWatchOptions, signal: AbortSignal): Promise<void> {
  const api = opts.kubeConfig.makeApiClient(CoreV1Api);
  const watch = new Watch(opts.kubeConfig);
  const backoff = opts.backoff ?? DEFAULT_BACKOFF;
  const log = opts.logger.child({ component: 'kubernetes-node-watch', node: opts.nodeName });
  const fieldSelector = `metadata.name=${opts.nodeName}`;
  let rv: string | undefined;
  let failures = 0;

  const retryLater = async (what: string, err: unknown): Promise<void> => {
    failures++;
    const delay = backoffDelay(backoff, failures, opts.random);
    log.warn({ err: apiErrorMessage(err), retryInMs: delay, failures }, `${what} failed; retrying`);
    await opts.clock.sleep(delay, signal);
  };

  while (!signal.aborted) {
    if (rv === undefined) {
      try {
        const list = await api.listNode({ fieldSelector }, requestOptions({ timeoutMs: opts.requestTimeoutMs ?? 30_000, signal }));
        const listRv = list.metadata?.resourceVersion;
        if (listRv === undefined || listRv === '') throw new Error('node list has no metadata.resourceVersion');
        rv = listRv;
        failures = 0;
        opts.onNode(list.items.find((n) => n.metadata?.name === opts.nodeName) ?? null);
      } catch (err) {
        if (signal.aborted) break;
        await retryLater('listing the Node', err);
        continue;
      }
    }

    const started = opts.clock.now();
    const end = await watchOnce(watch, opts, fieldSelector, rv, signal);
    if (signal.aborted) break;
    rv = end.rv;
    if (end.kind === 'expired') {
      // Our resourceVersion was compacted away: events were missed, so start over from a fresh list.
      log.info({ resourceVersion: rv }, 'watch expired (410 Gone); re-listing the Node');
      rv = undefined;
      continue;
    }
    if (end.kind === 'failed') {
      if (end.events > 0) failures = 0;
      await retryLater('watching the Node', end.error);
      continue;
    }
    // A normal end (server timeout, API server going away cleanly). Re-watch at once unless the
    // server keeps closing immediately, which would otherwise spin.
    if (end.events > 0 || opts.clock.now() - started >= 1000) failures = 0;
    else await retryLater('watching the Node', new Error('watch closed immediately without events'));
  }
}

function watchOnce(watch: Watch, opts: NodeWatchOptions, fieldSelector: string, rv: string, signal: AbortSignal): Promise<WatchEnd> {
  const timeoutSeconds = opts.watchTimeoutSeconds ?? 300;
  // A half-open connection delivers nothing, forever; the server ends the watch after timeoutSeconds,
  // so silence well past that means the connection is dead.
  const stallMs = (timeoutSeconds + 30) * 1000;
  return new Promise<WatchEnd>((resolve) => {
    let latest = rv;
    let events = 0;
    let expired = false;
    let failure: unknown;
    let ended = false;
    let controller: AbortController | undefined;

    const finish = (err: unknown): void => {
      if (ended) return;
      ended = true;
      stall.cancel();
      signal.removeEventListener('abort', onAbort);
      controller?.abort();
      if (expired) resolve({ kind: 'expired', rv: latest });
      else if (failure !== undefined || (err !== null && err !== undefined)) resolve({ kind: 'failed', rv: latest, events, error: failure ?? err });
      else resolve({ kind: 'closed', rv: latest, events });
    };
    const onAbort = (): void => finish(new Error('stopped'));
    // Silence is measured on the injected clock; finish() cannot throw.
    const stall = new ClockTimer({ clock: opts.clock, fire: () => finish(new Error(`watch silent for ${stallMs} ms; reconnecting`)), onError: (err: unknown) => finish(err) });
    const armStallTimer = (): void => stall.arm(stallMs);

    signal.addEventListener('abort', onAbort, { once: true });
    armStallTimer();

    const onEvent = (type: string, obj: unknown): void => {
      if (ended) return;
      armStallTimer();
      const objectRv = resourceVersionOf(obj);
      switch (type) {
        case 'ADDED':
        case 'MODIFIED':
          events++;
          if (objectRv) latest = objectRv;
          opts.onNode(obj as V1Node);
          break;
        case 'DELETED':
          events++;
          if (objectRv) latest = objectRv;
          opts.onNode(null);
          break;
        case 'BOOKMARK':
          events++;
          if (objectRv) latest = objectRv;
          break;
        case 'ERROR':
          if (statusCode(obj) === 410) expired = true;
          else failure = new Error(`watch ERROR event: ${JSON.stringify(obj).slice(0, 300)}`);
          finish(null);
          break;
        default:
          break;
      }
    };

    watch
      .watch(
        '/api/v1/nodes',
        { fieldSelector, resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds },
        onEvent,
        (err: unknown) => finish(err),
      )
      .then(
        (c) => {
          controller = c;
          if (ended) c.abort();
        },
        (err: unknown) => finish(err),
      );
  });
}

function resourceVersionOf(obj: unknown): string | undefined {
  if (obj === null || typeof obj !== 'object' || !('metadata' in obj)) return undefined;
  const md = obj.metadata;
  if (md === null || typeof md !== 'object' || !('resourceVersion' in md)) return undefined;
  return typeof md.resourceVersion === 'string' ? md.resourceVersion : undefined;
}

function statusCode(obj: unknown): number | undefined {
  return obj !== null && typeof obj === 'object' && 'code' in obj && typeof obj.code === 'number' ? obj.code : undefined;
}
