// An in-memory stand-in for the coordinator's KV bucket (the part StateStore uses) whose writes can
// be held: while `held` is set, each write is recorded when issued and completes only when the test
// releases or fails it, so a test sees which writes were in flight at the same time. Compare-and-set
// is checked when a write completes, as the server would; a conflict throws JetStream's error shape.
import type { KV, KvEntry } from '@nats-io/kv';

interface Stored {
  readonly value: Uint8Array;
  readonly revision: number;
  readonly operation: 'PUT' | 'DEL';
}

/** A write the test holds: `release` applies it, `fail` rejects it without applying, `landThenFail` applies it and rejects (a reply lost). */
export interface HeldWrite {
  readonly key: string;
  /** The value as written (JSON text). */
  readonly text: string;
  release(): void;
  fail(err: Error): void;
  landThenFail(err: Error): void;
}

const casConflict = (key: string): Error => Object.assign(new Error(`wrong last sequence for ${key}`), { name: 'JetStreamApiError', code: 10071 });

export class GatedKv {
  /** While true, writes wait in `pending` until released. */
  held = false;
  readonly pending: HeldWrite[] = [];
  /** The key of every write applied, in order (a double apply shows as the key twice). */
  readonly applied: string[] = [];
  private seq = 0;
  private readonly data = new Map<string, Stored>();

  /** The KV as StateStore sees it. */
  get kv(): KV {
    return this as unknown as KV;
  }

  /** Releases every held write and stops holding new ones. */
  releaseAll(): void {
    this.held = false;
    for (const w of this.pending.splice(0)) w.release();
  }

  create(key: string, value: string): Promise<number> {
    return this.write(key, value, (old) => old === undefined || old.operation !== 'PUT');
  }

  update(key: string, value: string, revision: number): Promise<number> {
    return this.write(key, value, (old) => old?.revision === revision);
  }

  get(key: string): Promise<KvEntry | null> {
    const s = this.data.get(key);
    return Promise.resolve(s ? entry(key, s) : null);
  }

  delete(key: string, opts?: { previousSeq?: number }): Promise<void> {
    const old = this.data.get(key);
    if (opts?.previousSeq !== undefined && old?.revision !== opts.previousSeq) return Promise.reject(casConflict(key));
    this.data.set(key, { value: new Uint8Array(), revision: ++this.seq, operation: 'DEL' });
    return Promise.resolve();
  }

  /** Every current entry under `key` (a filter ending in `>` or exact), in revision order. */
  history(opts: { key: string }): Promise<AsyncIterable<KvEntry>> {
    const prefix = opts.key.endsWith('>') ? opts.key.slice(0, -1) : undefined;
    const list = [...this.data]
      .filter(([k]) => (prefix === undefined ? k === opts.key : k.startsWith(prefix)))
      .sort((a, b) => a[1].revision - b[1].revision)
      .map(([k, s]) => entry(k, s));
    return Promise.resolve(
      (async function* (): AsyncGenerator<KvEntry> {
        for (const e of list) yield await Promise.resolve(e);
      })(),
    );
  }

  private write(key: string, text: string, casOk: (old: Stored | undefined) => boolean): Promise<number> {
    const apply = (): number => {
      if (!casOk(this.data.get(key))) throw casConflict(key);
      this.data.set(key, { value: new TextEncoder().encode(text), revision: ++this.seq, operation: 'PUT' });
      this.applied.push(key);
      return this.seq;
    };
    if (!this.held) {
      try {
        return Promise.resolve(apply());
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
    return new Promise<number>((resolve, reject) => {
      this.pending.push({
        key,
        text,
        release: () => {
          try {
            resolve(apply());
          } catch (err) {
            reject(err instanceof Error ? err : new Error(String(err)));
          }
        },
        fail: (err) => reject(err),
        landThenFail: (err) => {
          try {
            apply();
          } catch {
            // applied or refused, the reply is lost either way
          }
          reject(err);
        },
      });
    });
  }
}

function entry(key: string, s: Stored): KvEntry {
  return {
    key,
    revision: s.revision,
    operation: s.operation,
    value: s.value,
    json: (): unknown => JSON.parse(new TextDecoder().decode(s.value)),
    string: (): string => new TextDecoder().decode(s.value),
  } as unknown as KvEntry;
}
