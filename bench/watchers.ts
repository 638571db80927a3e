// M real MeshWatch instances, each on its own NATS connection with the agent's connection settings,
// as M agents would watch the bucket. Helpers time when each of them reaches a condition.
import { performance } from 'node:perf_hooks';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats, natsSettingsForUrls } from '../lib/nats-connect.ts';
import { MeshWatch, type MeshWatchOptions } from '../agent/control/mesh-watch.ts';
import { agentWatchSource } from '../agent/control/brokered-watch.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';

export interface Watcher {
  readonly nc: NatsConnection;
  readonly watch: MeshWatch;
}

export interface TrafficCounters {
  readonly inMsgs: number;
  readonly inBytes: number;
}

export class WatcherFleet {
  private constructor(readonly members: readonly Watcher[]) {}

  static async start(
    /** `brokerPrefix`: watch through the coordinator's watch broker on that subject prefix, as the agent does (the agent's fallback to the direct watch included, for a coordinator without the broker); else the direct nats.js watch. */
    o: { url: string; bucket: string; coordinatorKey: string; count: number; id: string; brokerPrefix?: string },
    extra: Partial<MeshWatchOptions> = {},
  ): Promise<WatcherFleet> {
    const members: Watcher[] = [];
    const fleet = new WatcherFleet(members);
    try {
      for (let i = 0; i < o.count; i++) {
        const nc = await connectNats(natsSettingsForUrls([o.url]), `xl-bench-${o.id}-watch-${i}`);
        const watches = o.brokerPrefix === undefined ? {} : { watches: agentWatchSource({ nc, bucket: o.bucket, subjectPrefix: o.brokerPrefix, logger: silentLogger(), clock: systemClock, coordinatorKey: o.coordinatorKey }) };
        const watch = new MeshWatch({ nc, bucket: o.bucket, coordinatorKey: o.coordinatorKey, logger: silentLogger(), clock: systemClock, ...watches, ...extra });
        members.push({ nc, watch });
        watch.start();
      }
    } catch (err) {
      await fleet.stop();
      throw err;
    }
    return fleet;
  }

  /** Messages and bytes all watcher connections received so far. */
  traffic(): TrafficCounters {
    let inMsgs = 0;
    let inBytes = 0;
    for (const m of this.members) {
      const s = m.nc.stats();
      inMsgs += s.inMsgs;
      inBytes += s.inBytes;
    }
    return { inMsgs, inBytes };
  }

  /**
   * Polls every `pollMs` until `done(watcher)` holds for every watcher or `timeoutMs` passes.
   * Returns, per watcher, the performance.now() at which it was first seen done (NaN if never).
   */
  async timeUntil(done: (w: Watcher) => boolean, timeoutMs: number, pollMs = 2): Promise<number[]> {
    const at = this.members.map(() => NaN);
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const now = performance.now();
      let pending = 0;
      this.members.forEach((w, i) => {
        if (!Number.isNaN(at[i])) return;
        if (done(w)) at[i] = now;
        else pending++;
      });
      if (pending === 0 || now >= deadline) return at;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  async stop(): Promise<void> {
    for (const m of this.members) await m.watch.stop();
    await Promise.all(this.members.map((m) => m.nc.close()));
  }
}
