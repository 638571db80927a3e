// Which active gateways are down, by the reports of the nodes that probe them. Pure bookkeeping with
// an injected clock; the coordinator feeds it verified reports (signature checked against the
// reporter's NodeRecord) and asks `unhealthy()` when it elects gateways (coordinator/clusters.ts).
//
// A gateway is unhealthy when, among the FRESH verdicts about it (at most `freshMs` old, one per
// reporter, the gateway's own excluded), at least `quorum` distinct reporters say `down` and they
// outnumber those saying `up`. So:
//   - one hostile or confused node cannot depose anyone (quorum ≥ 2 distinct signed reporters);
//   - a gateway that is merely slow keeps answering probes (the agents' timeout is generous) and
//     reporters keep saying `up`: it stays;
//   - `down` at a reporter already needs consecutive lost probes (agent/health/prober.ts), and the
//     elected replacement stays once chosen (electGateway keeps a live, healthy current gateway),
//     so a recovered gateway does not flap back.
import type { GatewayHealthReport } from '../protocol/gateway-health.ts';

export interface GatewayHealthOptions {
  /** Distinct reporters that must say `down`. Default 2 (never less than 2). */
  readonly quorum?: number;
  /** Verdicts older than this are ignored. Default 10 s (agents repeat `down` verdicts every 2 s). */
  readonly freshMs?: number;
}

export const GATEWAY_HEALTH_DEFAULTS = { quorum: 2, freshMs: 10_000 } as const;

interface Verdict {
  readonly state: 'up' | 'down';
  readonly at: number;
}

export interface GatewayHealthView {
  readonly gateway: string;
  readonly down: readonly string[];
  readonly up: readonly string[];
  readonly unhealthy: boolean;
}

export class GatewayHealth {
  private readonly quorum: number;
  private readonly freshMs: number;
  /** gateway → reporter → latest verdict (received at, coordinator clock). */
  private readonly verdicts = new Map<string, Map<string, Verdict>>();
  /** reporter → `at` of its latest accepted report (replay guard). */
  private readonly lastAt = new Map<string, number>();

  constructor(o: GatewayHealthOptions = {}) {
    this.quorum = Math.max(2, o.quorum ?? GATEWAY_HEALTH_DEFAULTS.quorum);
    this.freshMs = o.freshMs ?? GATEWAY_HEALTH_DEFAULTS.freshMs;
  }

  /**
   * Takes a report whose signature was verified against `report.reporter`'s identity key. Returns
   * false (and changes nothing) for a replayed or reordered report. `now` is the coordinator's clock.
   * Only verdicts about gateways `isLiveNode` knows are kept (one lookup each): a report naming
   * made-up gateways leaves nothing to keep for the freshness window or to re-scan on every report.
   */
  accept(report: GatewayHealthReport, now: number, isLiveNode: (name: string) => boolean): boolean {
    const last = this.lastAt.get(report.reporter);
    if (last !== undefined && report.at <= last) return false;
    this.lastAt.set(report.reporter, report.at);
    for (const v of report.verdicts) {
      if (v.gateway === report.reporter) continue; // nobody vouches for or against itself
      if (!isLiveNode(v.gateway)) continue;
      let byReporter = this.verdicts.get(v.gateway);
      if (!byReporter) this.verdicts.set(v.gateway, (byReporter = new Map<string, Verdict>()));
      byReporter.set(report.reporter, { state: v.state, at: now });
    }
    return true;
  }

  /** Gateways verdicts are kept about (fresh or not yet pruned). */
  get gatewaysTracked(): number {
    return this.verdicts.size;
  }

  /** What the fresh verdicts say about `gateway`. */
  view(gateway: string, now: number): GatewayHealthView {
    const down: string[] = [];
    const up: string[] = [];
    for (const [reporter, v] of this.verdicts.get(gateway) ?? []) {
      if (now - v.at > this.freshMs) continue;
      (v.state === 'down' ? down : up).push(reporter);
    }
    down.sort();
    up.sort();
    return { gateway, down, up, unhealthy: down.length >= this.quorum && down.length > up.length };
  }

  /** Gateways a quorum of fresh reporters sees down. Drops stale verdicts as it goes. */
  unhealthy(now: number): ReadonlySet<string> {
    const out = new Set<string>();
    for (const [gateway, byReporter] of this.verdicts) {
      for (const [reporter, v] of byReporter) if (now - v.at > this.freshMs) byReporter.delete(reporter);
      if (byReporter.size === 0) {
        this.verdicts.delete(gateway);
        continue;
      }
      if (this.view(gateway, now).unhealthy) out.add(gateway);
    }
    return out;
  }

  /** Forgets a node (expired, deregistered): its verdicts and its replay counter. */
  forget(node: string): void {
    this.lastAt.delete(node);
    this.verdicts.delete(node);
    for (const byReporter of this.verdicts.values()) byReporter.delete(node);
  }
}
