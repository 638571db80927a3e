// A JetStream request retried while the cluster cannot serve it yet, bounded by a deadline. After a
// NATS server loss the bucket's stream has no leader until the surviving servers elect one (SIGKILL:
// 4–6 s with nats-server 2.9; a clean stop hands leadership over in ~0.1 s), and a consumer create
// the meta layer places on the lost server is never answered: a request sent meanwhile times out
// or finds no responders. NATS's advice (ADR-22, "JetStream Publish Retries on No Responders") is a
// short wait and another try, bounded by the caller's deadline — what this does, on the project's
// backoff (lib/backoff.ts) and an injected clock. Each attempt's own timeout is the JetStream
// client's (`jetstream(nc, { timeout })`); other errors (a CAS conflict, a missing stream) end it.
import { backoffDelay, type BackoffPolicy, type Random } from './backoff.ts';
import type { Clock } from './clock.ts';
import { CrosslinkError, errorMessage } from './errors.ts';

/** The default waits: 250 ms (NATS's retry wait) doubling to 2 s, ±20 %. */
export const JETSTREAM_RETRY_POLICY: BackoffPolicy = Object.freeze({ initialMs: 250, maxMs: 2000, jitter: 0.2 });

export interface JetStreamRetryOptions {
  readonly clock: Clock;
  /** How long one operation keeps retrying, from its first attempt (ms). An attempt started before it runs to its own timeout. */
  readonly deadlineMs: number;
  readonly policy?: BackoffPolicy;
  readonly random?: Random;
  /** Stops retrying (the last error is thrown as it is). */
  readonly signal?: AbortSignal;
  /** Told before each wait: what, why, the attempt that failed (1, 2, …), the wait. For "waiting for …" reports. */
  readonly onRetry?: (what: string, err: unknown, attempt: number, retryInMs: number) => void;
}

/** The operation was not served before its deadline: names it, the attempts, the time and the last error (its cause). */
export class JetStreamUnavailableError extends CrosslinkError {
  override name = 'JetStreamUnavailableError';
  constructor(
    readonly what: string,
    readonly attempts: number,
    readonly elapsedMs: number,
    options: { cause: unknown },
  ) {
    super(
      `${what}: not served by NATS JetStream in ${attempts} attempt${attempts === 1 ? '' : 's'} over ${elapsedMs} ms (last: ${errorMessage(options.cause)}); ` +
        'after a NATS server loss the bucket may still be electing a stream leader — check the NATS servers, then run the command again',
      options,
    );
  }
}

/**
 * A read answered by a replica that has not applied a revision the caller knows exists (its own
 * write): direct gets and R1 consumers may be served by any replica of the stream. Asked again.
 */
export class ReplicaBehindError extends CrosslinkError {
  override name = 'ReplicaBehindError';
  constructor(
    readonly what: string,
    readonly seen: number,
    readonly wanted: number,
  ) {
    super(`${what}: the replica that answered had revision ${seen}, not yet ${wanted}`);
  }
}

/** True when the request may not have been served yet and may be served later: timeout, no responders, a 503. */
export function isJetStreamUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  switch (err.name) {
    case 'TimeoutError': // nats-core: no reply in the request's timeout (maybe served, reply lost)
    case 'NoResponders':
    case 'JetStreamNotEnabled': // nats.js's name for "no responders" on a JetStream subject
    case 'ReplicaBehindError':
      return true;
    case 'RequestError':
      return isJetStreamUnavailable(err.cause);
    case 'JetStreamApiError':
    case 'JetStreamStatusError': {
      const e = err as { status?: unknown; code?: unknown };
      // An API error's HTTP-like status (10008 "JetStream system temporarily unavailable" is 503); a status message's code.
      return e.status === 503 || (err.name === 'JetStreamStatusError' && e.code === 503);
    }
    default:
      return false;
  }
}

/** True when a failed attempt may still have been applied (a timeout: the request may have landed, its reply lost). */
export function outcomeUnknown(err: unknown): boolean {
  return err instanceof Error && (err.name === 'TimeoutError' || (err.name === 'RequestError' && outcomeUnknown(err.cause)));
}

/**
 * Runs `attempt` until it resolves, retrying errors isJetStreamUnavailable accepts after a backoff
 * wait, until `deadlineMs` from the first attempt has passed: then JetStreamUnavailableError naming
 * `what`. Any other error is thrown at once. `attempt` is told its number (1, 2, …).
 */
export async function retryJetStream<T>(what: string, attempt: (n: number) => Promise<T>, o: JetStreamRetryOptions): Promise<T> {
  const start = o.clock.now();
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (!isJetStreamUnavailable(err) || o.signal?.aborted === true) throw err;
      const left = start + o.deadlineMs - o.clock.now();
      if (left <= 0) throw new JetStreamUnavailableError(what, n, o.clock.now() - start, { cause: err });
      const wait = Math.min(left, backoffDelay(o.policy ?? JETSTREAM_RETRY_POLICY, n, o.random));
      o.onRetry?.(what, err, n, wait);
      await o.clock.sleep(wait, o.signal);
    }
  }
}
