// The agent's own events (protocol/events.ts): wireguard-go restarts and reconcile failures, turned
// into events on transitions only — a reconcile that keeps failing with the same error every resync
// is one event, not one per resync. Repairs (route/peer/MTU) are reported by whoever repairs, through
// the same EventPublisher (`Agent.events`).
import type { EventInput, EventPublisher } from '../../protocol/events.ts';
import type { ReconcileRecord } from '../reconciler.ts';

export class AgentEvents {
  /** The error of the last failed reconcile we reported; null while reconciles succeed. */
  private failing: string | null = null;

  constructor(
    readonly publisher: EventPublisher,
    private readonly node: () => { readonly name: string; readonly cluster: string },
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

  /** Reports the first failure and each change of error; a success ends the failing streak silently. */
  reconciled(record: Pick<ReconcileRecord, 'ok' | 'error' | 'reasons'>): void {
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
}
