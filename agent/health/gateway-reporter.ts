// Tells the coordinator what our probes see of the active gateways we peer with, so a gateway whose
// tunnels are down is failed over in seconds instead of after its node TTL. Reports are signed with
// our identity key (protocol/gateway-health.ts): the coordinator counts a verdict only from the
// node that signed it, and fails over only on a quorum of distinct reporters.
//
// Rate (bounded, documented in docs/agent.md): one report when a gateway's state changes, then one
// every `repeatMs` (2 s) while some gateway is down, else one every `keepaliveMs` (8 s) so `up`
// verdicts stay fresh (the coordinator ignores verdicts older than 10 s). Nothing while we peer
// with no gateway. One report is one small NATS message listing every gateway we probe.
import type { Clock } from '../../lib/clock.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { GatewayHealthReport, GatewayVerdict } from '../../protocol/gateway-health.ts';
import type { ProbeState } from '../../protocol/health.ts';
import { signEnvelope } from '../../protocol/signing.ts';

export interface GatewayReporterOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** Our node name (the reporter). */
  readonly nodeName: () => string;
  /** Our identity key's secret half (the key in our NodeRecord): reports are signed with it. */
  readonly identitySecretKey: string;
  /** Publishes on the gateway-health subject; false when not connected (the next round retries). */
  readonly publish: (payload: Uint8Array) => boolean;
  readonly repeatMs?: number;
  readonly keepaliveMs?: number;
}

export const GATEWAY_REPORT_DEFAULTS = { repeatMs: 2000, keepaliveMs: 8000 } as const;

export class GatewayReporter {
  private gateways: ReadonlySet<string> = new Set();
  private readonly states = new Map<string, 'up' | 'down'>();
  private lastAt = 0;
  private lastSentAt: number | null = null;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private sending: Promise<void> = Promise.resolve();
  /** Reports published (tests, bench). */
  published = 0;

  constructor(private readonly o: GatewayReporterOptions) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
    await this.sending;
  }

  /** The active gateways we probe (changes with the mesh). Verdicts about others are dropped. */
  setGateways(gateways: ReadonlySet<string>): void {
    this.gateways = gateways;
    for (const name of this.states.keys()) if (!gateways.has(name)) this.states.delete(name);
  }

  /** A probe state change (agent/health/prober.ts onStateChange); reported at once for gateways. */
  observe(name: string, state: ProbeState): void {
    if (!this.gateways.has(name) || state === 'pending') return;
    if (this.states.get(name) === state) return;
    this.states.set(name, state);
    this.send();
  }

  /** The verdicts the next report carries. */
  verdicts(): GatewayVerdict[] {
    return [...this.states].map(([gateway, state]) => ({ gateway, state })).sort((a, b) => (a.gateway < b.gateway ? -1 : 1));
  }

  private async run(): Promise<void> {
    const repeatMs = this.o.repeatMs ?? GATEWAY_REPORT_DEFAULTS.repeatMs;
    const keepaliveMs = this.o.keepaliveMs ?? GATEWAY_REPORT_DEFAULTS.keepaliveMs;
    while (!this.abort.signal.aborted) {
      await this.o.clock.sleep(repeatMs, this.abort.signal);
      if (this.abort.signal.aborted || this.states.size === 0) continue;
      const anyDown = [...this.states.values()].includes('down');
      const since = this.lastSentAt === null ? Infinity : this.o.clock.now() - this.lastSentAt;
      if (anyDown || since >= keepaliveMs - repeatMs / 2) this.send();
    }
  }

  private send(): void {
    const verdicts = this.verdicts();
    if (verdicts.length === 0) return;
    // Strictly increasing per reporter: the coordinator refuses replays and reordered reports.
    const at = Math.max(this.o.clock.now(), this.lastAt + 1);
    this.lastAt = at;
    const report: GatewayHealthReport = { kind: 'gateway-health', v: 1, reporter: this.o.nodeName(), at, verdicts };
    this.sending = this.sending.then(async () => {
      try {
        const envelope = await signEnvelope(report, this.o.identitySecretKey);
        if (this.o.publish(new TextEncoder().encode(JSON.stringify(envelope)))) {
          this.published++;
          this.lastSentAt = this.o.clock.now();
        }
      } catch (err) {
        this.o.logger.debug({ err: errorMessage(err) }, 'gateway health report not sent');
      }
    });
  }
}
