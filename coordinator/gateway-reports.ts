// Intake of gateway health reports (protocol/gateway-health.ts): a report counts only if its
// signature verifies against the identity key in the reporter's LIVE node record, its clock is
// within the allowed skew, and it is newer than the reporter's last one (GatewayHealth.accept).
// Everything else is refused with a typed error naming why; nothing of it is kept.
import type { Clock } from '../lib/clock.ts';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { GatewayHealthReport } from '../protocol/gateway-health.ts';
import { SignedEnvelope, type NodeRecord } from '../protocol/messages.ts';
import { openEnvelopeUnverified, verifyEnvelope } from '../protocol/signing.ts';
import { GatewayHealth } from './gateway-health.ts';
import { RequestSizeGate } from './request-size-gate.ts';

export class GatewayReportError extends CrosslinkError {
  override name = 'GatewayReportError';
}

/** Verifies one published report; throws GatewayReportError. */
export async function verifyGatewayReport(
  raw: Uint8Array,
  liveNode: (name: string) => NodeRecord | undefined,
  now: number,
  maxClockSkewMs: number,
): Promise<GatewayHealthReport> {
  let claimed: unknown;
  try {
    const envelope = SignedEnvelope.parse(JSON.parse(Buffer.from(raw).toString('utf8')));
    claimed = openEnvelopeUnverified(envelope);
  } catch (err) {
    throw new GatewayReportError(`gateway health report is not a signed envelope: ${errorMessage(err)}`, { cause: err });
  }
  const reporter = typeof claimed === 'object' && claimed !== null && 'reporter' in claimed ? (claimed).reporter : undefined;
  if (typeof reporter !== 'string') throw new GatewayReportError('gateway health report: field reporter is missing (must name the reporting node)');
  const node = liveNode(reporter);
  if (!node) throw new GatewayReportError(`gateway health report: reporter ${JSON.stringify(reporter)} is not a live node`);
  let report: GatewayHealthReport;
  try {
    report = await verifyEnvelope(raw, node.identityKey, GatewayHealthReport);
  } catch (err) {
    throw new GatewayReportError(`gateway health report from ${reporter}: ${errorMessage(err)}`, { cause: err });
  }
  if (Math.abs(now - report.at) > maxClockSkewMs) {
    throw new GatewayReportError(`gateway health report from ${reporter}: field at ${report.at} is ${now - report.at} ms off the coordinator's clock (allowed ±${maxClockSkewMs} ms)`);
  }
  return report;
}

/** What the intake needs of the registry. */
export interface GatewayElections {
  liveNode(name: string): NodeRecord | undefined;
  setUnhealthyGateways(unhealthy: ReadonlySet<string>): Promise<void>;
}

export interface GatewayReportIntakeOptions {
  readonly elections: GatewayElections;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly maxClockSkewMs: number;
  readonly health?: GatewayHealth;
  /** Refuses reports over REQUEST_MAX_BYTES['gateway report'] unread (default: its own, on `logger` and `clock`). */
  readonly sizes?: RequestSizeGate;
}

/** The leader's side: verified reports in, re-elections out (only when the unhealthy set changes). */
export class GatewayReportIntake {
  readonly health: GatewayHealth;
  /** Reports refused so far (forged, stale, unknown reporter), for tests and status. */
  refused = 0;
  /** The unhealthy set last handed to the elections (a change is logged once). */
  private lastUnhealthy: ReadonlySet<string> = new Set();
  private readonly sizes: RequestSizeGate;

  constructor(private readonly o: GatewayReportIntakeOptions) {
    this.health = o.health ?? new GatewayHealth();
    this.sizes = o.sizes ?? new RequestSizeGate(o.logger, o.clock);
  }

  async handle(raw: Uint8Array): Promise<void> {
    if (this.sizes.refusal(raw, 'gateway report')) {
      this.refused++;
      return;
    }
    const now = this.o.clock.now();
    let report: GatewayHealthReport;
    try {
      report = await verifyGatewayReport(raw, (n) => this.o.elections.liveNode(n), now, this.o.maxClockSkewMs);
    } catch (err) {
      this.refused++;
      this.o.logger.debug({ err: errorMessage(err) }, 'gateway health report refused');
      return;
    }
    if (!this.health.accept(report, now, (g) => this.o.elections.liveNode(g) !== undefined)) {
      this.refused++;
      return;
    }
    await this.refresh();
  }

  /** Re-evaluates (verdicts age out) and hands the unhealthy set to the elections. */
  async refresh(): Promise<void> {
    const now = this.o.clock.now();
    const unhealthy = this.health.unhealthy(now);
    for (const g of unhealthy) {
      if (this.lastUnhealthy.has(g)) continue;
      const v = this.health.view(g, now);
      this.o.logger.info({ gateway: g, down: v.down, up: v.up }, 'gateway reported down by a quorum of its peers');
    }
    for (const g of this.lastUnhealthy) if (!unhealthy.has(g)) this.o.logger.info({ gateway: g }, 'gateway no longer reported down');
    this.lastUnhealthy = unhealthy;
    await this.o.elections.setUnhealthyGateways(unhealthy);
  }
}
