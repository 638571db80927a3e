// Everything the agent measures about its own health, behind one object the agent wires in with a
// few lines: the peer prober, control-plane liveness, the live interface MTU, and `ping`.
import type { Clock } from '../../lib/clock.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { Runner } from '../../lib/runner.ts';
import type { ControlPlaneHealth, PeerProbe, PingReply, ProbeState } from '../../protocol/health.ts';
import type { NodeRecord } from '../../protocol/messages.ts';
import type { DesiredState } from '../plan/model.ts';
import { controlPlaneHealth, type ControlPlaneFacts } from './control-plane-health.ts';
import { readLiveMtu } from './live-mtu.ts';
import { icmpPing, pathTo, pingVerdict, resolveTarget, type PingExplainer, type PingQuery } from './ping.ts';
import { Prober, type ProberTuning } from './prober.ts';
import { activeGateways, probeTargets } from './targets.ts';
import { GatewayReporter, type GatewayReporterOptions } from './gateway-reporter.ts';
import type { ClusterRecord } from '../../protocol/messages.ts';

export interface AgentHealthOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly runner: Runner;
  readonly interfaceName: string;
  readonly probe?: ProberTuning;
  readonly explain?: PingExplainer;
  /** A probe to this peer was lost after it had answered (or never answered yet): a peer removed by hand is re-added by the reconcile this asks for. `gateway`: an active gateway (probed fast). */
  readonly onPeerLost?: (name: string, gateway: boolean) => void;
  /** Signed gateway verdicts to the coordinator (health-driven failover); off when absent. */
  readonly gatewayReports?: Omit<GatewayReporterOptions, 'clock' | 'logger'>;
}

export class AgentHealth {
  readonly prober: Prober;
  private self: string | null = null;

  readonly gatewayReporter: GatewayReporter | null;

  constructor(private readonly o: AgentHealthOptions) {
    this.gatewayReporter = o.gatewayReports ? new GatewayReporter({ clock: o.clock, logger: o.logger, ...o.gatewayReports }) : null;
    const reporter = this.gatewayReporter;
    this.prober = new Prober({
      clock: o.clock,
      logger: o.logger,
      ...o.probe,
      ...(o.onPeerLost ? { onFirstLoss: o.onPeerLost } : {}),
      ...(reporter ? { onStateChange: (name: string, state: ProbeState) => reporter.observe(name, state) } : {}),
    });
  }

  start(): void {
    this.prober.start();
    this.gatewayReporter?.start();
  }

  async stop(): Promise<void> {
    await this.gatewayReporter?.stop();
    await this.prober.stop();
  }

  /** Probes every peer now (after the interface came back empty: the probes start the handshakes). */
  kick(): void {
    this.prober.tick(true);
  }

  /** After every reconcile: our overlay IP and the peers just applied. */
  sync(overlayIp: string | null, desired: DesiredState | null, nodes: ReadonlyMap<string, NodeRecord>, clusters: ReadonlyMap<string, ClusterRecord> = new Map()): void {
    const gateways = activeGateways(clusters);
    this.gatewayReporter?.setGateways(gateways);
    this.prober.setLocalIp(overlayIp);
    this.prober.setTargets(probeTargets(desired, nodes, gateways));
    for (const n of nodes.values()) if (n.overlayIp === overlayIp) this.self = n.name;
  }

  peer(name: string): PeerProbe | null {
    return this.prober.health(name);
  }

  controlPlane(facts: ControlPlaneFacts | null): ControlPlaneHealth {
    return controlPlaneHealth(facts, this.o.clock.now());
  }

  async liveMtu(): Promise<number | null> {
    return (await readLiveMtu(this.o.runner, this.o.interfaceName)).mtu;
  }

  async ping(q: PingQuery, desired: DesiredState | null, nodes: ReadonlyMap<string, NodeRecord>): Promise<PingReply> {
    const { node, podIp } = resolveTarget(q.target, nodes);
    const path = node === null ? { path: 'unknown', via: null, text: 'unknown' } : pathTo(node, this.self ?? '', desired);
    const explanation = node === null ? null : (this.o.explain?.({ node: node.name, ip: node.overlayIp, podIp }) ?? null);
    const probeP = (async () => {
      if (node === null) return { sent: 0, received: 0, rttMs: [] as number[] };
      try {
        const results = await this.prober.probe(node.overlayIp, { count: q.count, timeoutMs: q.timeoutMs, gapMs: 200, ...(q.bytes === undefined ? {} : { bytes: q.bytes }) });
        const rtts = results.flatMap((r) => (r.rttMs === null ? [] : [Math.round(r.rttMs * 100) / 100]));
        return { sent: results.length, received: rtts.length, rttMs: rtts };
      } catch (err) {
        this.o.logger.debug({ err: errorMessage(err) }, 'ping: cannot probe');
        return { sent: 0, received: 0, rttMs: [] as number[] };
      }
    })();
    const podP = podIp === null ? Promise.resolve(null) : icmpPing(this.o.runner, podIp, this.prober.localIp, q.count, q.timeoutMs).then((r) => ({ ...r, ip: podIp }));
    const [probe, pod] = await Promise.all([probeP, podP]);
    return pingVerdict({ target: q.target, node, path, probe, pod, explanation });
  }
}
