// The agent's access-policy component: follows the signed policy (PolicyWatch) and the cluster
// enrollments its `{cluster: X}` rules resolve to (EnrollmentWatch), enforces it with
// nftables (PolicyEnforcer), gates the desired state in `required` mode, and answers status,
// readiness and `crosslink policy explain`. agent.ts wires it in with a few calls.
import type { KeyWatchSource } from '../control/key-watch.ts';
import type { RangeResumeStats } from '../control/range-resume.ts';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Clock } from '../../lib/clock.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { Runner } from '../../lib/runner.ts';
import type { NodeRecord } from '../../protocol/messages.ts';
import type { PolicyDocumentResponse, PolicyEnforcementMode, PolicyStatus } from '../../protocol/policy/status.ts';
import type { DesiredState } from '../plan/model.ts';
import { EnrollmentWatch } from './enrollment-watch.ts';
import { PolicyEnforcer } from './enforcer.ts';
import { resolveNftCommand } from './nft-command.ts';
import { withoutOverlayTraffic } from './gate.ts';
import { PolicyWatch } from './policy-watch.ts';

export interface AgentPolicyOptions {
  readonly runner: Runner;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly interfaceName: string;
  readonly mode: PolicyEnforcementMode;
  readonly nftCommand: string;
  readonly bucket: string;
  readonly coordinatorKeys: readonly string[];
  /** Called when the agent must reconcile again (traffic gate changed) or republish readiness. */
  readonly onGateChanged: () => void;
}

export class AgentPolicy {
  readonly enforcer: PolicyEnforcer;
  private watch: PolicyWatch | undefined;
  private enrollments: EnrollmentWatch | undefined;
  private nodes: ReadonlyMap<string, NodeRecord> | null = null;
  private lastGate = false;

  constructor(private readonly o: AgentPolicyOptions) {
    this.enforcer = new PolicyEnforcer({
      runner: o.runner,
      logger: o.logger,
      clock: o.clock,
      interfaceName: o.interfaceName,
      mode: o.mode,
      nft: [resolveNftCommand(o.nftCommand)],
    });
    this.enforcer.onChange(() => {
      const gate = this.enforcer.blocksTraffic();
      if (gate !== this.lastGate) {
        this.lastGate = gate;
        this.o.onGateChanged();
      }
    });
  }

  /** Before the first reconcile: is nft there, which table is live (left in place across restarts). */
  async init(): Promise<void> {
    await this.enforcer.init();
    this.lastGate = this.enforcer.blocksTraffic();
  }

  /** Starts following the policy key and the cluster enrollments on this connection. */
  connect(nc: NatsConnection, watches?: KeyWatchSource): void {
    const shared = { nc, ...(watches ? { watches } : {}), bucket: this.o.bucket, coordinatorKeys: this.o.coordinatorKeys, logger: this.o.logger, clock: this.o.clock };
    const watch = new PolicyWatch(shared);
    this.watch = watch;
    watch.onChange(() => this.push());
    const enrollments = new EnrollmentWatch(shared);
    this.enrollments = enrollments;
    enrollments.onChange(() => this.push());
    watch.start();
    enrollments.start();
  }

  /** The verified nodes changed (null: no complete snapshot yet). */
  meshChanged(nodes: ReadonlyMap<string, NodeRecord> | null): void {
    this.nodes = nodes;
    this.push();
  }

  resync(): void {
    this.enforcer.resync();
  }

  /** The enrollment watch's stalls, resumes and catch-up (undefined: not started). */
  enrollmentWatchStats(): RangeResumeStats | undefined {
    return this.enrollments?.stats();
  }

  private push(): void {
    const s = this.watch?.state();
    const e = this.enrollments?.state();
    this.enforcer.update({ known: s?.known ?? false, record: s?.record ?? null, rejected: s?.rejected ?? null, enrollments: e?.known === true ? e.definitions : null, nodes: this.nodes });
  }

  /** The desired state as this node may realise it. */
  gate(desired: DesiredState): DesiredState {
    if (!this.enforcer.blocksTraffic()) return desired;
    return withoutOverlayTraffic(desired, this.enforcer.notReadyReason() ?? 'the access policy cannot be enforced (--policy-enforcement required)');
  }

  notReadyReason(): string | null {
    return this.enforcer.notReadyReason();
  }

  /** Status (reads the counters, so drops are current). */
  async status(): Promise<PolicyStatus> {
    await this.enforcer.counters().catch(() => undefined);
    return this.enforcer.status();
  }

  /** Lines for the status `errors` list. */
  errors(s: PolicyStatus): string[] {
    const out: string[] = [];
    if (s.nft === 'missing') out.push(`policy: NOT ENFORCED, ${s.nftError ?? 'nft missing'} (${s.blocksTraffic ? 'required: carrying no overlay traffic' : 'best-effort: traffic passes unfiltered'})`);
    if (s.rejected !== null) out.push(`policy: the policy record in the KV was ignored: ${s.rejected}`);
    if (s.lastError !== null) out.push(`policy: applying the table failed: ${s.lastError}`);
    const e = this.enrollments?.state();
    for (const [key, reason] of e?.rejected ?? []) out.push(`policy: the cluster enrollment ${key} was ignored: ${reason}`);
    if (e && e.lastError !== null) {
      out.push(`policy: cannot read the cluster enrollments (enrollments.>): ${e.lastError}${e.known ? '' : '; the policy table is not updated until they are read (agents need read access: crosslink-coordinator nats-config)'}`);
    }
    return out;
  }

  /** GET /policy. */
  async document(): Promise<PolicyDocumentResponse> {
    const status = await this.status();
    const live = await this.enforcer.liveTableText().catch((err: unknown) => ({ text: null, error: errorMessage(err) }));
    const ctx = this.enforcer.policyContext;
    return {
      status,
      record: this.enforcer.record,
      clusters: Object.fromEntries([...ctx.clusters].map(([k, v]) => [k, [...v]])),
      nodeOverlayIps: [...ctx.nodeOverlayIps],
      liveTable: live.text,
      liveTableError: live.error,
      counters: await this.enforcer.counters().catch(() => []),
    };
  }

  /** Stops following; the table stays unless `cleanup` (then it is removed). */
  async stop(cleanup: boolean): Promise<void> {
    await Promise.all([this.watch?.stop(), this.enrollments?.stop()]);
    if (cleanup) await this.enforcer.teardown();
    else await this.enforcer.stop();
  }
}
