// Enforces the verified policy on this node with one nftables table owned by Crosslink
// (`inet crosslink_policy`), replaced atomically with `nft -f -` carrying the whole table. Every nft
// call goes through the Runner (in the lab the agent runs inside its node namespace).
//
// Fail-static: until the policy key, the cluster enrollments and the mesh have been read, the live table (e.g. left by
// the previous agent process) stays as it is, so an agent restart never opens a window without
// filtering. Without nft the agent says so (status, /readyz, diagnose) and never claims to enforce;
// in `required` mode it then refuses to carry overlay traffic (agent.ts drops peers and routes).
import type { Clock } from '../../lib/clock.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { Runner } from '../../lib/runner.ts';
import type { ClusterDefinition, NodeRecord } from '../../protocol/messages.ts';
import type { PolicyRecord } from '../../protocol/policy/document.ts';
import { policyContext } from '../../protocol/policy/context.ts';
import type { PolicyContext } from '../../protocol/policy/evaluate.ts';
import { DEFAULT_COUNTER, POLICY_TABLE, renderPolicyTable, renderPolicyTableRemoval, type CounterValue } from '../../protocol/policy/render.ts';
import type { PolicyCounter, PolicyEnforcementMode, PolicyStatus } from '../../protocol/policy/status.ts';
import { parseNftTable, type LiveTable } from './nft-json.ts';

export interface PolicyEnforcerOptions {
  readonly runner: Runner;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly interfaceName: string;
  readonly mode: PolicyEnforcementMode;
  /** The nft command (default ['nft']); tests and the lab point it at a missing binary. */
  readonly nft?: readonly string[];
}

/** What the enforcer is asked to realise: the policy watch's state, the verified cluster enrollments
 *  and the verified nodes (null: not read yet). */
export interface PolicyInput {
  readonly known: boolean;
  readonly record: PolicyRecord | null;
  readonly rejected: string | null;
  /** Enrolled clusters by name: `{cluster: X}` means X's enrolled pod ranges (protocol/policy/context.ts). */
  readonly enrollments: ReadonlyMap<string, ClusterDefinition> | null;
  readonly nodes: ReadonlyMap<string, NodeRecord> | null;
}

export class PolicyEnforcer {
  private nftState: 'available' | 'missing' | 'unknown' = 'unknown';
  private nftError: string | null = null;
  private enforcedVersion: number | null = null;
  private lastAppliedKey: string | null = null;
  private lastAppliedAt: number | null = null;
  private lastError: string | null = null;
  private input: PolicyInput = { known: false, record: null, rejected: null, enrollments: null, nodes: null };
  private context: PolicyContext = { clusters: new Map(), nodeOverlayIps: [] };
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private lastDrops: PolicyStatus['drops'] = [];
  private readonly changeListeners: (() => void)[] = [];

  constructor(private readonly o: PolicyEnforcerOptions) {}

  private get nft(): readonly string[] {
    return this.o.nft ?? ['nft'];
  }

  /** Called when enforcement state changes (nft found missing, a table applied or failing). */
  onChange(listener: () => void): void {
    this.changeListeners.push(listener);
  }

  /** Checks for nft and learns which policy version the live table (if any) carries. */
  async init(): Promise<void> {
    try {
      const r = await this.o.runner.run([...this.nft, '--version'], { timeoutMs: 5000 });
      // Another program called nft (npm's node_modules/.bin has one) must not pass for nftables.
      if (!/^nftables v/.test(r.stdout.trim())) throw new Error(`it is not nftables: \`${this.nft.join(' ')} --version\` printed ${JSON.stringify(r.stdout.trim().slice(0, 80))}`);
      this.nftState = 'available';
    } catch (err) {
      this.nftState = 'missing';
      this.nftError = `nftables (${this.nft.join(' ')}) is not usable: ${errorMessage(err)}`;
      this.o.logger.error(
        { err: this.nftError, mode: this.o.mode },
        this.o.mode === 'required'
          ? 'POLICY CANNOT BE ENFORCED: nftables is missing; --policy-enforcement required: this node carries no overlay traffic'
          : 'POLICY CANNOT BE ENFORCED: nftables is missing; --policy-enforcement best-effort: traffic is carried UNFILTERED',
      );
      this.emit();
      return;
    }
    const live = await this.readLive();
    this.enforcedVersion = live.table?.version ?? null;
    if (live.table) this.o.logger.info({ version: this.enforcedVersion }, 'kept the policy table in place from before (replaced once the policy and mesh are read)');
    this.emit();
  }

  /** New policy or mesh: re-render and apply if anything changed (coalesced, one apply at a time). */
  update(input: PolicyInput): void {
    this.input = input;
    if (input.nodes !== null && input.enrollments !== null) this.context = policyContext(input.enrollments.values(), input.nodes.values());
    this.kick();
  }

  private kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.drain();
  }

  private async drain(): Promise<void> {
    try {
      do {
        this.again = false;
        await this.applyOnce().catch((err: unknown) => {
          this.lastError = errorMessage(err);
          this.o.logger.warn({ err: this.lastError }, 'applying the policy table failed; retrying on the next change or resync');
        });
        this.emit();
      } while (this.again && !this.stopped);
    } finally {
      this.running = undefined;
    }
  }

  /** Resolves when no apply is in flight (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Re-apply even if nothing seems to have changed (resync: someone may have flushed the table). */
  resync(): void {
    this.lastAppliedKey = null;
    this.kick();
  }

  private async applyOnce(): Promise<void> {
    if (this.nftState !== 'available') return;
    const { known, record, nodes, enrollments } = this.input;
    // Fail-static: the live table stays until we know what should replace it.
    if (!known) return;
    if (record === null) {
      if (this.lastAppliedKey === 'none') return;
      const live = await this.readLive();
      if (live.table) {
        await this.o.runner.run([...this.nft, '-f', '-'], { input: renderPolicyTableRemoval() });
        this.o.logger.info({ version: live.table.version }, 'no policy is set any more: removed the policy table');
      }
      this.enforcedVersion = null;
      this.lastAppliedKey = 'none';
      this.lastAppliedAt = this.o.clock.now();
      this.lastError = null;
      return;
    }
    if (nodes === null || enrollments === null) return;
    const key = renderPolicyTable({ record, context: this.context, interfaceName: this.o.interfaceName });
    if (key === this.lastAppliedKey) return;
    // Keep the counters when only the mesh changed (same version); a new version counts anew.
    let counters: ReadonlyMap<string, CounterValue> | undefined;
    if (this.enforcedVersion === record.version) {
      const live = await this.readLive();
      if (live.table?.version === record.version) counters = new Map(live.table.counters.map((c) => [c.name, c]));
    }
    const text = counters ? renderPolicyTable({ record, context: this.context, interfaceName: this.o.interfaceName, counters }) : key;
    const started = this.o.clock.now();
    await this.o.runner.run([...this.nft, '-f', '-'], { input: text });
    const first = this.enforcedVersion !== record.version;
    this.enforcedVersion = record.version;
    this.lastAppliedKey = key;
    this.lastAppliedAt = this.o.clock.now();
    this.lastError = null;
    const fields = { version: record.version, rules: record.policy.rules.length, default: record.policy.default, clusters: this.context.clusters.size, ms: this.lastAppliedAt - started };
    if (first) this.o.logger.info(fields, 'policy enforced');
    else this.o.logger.debug(fields, 'policy table re-rendered (mesh changed)');
  }

  /** The live table as the kernel holds it (null when none); errors are reported, not thrown. */
  async readLive(): Promise<{ table: LiveTable | null; error: string | null }> {
    if (this.nftState === 'missing') return { table: null, error: this.nftError };
    try {
      const r = await this.o.runner.run([...this.nft, '-j', 'list', 'table', ...POLICY_TABLE.split(' ')], { allowFailure: true, timeoutMs: 5000 });
      if (r.exitCode !== 0) {
        // "No such file or directory": there is no table.
        if (/no such file|does not exist/i.test(r.stderr)) return { table: null, error: null };
        return { table: null, error: `nft -j list table ${POLICY_TABLE} exited ${r.exitCode}: ${r.stderr.trim()}` };
      }
      return { table: parseNftTable(r.stdout), error: null };
    } catch (err) {
      return { table: null, error: errorMessage(err) };
    }
  }

  /** `nft list table` text (for `crosslink policy explain`). */
  async liveTableText(): Promise<{ text: string | null; error: string | null }> {
    if (this.nftState === 'missing') return { text: null, error: this.nftError };
    const r = await this.o.runner.run([...this.nft, 'list', 'table', ...POLICY_TABLE.split(' ')], { allowFailure: true, timeoutMs: 5000 }).catch((err: unknown) => ({ stdout: '', stderr: errorMessage(err), exitCode: -1 }));
    if (r.exitCode === 0) return { text: r.stdout, error: null };
    if (/no such file|does not exist/i.test(r.stderr)) return { text: null, error: null };
    return { text: null, error: r.stderr.trim() };
  }

  /** Reads the counters and remembers the drops for status. */
  async counters(): Promise<PolicyCounter[]> {
    const live = await this.readLive();
    const counters = [...(live.table?.counters ?? [])];
    const record = this.input.record;
    const drops: PolicyStatus['drops'] = [];
    if (record && live.table?.version === record.version) {
      for (const c of counters) {
        if (c.name === DEFAULT_COUNTER) {
          if (record.policy.default === 'deny') drops.push({ rule: 'default', packets: c.packets, bytes: c.bytes });
          continue;
        }
        const n = /^rule_([0-9]+)$/.exec(c.name)?.[1];
        if (n !== undefined && record.policy.rules[Number(n) - 1]?.action === 'deny') drops.push({ rule: Number(n), packets: c.packets, bytes: c.bytes });
      }
    }
    this.lastDrops = drops;
    return counters;
  }

  /** This node must not carry overlay traffic: `required` and it cannot (or not yet) enforce. */
  blocksTraffic(): boolean {
    if (this.o.mode !== 'required') return false;
    if (this.nftState !== 'available') return true;
    // No table of ours is live (a fresh node, not a restart: a restart keeps the previous table)
    // and either we do not know yet whether a policy exists, or one exists and is not applied yet
    // (the enrollments or the mesh not read, e.g. an agent whose NATS account cannot read
    // `enrollments.>`): carrying traffic now would carry it unfiltered.
    if (this.enforcedVersion === null && this.pendingReason() !== null) return true;
    // A policy exists but its table could not be applied (and none of its version is live).
    const record = this.input.record;
    return record !== null && this.lastError !== null && this.enforcedVersion !== record.version;
  }

  /** Why the node is not ready because of policy, or null. */
  notReadyReason(): string | null {
    if (this.nftState === 'missing') {
      return this.o.mode === 'required'
        ? `policy NOT enforced: ${this.nftError ?? 'nft missing'}; --policy-enforcement required: carrying no overlay traffic`
        : this.input.record
          ? `policy v${this.input.record.version} NOT enforced: ${this.nftError ?? 'nft missing'} (--policy-enforcement best-effort: traffic passes unfiltered)`
          : null;
    }
    const pending = this.enforcedVersion === null ? this.pendingReason() : null;
    if (this.blocksTraffic() && pending !== null && this.lastError === null) return `${pending}; --policy-enforcement required: carrying no overlay traffic until it is enforced`;
    if (this.blocksTraffic()) return `policy v${this.input.record?.version ?? '?'} could not be applied (${this.lastError ?? 'unknown'}); --policy-enforcement required: carrying no overlay traffic`;
    return null;
  }

  /** Why the policy is not enforced yet although it may have to be, or null (no policy, or applied). */
  private pendingReason(): string | null {
    const { known, record, enrollments, nodes } = this.input;
    if (!known) return 'the access policy has not been read yet';
    if (record === null || this.enforcedVersion === record.version) return null;
    if (enrollments === null) return `policy v${record.version} not enforced yet: the cluster enrollments have not been read`;
    if (nodes === null) return `policy v${record.version} not enforced yet: the mesh has not been read`;
    return `policy v${record.version} not enforced yet`;
  }

  status(): PolicyStatus {
    const record = this.input.record;
    const enforcing = this.nftState === 'available' && record !== null && this.enforcedVersion === record.version;
    return {
      mode: this.o.mode,
      nft: this.nftState,
      nftError: this.nftError,
      desiredVersion: record?.version ?? null,
      enforcedVersion: this.nftState === 'available' ? this.enforcedVersion : null,
      enforcing,
      blocksTraffic: this.blocksTraffic(),
      lastAppliedAt: this.lastAppliedAt,
      lastError: this.lastError,
      rejected: this.input.rejected,
      drops: this.lastDrops,
    };
  }

  get policyContext(): PolicyContext {
    return this.context;
  }

  get record(): PolicyRecord | null {
    return this.input.record;
  }

  /** Stops applying; the table stays (traffic stays filtered while no agent runs). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.settled();
  }

  /** --cleanup: remove the table. */
  async teardown(): Promise<void> {
    this.stopped = true;
    await this.settled();
    if (this.nftState !== 'available') return;
    if ((await this.readLive()).table) await this.o.runner.run([...this.nft, '-f', '-'], { input: renderPolicyTableRemoval() });
  }

  private emit(): void {
    for (const l of this.changeListeners) l();
  }
}
