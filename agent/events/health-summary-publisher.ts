// Publishes this node's health summary (protocol/health-summary.ts) every interval: built from the
// status document the agent already serves, signed with the node's identity key, sent with core
// NATS (the coordinator's stream keeps the latest). Nothing is sent while disconnected.
import type { Clock } from '../../lib/clock.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { HEALTH_SUMMARY_INTERVAL_MS, HEALTH_SUMMARY_MAX_PEERS, healthSubject, type HealthSummary, type SummaryPeer } from '../../protocol/health-summary.ts';
import type { NatsPublish } from '../../protocol/events.ts';
import { signEnvelope } from '../../protocol/signing.ts';
import type { AgentStatus } from '../../protocol/status.ts';

/** WireGuard re-handshakes every 2 minutes on an active session. */
const HANDSHAKE_UP_MS = 180_000;

function stateOf(p: AgentStatus['peers'][number], now: number): SummaryPeer['state'] {
  if (p.probe) return p.probe.state;
  const never = p.latestHandshakeAt === null || p.latestHandshakeAt <= 0;
  if (!never && now - (p.latestHandshakeAt ?? 0) < HANDSHAKE_UP_MS) return 'up';
  if (p.persistentKeepalive === 0 && (!never || p.txBytes === 0)) return 'idle';
  return never ? 'never' : 'stale';
}

/** Pure: the summary of a status document (null until the node has a name and cluster). */
export function summaryOf(status: AgentStatus, now: number): HealthSummary {
  return {
    v: 1,
    node: status.node.name,
    cluster: status.node.cluster,
    at: now,
    ready: status.ready,
    peers: status.peers.slice(0, HEALTH_SUMMARY_MAX_PEERS).map((p) => ({
      peer: p.name,
      state: stateOf(p, now),
      path: p.path,
      via: p.via,
      carries: p.carries.filter((c) => c !== p.name).slice(0, HEALTH_SUMMARY_MAX_PEERS),
      handshakeAgeS: p.latestHandshakeAt === null || p.latestHandshakeAt <= 0 ? null : Math.max(0, Math.round((now - p.latestHandshakeAt) / 1000)),
      rttMs: p.probe?.rttMs ?? null,
      rxBytes: Math.max(0, Math.trunc(p.rxBytes)),
      txBytes: Math.max(0, Math.trunc(p.txBytes)),
      reason: p.probe && p.probe.state !== 'up' ? p.probe.reason.slice(0, 200) : null,
    })),
  };
}

export interface HealthSummaryPublisherOptions {
  readonly nc: () => NatsPublish | undefined;
  readonly status: () => Promise<AgentStatus>;
  readonly identitySecretKey: string;
  readonly subjectPrefix: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly intervalMs?: number;
}

export class HealthSummaryPublisher {
  private loop: Promise<void> | undefined;
  constructor(private readonly o: HealthSummaryPublisherOptions) {}

  /** Publishes one summary now; false when not connected or it failed. */
  async publishOnce(): Promise<boolean> {
    const nc = this.o.nc();
    if (nc === undefined) return false;
    try {
      const summary = summaryOf(await this.o.status(), this.o.clock.now());
      const envelope = await signEnvelope(summary, this.o.identitySecretKey);
      nc.publish(healthSubject(this.o.subjectPrefix, summary.node), JSON.stringify(envelope));
      return true;
    } catch (err) {
      this.o.logger.debug({ err: errorMessage(err) }, 'health summary not published');
      return false;
    }
  }

  start(signal: AbortSignal): void {
    const interval = this.o.intervalMs ?? HEALTH_SUMMARY_INTERVAL_MS;
    this.loop = (async () => {
      while (!signal.aborted) {
        await this.o.clock.sleep(interval, signal);
        if (!signal.aborted) await this.publishOnce();
      }
    })();
  }

  async stop(): Promise<void> {
    await this.loop;
  }
}
