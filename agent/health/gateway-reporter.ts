// Tells the coordinator what our probes see of the active gateways we peer with, so a gateway whose
// tunnels are down is failed over in seconds instead of after its node TTL. Reports are signed with
// our identity key (protocol/gateway-health.ts): the coordinator counts a verdict only from the
// node that signed it, and fails over only on a quorum of distinct reporters.
//
// Rate (bounded, documented in docs/agent.md): one report when a gateway's state changes, then one
// every `repeatMs` (2 s) while some gateway is down, else one every `keepaliveMs` (8 s) so `up`
// verdicts stay fresh (the coordinator ignores verdicts older than 10 s). Nothing while we peer
// with no gateway. One report is one small NATS message listing every gateway we probe.
//
// Grace for a NEW gateway (hysteresis against flapping): a gateway we have not yet seen answer is
// reported `down` only once it has been our gateway for `newGatewayGraceMs` (6 s). Right after a
// failover the new gateway is a new WireGuard peer; a node behind NAT reaches it only once the new
// gateway has applied us as a peer, and if its first handshake came too early WireGuard retries
// after 5 s — measured on the lab: both NATed nodes said `down` about a freshly elected gateway
// 2.2 s after the election, a quorum against one `up`, 0.3 s before they said `up` (with a third
// eligible node that would have failed over again). A gateway that has answered once is reported
// `down` at once, as before.
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
  /** A gateway never seen answering is reported down only after being ours this long. Default 6000. */
  readonly newGatewayGraceMs?: number;
}

export const GATEWAY_REPORT_DEFAULTS = { repeatMs: 2000, keepaliveMs: 8000, newGatewayGraceMs: 6000 } as const;

interface Known {
  /** When it became one of our gateways (our clock). */
  readonly since: number;
  /** It has answered our probes at least once since. */
  answered: boolean;
}

export class GatewayReporter {
  private gateways: ReadonlySet<string> = new Set();
  private readonly states = new Map<string, 'up' | 'down'>();
  private readonly known = new Map<string, Known>();
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
    for (const name of this.known.keys()) if (!gateways.has(name)) this.known.delete(name);
    const now = this.o.clock.now();
    for (const name of gateways) if (!this.known.has(name)) this.known.set(name, { since: now, answered: false });
  }

  /** A probe state change (agent/health/prober.ts onStateChange); reported at once for gateways (a `down` of a new one after its grace). */
  observe(name: string, state: ProbeState): void {
    if (!this.gateways.has(name) || state === 'pending') return;
    const k = this.known.get(name);
    if (k && state === 'up') k.answered = true;
    if (this.states.get(name) === state) return;
    this.states.set(name, state);
    if (this.reportable(name, state)) this.send();
  }

  /** The verdicts the next report carries (a new gateway's `down` not before its grace ends). */
  verdicts(): GatewayVerdict[] {
    return [...this.states]
      .filter(([gateway, state]) => this.reportable(gateway, state))
      .map(([gateway, state]) => ({ gateway, state }))
      .sort((a, b) => (a.gateway < b.gateway ? -1 : 1));
  }

  private reportable(gateway: string, state: 'up' | 'down'): boolean {
    if (state === 'up') return true;
    const k = this.known.get(gateway);
    return k === undefined || k.answered || this.o.clock.now() - k.since >= (this.o.newGatewayGraceMs ?? GATEWAY_REPORT_DEFAULTS.newGatewayGraceMs);
  }

  private async run(): Promise<void> {
    const repeatMs = this.o.repeatMs ?? GATEWAY_REPORT_DEFAULTS.repeatMs;
    const keepaliveMs = this.o.keepaliveMs ?? GATEWAY_REPORT_DEFAULTS.keepaliveMs;
    while (!this.abort.signal.aborted) {
      await this.o.clock.sleep(repeatMs, this.abort.signal);
      if (this.abort.signal.aborted || this.states.size === 0) continue;
      const anyDown = this.verdicts().some((v) => v.state === 'down');
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
