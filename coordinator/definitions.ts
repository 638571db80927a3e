// The cluster enrollments the leader admits registrations against, held in memory: loaded with the
// snapshot when a term starts, then kept current by a watch on `enrollments.>` (and, when a
// registration names a cluster the table does not know yet, a direct read). Each change carries its
// KV revision, so an overlapping snapshot and watch can never undo a newer change.
import type { ClusterDefinition } from '../protocol/messages.ts';

export class DefinitionTable {
  private readonly held = new Map<string, ClusterDefinition>();
  private readonly revisions = new Map<string, number>();

  /** Applies a definition (or its removal, null) seen at `revision`; false when not newer. */
  apply(name: string, value: ClusterDefinition | null, revision: number): boolean {
    if (revision <= (this.revisions.get(name) ?? 0)) return false;
    this.revisions.set(name, revision);
    if (value === null) this.held.delete(name);
    else this.held.set(name, value);
    return true;
  }

  get(name: string): ClusterDefinition | undefined {
    return this.held.get(name);
  }

  values(): ClusterDefinition[] {
    return [...this.held.values()];
  }

  get size(): number {
    return this.held.size;
  }
}
