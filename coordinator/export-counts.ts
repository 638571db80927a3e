// The service export keys of each cluster, for the per-cluster export limits (services.ts): read
// from the bucket once per term (keys only, on the first export or unexport), then kept in step with
// the leader's own writes — only the leader writes `services.*`. Until read, nothing is tracked.
import type { KV } from '@nats-io/kv';
import { serviceKeys } from '../protocol/service.ts';

/** Every export key in the bucket (keys only: no record is read or verified). */
export async function bucketExportKeys(kv: KV): Promise<string[]> {
  const out: string[] = [];
  for await (const k of await kv.keys(serviceKeys.filter)) out.push(k);
  return out;
}

export class ExportCounts {
  private byCluster: Map<string, Set<string>> | undefined;
  private loading: Promise<Map<string, Set<string>>> | undefined;

  /** `list`: every key under `services.>` in the bucket. */
  constructor(private readonly list: () => Promise<Iterable<string>>) {}

  /** The export keys of `cluster` (a live set, kept current). The first call reads the bucket; a failed read is tried again by the next. */
  async of(cluster: string): Promise<ReadonlySet<string>> {
    const all = await this.load();
    let keys = all.get(cluster);
    if (!keys) all.set(cluster, (keys = new Set()));
    return keys;
  }

  /** An export was written at `key` (new or updated). */
  added(cluster: string, key: string): void {
    if (!this.byCluster) return;
    let keys = this.byCluster.get(cluster);
    if (!keys) this.byCluster.set(cluster, (keys = new Set()));
    keys.add(key);
  }

  /** The export at `key` is gone. */
  removed(cluster: string, key: string): void {
    this.byCluster?.get(cluster)?.delete(key);
  }

  private load(): Promise<Map<string, Set<string>>> {
    this.loading ??= this.read().catch((err: unknown) => {
      this.loading = undefined;
      throw err;
    });
    return this.loading;
  }

  private async read(): Promise<Map<string, Set<string>>> {
    const all = exportKeysByCluster(await this.list());
    this.byCluster = all;
    return all;
  }
}

/** Export keys (`services.…`) grouped by the cluster that exports them; keys of other shapes are left out. */
export function exportKeysByCluster(keys: Iterable<string>): Map<string, Set<string>> {
  const all = new Map<string, Set<string>>();
  for (const key of keys) {
    const ref = serviceKeys.parse(key);
    if (!ref) continue;
    let inCluster = all.get(ref.cluster);
    if (!inCluster) all.set(ref.cluster, (inCluster = new Set()));
    inCluster.add(key);
  }
  return all;
}
