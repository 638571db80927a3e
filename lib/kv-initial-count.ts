// How many entries a KV watcher's initial snapshot holds. @nats-io/kv 3.x fetches this (the push
// consumer's num_pending) when the watch is created but exposes it only on the iterator's internal
// `_data`; undefined if that ever changes (callers then fall back to a quiet period).
import type { KvWatchEntry } from '@nats-io/kv';
import type { QueuedIterator } from '@nats-io/transport-node';

export async function initialCount(w: QueuedIterator<KvWatchEntry>): Promise<number | undefined> {
  const data = (w as unknown as { _data?: { info?: (cached: boolean) => Promise<{ num_pending?: unknown }> } })._data;
  if (typeof data?.info !== 'function') return undefined;
  try {
    const info = await data.info(true);
    return typeof info.num_pending === 'number' ? info.num_pending : undefined;
  } catch {
    return undefined;
  }
}
