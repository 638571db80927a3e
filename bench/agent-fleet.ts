// Simulated agents for the control-plane benchmarks: real signed registrations and heartbeats on
// one NATS connection (the coordinator cannot tell them from real agents). Heartbeats follow the
// agent's rules (`heartbeatDelayMs`): at the interval the coordinator advised ±10 %, after a NATS
// reconnect at a random moment within half an interval, and a re-registration when the
// coordinator answers "unknown-node".
import { performance } from 'node:perf_hooks';
import type { NatsConnection } from '@nats-io/transport-node';
import { announcedHeartbeatDelayMs, heartbeatDelayMs, heartbeatRetryDelayMs, MAX_IMMEDIATE_RESENDS } from '../agent/control/heartbeat-schedule.ts';
import { LeaderUp } from '../protocol/leader-up.ts';
import { onConnectionStatus } from '../lib/nats-status.ts';
import { errorMessage } from '../lib/errors.ts';
import { mapLimit } from '../lib/pool.ts';
import { HeardAgainTracker } from './heard-again.ts';
import { benchHeartbeatForm, simulatedAgent, rpc, signedRegistration, type SimulatedAgent } from './simulated-agent.ts';
import { heartbeatBody } from '../protocol/heartbeat-mac.ts';
import type { JoinCredential } from '../protocol/join-credential.ts';
import { HeartbeatReply, RegisterReply, type Heartbeat } from '../protocol/messages.ts';
import { openEnvelopeUnverified } from '../protocol/signing.ts';
import { subjects } from '../protocol/subjects.ts';

export const CLUSTERS = 10;

/** Cluster `c` of the fleet owns 10.(16c).0.0/12 (enrolled so by the bench's control plane). */
export function clusterRange(c: number): string {
  return `10.${16 * c}.0.0/12`;
}

/** Where the simulated agents register and how their registrations get their cluster's join signature. */
export interface FleetControlPlane {
  readonly nc: NatsConnection;
  readonly prefix: string;
  credentialFor(cluster: string): JoinCredential | undefined;
  /**
   * The coordinator's public key: given, the agents send MAC heartbeats (protocol/heartbeat-mac.ts)
   * as the agent does, K agreed at registration, falling back to signed ones when refused (a
   * coordinator from before them: XL_BENCH_COORDINATOR_DIR), unless XL_BENCH_HEARTBEAT_FORM=signed.
   */
  readonly coordinatorKey?: string | undefined;
}

/**
 * Agent `i` of a synthetic fleet: unique name, WireGuard key and /26 pod CIDR inside its cluster's
 * range (`clusterRange`; 16384 nodes per cluster); two gateways per cluster.
 */
export function makeAgent(i: number): Promise<SimulatedAgent> {
  const hi = (i >> 8) & 255;
  const lo = i & 255;
  const c = i % CLUSTERS;
  const j = Math.floor(i / CLUSTERS) % 16_384;
  return simulatedAgent(`node-${i}`, {
    cluster: `c${c}`,
    location: `region-${c}`,
    podCidrs: [`10.${16 * c + (j >> 10)}.${(j >> 2) & 255}.${(j & 3) * 64}/26`],
    endpoints: [`198.51.100.${1 + (i % 250)}:51820`],
    privateAddresses: [`172.16.${hi}.${lo}`],
    gatewayEligible: Math.floor(i / CLUSTERS) < 2,
  });
}

export async function makeAgents(from: number, count: number): Promise<SimulatedAgent[]> {
  return Promise.all(Array.from({ length: count }, (_, k) => makeAgent(from + k)));
}

export interface RegistrationRun {
  /** Reply latency of each agent's accepted registration (ms, request sent to reply received). */
  readonly latenciesMs: number[];
  /** Requests that had to be repeated (coordinator answered "unavailable" or timed out). */
  readonly retries: number;
  readonly failed: number;
  readonly wallMs: number;
  /** Latest `generation` per agent name from the replies. */
  readonly generations: Map<string, number>;
  /** Heartbeat interval the coordinator advised. */
  readonly heartbeatIntervalMs: number;
}

export interface HeartbeatCounters {
  sent: number;
  ok: number;
  unknownNode: number;
  /** Heartbeats answered `stale-epoch` (a new leader) and re-signed at once. */
  staleEpoch: number;
  /** MAC heartbeats refused (`invalid`/`unauthorized`) and sent again signed at once. */
  macRefused: number;
  failed: number;
  reregistered: number;
  latenciesMs: number[];
  /** When each heartbeat was sent (performance.now() ms), to see whether they bunch up. */
  sentAtMs: number[];
  /** When each heartbeat was answered ok (performance.now() ms): the coordinator's throughput. */
  answeredAtMs: number[];
  /** Failure reasons (error message or reply code) and how often each occurred. */
  reasons: Map<string, number>;
}

const newCounters = (): HeartbeatCounters => ({ sent: 0, ok: 0, unknownNode: 0, staleEpoch: 0, macRefused: 0, failed: 0, reregistered: 0, latenciesMs: [], sentAtMs: [], answeredAtMs: [], reasons: new Map() });

function countReason(c: HeartbeatCounters, reason: string): void {
  c.failed++;
  c.reasons.set(reason, (c.reasons.get(reason) ?? 0) + 1);
}

export class AgentFleet {
  private readonly subjects: ReturnType<typeof subjects>;
  private timer: NodeJS.Timeout | undefined;
  private stopStatus: (() => void) | undefined;
  private readonly due = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  counters: HeartbeatCounters = newCounters();
  /** When each agent's latest heartbeat was answered ok (performance.now() ms): "every node heard again". */
  readonly lastOkAt = new Map<string, number>();
  /** Every node's heartbeats after an event (`heardAgain.mark(t)` at a coordinator kill): bench/heard-again.ts. */
  readonly heardAgain = new HeardAgainTracker();
  /** Unanswered heartbeats in a row per agent: retried like the agent does (heartbeatRetryDelayMs), not an interval later. */
  private readonly failures = new Map<string, number>();
  private intervalMs = 0;
  /** The epoch of each agent's last heartbeat answered ok: a leader-up of that epoch has heard it. */
  private readonly heardEpochs = new Map<string, string>();
  private stopLeaderUp: (() => void) | undefined;
  /** Leader-up announcements the fleet acted on. */
  leaderUps = 0;

  private readonly nc: NatsConnection;

  constructor(
    private readonly controlPlane: FleetControlPlane,
    readonly agents: readonly SimulatedAgent[],
    private readonly timeoutMs = 5000,
  ) {
    this.nc = controlPlane.nc;
    this.subjects = subjects(controlPlane.prefix);
    this.macWith = benchHeartbeatForm() === 'mac' ? controlPlane.coordinatorKey : undefined;
  }

  /** The coordinator key heartbeat MACs are agreed with (undefined: signed heartbeats). */
  private readonly macWith: string | undefined;

  /** One signed registration; resolves to the reply and the request's round trip. */
  async registerOnce(agent: SimulatedAgent): Promise<{ reply: RegisterReply; ms: number }> {
    const request = agent.request();
    const body = await signedRegistration(request, agent.identity.secretKey, agent.joinCredential ?? this.controlPlane.credentialFor(request.cluster));
    const t0 = performance.now();
    const reply = await rpc(this.nc, this.subjects.register, body, RegisterReply, this.timeoutMs);
    if (reply.epoch !== undefined) agent.epoch = reply.epoch;
    // K is agreed here, before any measured heartbeat window (once per agent and coordinator key).
    if (reply.ok) agent.heartbeatMac.registered(this.macWith);
    return { reply, ms: performance.now() - t0 };
  }

  /** Registers every agent with at most `concurrency` requests in flight, retrying "unavailable". */
  async registerAll(concurrency: number, agents: readonly SimulatedAgent[] = this.agents): Promise<RegistrationRun> {
    const latenciesMs: number[] = [];
    const generations = new Map<string, number>();
    let retries = 0;
    let failed = 0;
    let heartbeatIntervalMs = 0;
    const t0 = performance.now();
    await mapLimit(agents, concurrency, async (agent) => {
      for (let attempt = 1; attempt <= 5; attempt++) {
        try {
          const { reply, ms } = await this.registerOnce(agent);
          if (reply.ok) {
            latenciesMs.push(ms);
            heartbeatIntervalMs = reply.heartbeatIntervalMs;
            generations.set(agent.name, recordGeneration(reply));
            return;
          }
          if (reply.error.code !== 'unavailable') throw new Error(`${reply.error.code}: ${reply.error.message}`);
        } catch (err) {
          if (attempt === 5 || !isRetryable(err)) {
            failed++;
            console.error(`registration of ${agent.name} failed: ${errorMessage(err)}`);
            return;
          }
        }
        retries++;
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
      }
    });
    return { latenciesMs, retries, failed, wallMs: performance.now() - t0, generations, heartbeatIntervalMs };
  }

  /** Heartbeats every agent every `intervalMs` (random phase), until stopHeartbeats(). */
  startHeartbeats(intervalMs: number): void {
    if (this.timer) return;
    this.intervalMs = intervalMs;
    const now = performance.now();
    for (const a of this.agents) this.due.set(a.name, now + Math.random() * intervalMs);
    // Like the agent: after a reconnect, heartbeat soon (to learn whether the coordinator knows us),
    // each at its own random moment within half an interval.
    this.stopStatus = onConnectionStatus(this.nc, (s) => {
      if (s.type !== 'reconnect') return;
      const t = performance.now();
      for (const a of this.agents) this.due.set(a.name, t + heartbeatDelayMs('after-reconnect', intervalMs, Math.random()));
    });
    // Like the agent: a new leader's signed "leader up" makes every agent it has not heard yet
    // heartbeat at a random moment within the announced spread (protocol/leader-up.ts; the bench
    // trusts its coordinator and reads the announcement unverified).
    // XL_BENCH_NO_LEADER_UP=1: agents deaf to it (an A/B of the announcement; an old nats-config).
    // XL_BENCH_SPREAD_MS=<ms>: agents use this spread instead of the announced one (an A/B of the spread).
    const spreadOverride = process.env['XL_BENCH_SPREAD_MS'] === undefined ? undefined : Number(process.env['XL_BENCH_SPREAD_MS']);
    const sub = this.nc.subscribe(process.env['XL_BENCH_NO_LEADER_UP'] === '1' ? `${this.subjects.leaderUp}.off` : this.subjects.leaderUp, {
      callback: (err, msg) => {
        if (err) return;
        const parsed = LeaderUp.safeParse(openEnvelopeUnverified(JSON.parse(msg.string()) as never));
        if (!parsed.success) return;
        const up = parsed.data;
        this.leaderUps++;
        const t = performance.now();
        for (const a of this.agents) {
          a.epoch = up.epoch;
          if (this.heardEpochs.get(a.name) === up.epoch) continue;
          const at = t + announcedHeartbeatDelayMs(spreadOverride ?? up.spreadMs, Math.random());
          if (at < (this.due.get(a.name) ?? Infinity)) this.due.set(a.name, at);
        }
      },
    });
    this.stopLeaderUp = () => sub.unsubscribe();
    this.timer = setInterval(() => {
      const t = performance.now();
      for (const a of this.agents) {
        if ((this.due.get(a.name) ?? Infinity) > t) continue;
        // Next one an interval after this one starts (an unanswered request must not stall the rest).
        this.due.set(a.name, t + heartbeatDelayMs('interval', intervalMs, Math.random()));
        const p = this.heartbeat(a).finally(() => this.inFlight.delete(p));
        this.inFlight.add(p);
      }
    }, 20);
  }

  async stopHeartbeats(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.stopStatus?.();
    this.stopLeaderUp?.();
    await Promise.all([...this.inFlight]);
  }

  /** How many agents send MAC'd and how many signed heartbeats now. */
  heartbeatForms(): { mac: number; signed: number } {
    const mac = this.agents.filter((a) => a.heartbeatMac.current !== undefined).length;
    return { mac, signed: this.agents.length - mac };
  }

  resetCounters(): HeartbeatCounters {
    const c = this.counters;
    this.counters = newCounters();
    return c;
  }

  private retrySoon(name: string): void {
    const n = (this.failures.get(name) ?? 0) + 1;
    this.failures.set(name, n);
    const at = performance.now() + heartbeatRetryDelayMs(n, this.intervalMs, Math.random());
    if (at < (this.due.get(name) ?? Infinity)) this.due.set(name, at);
  }

  private async heartbeat(agent: SimulatedAgent, resends = 0): Promise<void> {
    const c = this.counters;
    // The epoch the agent learned (SimulatedAgent.epoch, protocol/coordinator-epoch.ts): signed into its heartbeats, like the agent.
    const epoch = agent.epoch;
    const hb: Heartbeat = { v: 1, name: agent.name, identityKey: agent.identity.publicKey, generation: 0, sentAt: agent.nextSentAt(), ...(epoch === undefined ? {} : { epoch }) };
    const mac = agent.heartbeatMac.current;
    const body = heartbeatBody(hb, agent.identity, mac);
    c.sent++;
    const t0 = performance.now();
    c.sentAtMs.push(t0);
    this.heardAgain.sent(agent.name, t0);
    let reply: HeartbeatReply;
    try {
      reply = await rpc(this.nc, this.subjects.heartbeat, body, HeartbeatReply, this.timeoutMs);
    } catch (err) {
      this.heardAgain.failed(agent.name, t0, performance.now());
      countReason(c, errorMessage(err).slice(0, 80));
      this.retrySoon(agent.name);
      return;
    }
    c.latenciesMs.push(performance.now() - t0);
    if (reply.epoch !== undefined) agent.epoch = reply.epoch;
    if (reply.ok) {
      c.ok++;
      if (epoch !== undefined) this.heardEpochs.set(agent.name, reply.epoch ?? epoch);
      const at = performance.now();
      c.answeredAtMs.push(at);
      this.lastOkAt.set(agent.name, at);
      this.heardAgain.answered(agent.name, t0, at);
      this.failures.delete(agent.name);
      return;
    }
    if (resends < MAX_IMMEDIATE_RESENDS && agent.heartbeatMac.refused(mac, reply.error)) {
      // Like the agent: a coordinator that refuses MAC heartbeats gets signed ones from now on, the first at once.
      c.macRefused++;
      await this.heartbeat(agent, resends + 1);
      return;
    }
    if ((reply.error.code === 'stale-epoch' || reply.error.code === 'epoch-required') && resends < MAX_IMMEDIATE_RESENDS) {
      // Like the agent: a new leader took over; re-signed with its epoch at once (not a failure).
      c.staleEpoch++;
      await this.heartbeat(agent, resends + 1);
      return;
    }
    this.heardAgain.failed(agent.name, t0, performance.now());
    if (reply.error.code !== 'unknown-node') {
      countReason(c, `${reply.error.code}: ${reply.error.message.slice(0, 80)}`);
      // Like the agent: a coordinator still taking over is retried soon.
      if (reply.error.code === 'unavailable' || reply.error.code === 'stale-epoch' || reply.error.code === 'epoch-required') this.retrySoon(agent.name);
      return;
    }
    c.unknownNode++;
    try {
      if ((await this.registerOnce(agent)).reply.ok) c.reregistered++;
    } catch {
      // Counted as unknown-node; the next heartbeat tries again.
    }
  }
}

function isRetryable(err: unknown): boolean {
  // Timeouts and "no responders" (no leader subscribed yet) are worth another try.
  const text = errorMessage(err);
  return /timeout|no responders|503/i.test(text);
}

/** The generation inside a register reply's record (read unverified: the bench trusts its coordinator). */
function recordGeneration(reply: Extract<RegisterReply, { ok: true }>): number {
  const payload = openEnvelopeUnverified(reply.record) as { generation?: unknown } | null;
  return typeof payload?.generation === 'number' ? payload.generation : -1;
}
