// Stall detection for the KV watch. JetStream KV watches are ordered push consumers; when the
// server holding the consumer goes away while the agent's own server survives (a NATS cluster
// losing a member, the bucket's stream leader among them), nothing reaches the client — no error,
// no disconnect — and the library only notices after two missed idle heartbeats (60 s). So the
// watch compares, cheaply and from time to time, the revision of the newest message under each
// watched key range (a direct get, answered by any replica) with what it has applied: behind
// twice in a row without reaching what the first look saw means the watch is stalled, and it is
// re-created from the last applied revision (no full re-read). Pure decision here; timing and I/O
// in MeshWatch.

/** What one look found. */
export type ProgressVerdict =
  | { readonly kind: 'in-step' }
  /** Behind, but maybe only in flight: look again. */
  | { readonly kind: 'behind'; readonly targets: readonly number[] }
  | { readonly kind: 'stalled'; readonly reason: string };

/**
 * `bucket[i]`: newest revision under range i now; `applied[i]`: what the watch applied;
 * `previous`: the targets of the last look if it was 'behind'. Stalled when the watch is still
 * short of a revision the previous look already saw in the bucket.
 */
export function judgeProgress(bucket: readonly number[], applied: readonly number[], previous: readonly number[] | undefined, names: readonly string[]): ProgressVerdict {
  const behind = bucket.some((rev, i) => rev > (applied[i] ?? 0));
  if (!behind) return { kind: 'in-step' };
  if (previous !== undefined) {
    for (const [i, target] of previous.entries()) {
      const got = applied[i] ?? 0;
      if (got < target) return { kind: 'stalled', reason: `${names[i] ?? `range ${i}`}: the bucket had revision ${target} a look ago, the watch is still at ${got}` };
    }
  }
  return { kind: 'behind', targets: [...bucket] };
}

/**
 * When to look next: often (burstMs) for a while after the NATS cluster changed under us (a server
 * left or joined, or we reconnected) — that is when consumers vanish — and rarely otherwise. A look
 * that found the watch behind is followed up after burstMs too: a stall is then declared one short
 * look after it was first seen, not a whole interval later (a watch whose server vanished without
 * the client being told of a cluster change would otherwise wait two intervals).
 */
export function nextProgressCheckMs(now: number, burstUntil: number, burstMs: number, intervalMs: number, lastLookBehind = false): number {
  return now < burstUntil || lastLookBehind ? Math.min(burstMs, intervalMs) : intervalMs;
}

/** Looks at the bucket's newest revisions before a resume concludes the bucket was renumbered. */
export const RENUMBERED_LOOKS = 3;
/** Between those looks. */
export const RENUMBERED_LOOK_GAP_MS = 250;

/**
 * Before a resume: was the bucket renumbered (re-created, or a server that lost data), so that resuming
 * would wait for revisions that never come and everything must be read again? Only when every one of
 * RENUMBERED_LOOKS looks (`look()`: the newest revision per range), RENUMBERED_LOOK_GAP_MS apart, is
 * behind `applied`: a replica still catching up after a crash answers an older revision too
 * (nats-server-loss SIGKILL, round 22: 2 of 15 watches re-read everything on one stale answer).
 * `sleep` ends early once the caller stops (then the answer no longer matters).
 */
export async function bucketRenumbered(look: () => Promise<readonly number[]>, applied: readonly number[], sleep: (ms: number) => Promise<void>, stopped: () => boolean): Promise<boolean> {
  const behind = (last: readonly number[]): boolean => last.some((rev, i) => rev < (applied[i] ?? 0));
  let last = await look();
  for (let n = 1; n < RENUMBERED_LOOKS && behind(last) && !stopped(); n++) {
    await sleep(RENUMBERED_LOOK_GAP_MS);
    last = await look();
  }
  return behind(last);
}
