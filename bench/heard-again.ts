// "Every node heard again" after a coordinator outage, measured per node. A node heartbeats once per
// interval at its own phase, so "time until every node has been heard since the kill" is at least
// one interval whatever the restart costs (a node that heartbeated just before the kill is due an
// interval later) — that figure alone says nothing about the restart. What the restart costs a
// node is the delay between its first heartbeat attempt after the kill and its first answered one
// (0 if the attempt fell after the coordinator was back); what the outage catches is the nodes
// whose attempt failed, and how soon their retries are answered.
import { percentile } from './report.ts';

/** One node's heartbeats after the event: first attempt sent, whether any attempt failed, first answer. */
export interface NodeAfterEvent {
  firstSentAt?: number;
  caught: boolean;
  heardAt?: number;
}

export interface HeardAgain {
  readonly nodes: number;
  /** Nodes with an answered heartbeat after the event. */
  readonly heard: number;
  /** Nodes whose heartbeat failed at least once after the event (the outage caught them). */
  readonly caught: number;
  /** From the event until every caught node was heard again (ms; NaN if none was caught or one is still unheard). */
  readonly caughtHeardMs: number;
  /** From the event until every node was heard again (ms; at least about one interval, by schedule). */
  readonly allHeardMs: number;
  /** Per node: first attempt after the event → first answer (ms), p50 / p99 / max: the delay the outage added. */
  readonly addedDelayMs: { readonly p50: number; readonly p99: number; readonly max: number };
}

/** Tracks every node's heartbeats after an event (a coordinator kill), for `summary`. */
export class HeardAgainTracker {
  private eventAt: number | undefined;
  private readonly nodes = new Map<string, NodeAfterEvent>();

  /** Starts a measurement at `at` (performance.now() ms); forgets the previous one. */
  mark(at: number): void {
    this.eventAt = at;
    this.nodes.clear();
  }

  sent(name: string, at: number): void {
    if (this.eventAt === undefined || at < this.eventAt) return;
    const n = this.entry(name);
    n.firstSentAt ??= at;
  }

  /** A heartbeat failed at `at`; one sent before the event but lost in it counts too (from when it was sent). */
  failed(name: string, sentAt: number, at: number): void {
    if (this.eventAt === undefined || at < this.eventAt) return;
    const n = this.entry(name);
    n.caught = true;
    n.firstSentAt = Math.min(n.firstSentAt ?? sentAt, sentAt);
  }

  answered(name: string, sentAt: number, at: number): void {
    if (this.eventAt === undefined || sentAt < this.eventAt) return;
    const n = this.entry(name);
    n.heardAt ??= at;
  }

  /** True once every one of `names` has an answered heartbeat sent after the event. */
  allHeard(names: Iterable<string>): boolean {
    for (const name of names) if (this.nodes.get(name)?.heardAt === undefined) return false;
    return true;
  }

  summary(names: readonly string[]): HeardAgain {
    const eventAt = this.eventAt ?? NaN;
    const entries = names.map((n) => this.nodes.get(n) ?? { caught: false });
    return summarise(eventAt, entries);
  }

  private entry(name: string): NodeAfterEvent {
    let n = this.nodes.get(name);
    if (!n) {
      n = { caught: false };
      this.nodes.set(name, n);
    }
    return n;
  }
}

/** The figures from per-node observations (pure). */
export function summarise(eventAt: number, entries: readonly NodeAfterEvent[]): HeardAgain {
  const heard = entries.filter((e) => e.heardAt !== undefined);
  const caught = entries.filter((e) => e.caught);
  const lastOf = (xs: readonly NodeAfterEvent[]): number =>
    xs.length === 0 || xs.some((e) => e.heardAt === undefined) ? NaN : Math.max(...xs.map((e) => (e.heardAt ?? NaN) - eventAt));
  const delays = heard.map((e) => (e.heardAt ?? NaN) - (e.firstSentAt ?? NaN));
  return {
    nodes: entries.length,
    heard: heard.length,
    caught: caught.length,
    caughtHeardMs: caught.length === 0 ? NaN : lastOf(caught),
    allHeardMs: lastOf(entries),
    addedDelayMs: { p50: percentile(delays, 50), p99: percentile(delays, 99), max: delays.length === 0 ? NaN : Math.max(...delays) },
  };
}
