// The agent's own events (protocol/events.ts): wireguard-go restarts, reconcile failures — turned
// into events on transitions only: a reconcile that keeps failing with the same error every resync
// is one event, not one per resync — and the route/peer/MTU repairs of the self-heal path
// (agent/events/repairs.ts). The agent wraps the publisher in RateLimitedEvents
// (agent/events/event-rate-limit.ts), so a flapping thing cannot flood.
import type { EventInput, EventPublisher } from '../../protocol/events.ts';
import type { ReconcileRecord } from '../reconciler.ts';
import { repairsOf } from './repairs.ts';

/** Route destinations (or peer keys) listed in one repair event at most. */
const LIST_MAX = 8;
const listed = (items: readonly string[]): string => (items.length <= LIST_MAX ? items.join(', ') : `${items.slice(0, LIST_MAX).join(', ')} and ${items.length - LIST_MAX} more`);

export class AgentEvents {
  /** The error of the last failed reconcile we reported; null while reconciles succeed. */
  private failing: string | null = null;

  constructor(
    readonly publisher: EventPublisher,
    private readonly node: () => { readonly name: string; readonly cluster: string },
    /** The WireGuard interface whose repairs are reported. */
    private readonly interfaceName: string,
  ) {}

  publish(event: EventInput): void {
    this.publisher.publish(event);
  }

  wireguardRestarted(generation: number): void {
    const { name, cluster } = this.node();
    this.publisher.publish({
      type: 'wireguard-restarted',
      severity: 'warning',
      node: name,
      cluster,
      message: `wireguard-go on ${name} restarted (generation ${generation}); re-applying peers and routes`,
      details: { generation },
    });
  }

  /**
   * Reports what a self-heal run put back (whether or not the run also failed elsewhere), then the
   * first failure and each change of error; a success ends the failing streak silently.
   */
  reconciled(record: Pick<ReconcileRecord, 'ok' | 'error' | 'reasons'> & Partial<Pick<ReconcileRecord, 'commands'>>): void {
    this.repaired(record.reasons, record.commands ?? []);
    if (record.ok || record.error === null) {
      this.failing = null;
      return;
    }
    if (record.error === this.failing) return;
    this.failing = record.error;
    const { name, cluster } = this.node();
    this.publisher.publish({
      type: 'reconcile-failed',
      severity: 'warning',
      node: name,
      cluster,
      message: `reconcile on ${name} failed: ${record.error}`,
      details: { reasons: record.reasons.join(',') },
    });
  }

  private repaired(reasons: readonly string[], commands: readonly (readonly string[])[]): void {
    const r = repairsOf({ reasons, commands }, this.interfaceName);
    if (r.routes.length + r.peers.length === 0 && r.mtu === null) return;
    const { name, cluster } = this.node();
    const why = reasons.join('; ');
    if (r.routes.length > 0) {
      this.publisher.publish({ type: 'route-repaired', severity: 'warning', node: name, cluster, message: `${name}: ${r.routes.length} route(s) on ${this.interfaceName} were missing or changed and were put back: ${listed(r.routes)} (${why})`, details: { count: r.routes.length, routes: listed(r.routes).slice(0, 512) } });
    }
    if (r.peers.length > 0) {
      this.publisher.publish({ type: 'peer-repaired', severity: 'warning', node: name, cluster, message: `${name}: ${r.peers.length} WireGuard peer(s) on ${this.interfaceName} were missing or changed and were put back (${why})`, details: { count: r.peers.length, peers: listed(r.peers).slice(0, 512) } });
    }
    if (r.mtu !== null) {
      this.publisher.publish({ type: 'mtu-repaired', severity: 'warning', node: name, cluster, message: `${name}: the MTU of ${this.interfaceName} had changed and was set back to ${r.mtu} (${why})`, details: { mtu: r.mtu } });
    }
  }
}
