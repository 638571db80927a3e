// Follows `revoked.>` in the bucket for the leader: the current revocations first, then every change,
// handed over in stream order. If the watcher ends (NATS outage, consumer lost) it is re-created
// from the revision after the last one seen, so no change in between is missed: with history 1 the
// bucket keeps the newest message of every key, a DEL marker included.
import type { KV, KvWatchEntry } from '@nats-io/kv';
import type { Clock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { kvKeys, revokedNameFromKey } from '../protocol/subjects.ts';
import type { Revocation } from '../protocol/messages.ts';
import type { StateStore, StoredRecord } from './store.ts';
import { backoffDelay } from '../lib/backoff.ts';

/** One change: a revocation (stored) or its removal (null), at KV `revision`. */
export type RevocationChange = (name: string, stored: StoredRecord<Revocation> | null, revision: number) => Promise<void>;

export interface RevocationWatchDeps {
  readonly kv: KV;
  readonly store: StateStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly signal: AbortSignal;
}

/** Runs until `signal` aborts; `onChange` is awaited, so changes are applied one at a time, in order. */
export async function watchRevocations(deps: RevocationWatchDeps, onChange: RevocationChange): Promise<void> {
  await watchKeys(deps, kvKeys.revokedFilter, 'revocation', (e) => deliver(deps, e, onChange));
}

/**
 * Follows every key under `filter` (current values first, then each change, in stream order) and
 * hands each entry to `onEntry`, awaited. Re-created from the revision after the last one seen when
 * it ends, so nothing in between is missed.
 */
export async function watchKeys(deps: Omit<RevocationWatchDeps, 'store'>, filter: string, what: string, onEntry: (e: KvWatchEntry) => Promise<void>): Promise<void> {
  const { kv, clock, logger, signal } = deps;
  let lastRevision = 0;
  for (let failures = 0; !signal.aborted; ) {
    try {
      const watcher = await kv.watch({
        key: filter,
        ...(lastRevision > 0 ? { resumeFromRevision: lastRevision + 1 } : {}),
      });
      const stop = (): void => watcher.stop();
      // The term may have ended while kv.watch() was pending: an abort that already fired would
      // never reach a listener added now, and this loop would wait on the watcher forever.
      if (signal.aborted) {
        watcher.stop();
        return;
      }
      signal.addEventListener('abort', stop, { once: true });
      try {
        for await (const e of watcher as AsyncIterable<KvWatchEntry>) {
          if (signal.aborted) break;
          failures = 0;
          await onEntry(e);
          lastRevision = Math.max(lastRevision, e.revision);
        }
      } finally {
        signal.removeEventListener('abort', stop);
        watcher.stop();
      }
      if (signal.aborted) return;
      logger.warn({ resumeFrom: lastRevision + 1 }, `${what} watch ended; re-creating it`);
    } catch (err) {
      if (signal.aborted) return;
      logger.warn({ err: errorMessage(err) }, `cannot watch ${what}s; retrying`);
    }
    failures++;
    await clock.sleep(backoffDelay({ initialMs: 250, maxMs: 5000 }, failures), signal);
  }
}

async function deliver(deps: RevocationWatchDeps, e: KvWatchEntry, onChange: RevocationChange): Promise<void> {
  const name = revokedNameFromKey(e.key);
  if (name === undefined) return;
  if (e.operation !== 'PUT') {
    await onChange(name, null, e.revision);
    return;
  }
  const stored = await deps.store.decodeRevocation(e);
  // A malformed entry is logged by the store and changes nothing: an earlier revocation stays in force.
  if (stored) await onChange(name, stored, e.revision);
}
