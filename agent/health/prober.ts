// Active peer probing: every `intervalMs` one small UDP probe to each peer's overlay IP (through the
// tunnel), answered by the peer's prober, which also answers everyone else's probes on the same
// socket. Cost: per peer and interval one request out, one reply in (24 bytes + headers each way),
// plus the same for the peer's own probes of us — O(peers) datagrams per interval, no state on the
// responder. The rate is bounded: at most `maxProbesPerSecond` (default 250) probes leave per
// second, so past 500 peers each peer's interval stretches (1,000 peers: every 4 s, which still
// marks a dead path down within 15 s); sends are spread evenly over the interval (each peer has its
// own phase, a round every ≤ 250 ms and when a fast target is due), never one burst to every peer at once. A path that loses packets in either direction loses the round trip, so a one-way
// fault shows as `down` on both ends.
//
// The socket is bound to our overlay IP (re-bound when it changes): probes leave with it as source,
// so replies come back through the tunnel and WireGuard's cryptokey routing vouches for the sender.
import { createSocket, type Socket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import type { Clock } from '../../lib/clock.ts';
import { ClockTimer } from '../../lib/clock-timer.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { PeerProbe, ProbeState } from '../../protocol/health.ts';
import { PROBE_HEADER_BYTES, PROBE_PORT, decodeProbe, encodeProbe, replyTo } from './probe-packet.ts';

export interface ProbeTarget {
  readonly name: string;
  /** Overlay IP of the peer node. */
  readonly ip: string;
  /** An active gateway: probed every fastIntervalMs so a dead one is failed over quickly. */
  readonly fast?: boolean;
}

export interface ProberOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** Default PROBE_PORT. */
  readonly port?: number;
  /** Probe period per peer; a probe unanswered after one period is lost. Default 2000. */
  readonly intervalMs?: number;
  /** Consecutive losses that make a peer down. Default 3. */
  readonly downAfter?: number;
  /** Probes the loss percentage is computed over. Default 20. */
  readonly window?: number;
  /** Called with the peer's name when a probe to it is lost after an answered one (or the first ever): self-healing reconciles then. `fast`: it is a fast target (an active gateway). */
  readonly onFirstLoss?: (name: string, fast: boolean) => void;
  /** Called when a peer's state changes (up, down, pending). */
  readonly onStateChange?: (name: string, state: ProbeState) => void;
  /** Upper bound on probes sent per second to non-fast targets: the per-peer interval stretches past intervalMs when peers / rate is longer. Default 250. */
  readonly maxProbesPerSecond?: number;
  /** Probe period for `fast` targets (active gateways). Default 300. */
  readonly fastIntervalMs?: number;
  /** A probe to a `fast` target is lost after this long (a slow gateway still answers in time). Default 900. */
  readonly fastTimeoutMs?: number;
}

/** Knobs the agent passes through (tests make probing faster). */
export type ProberTuning = Pick<ProberOptions, 'port' | 'intervalMs' | 'downAfter' | 'window' | 'fastIntervalMs' | 'fastTimeoutMs' | 'maxProbesPerSecond'>;

export const PROBE_DEFAULTS = { intervalMs: 2000, downAfter: 3, window: 20, fastIntervalMs: 300, fastTimeoutMs: 900, maxProbesPerSecond: 250 } as const;

/** The longest gap between two probe rounds (each round sends to the peers that are due). */
const MAX_ROUND_MS = 250;

/** A one-off probe answer (crosslink ping): RTT, or null when lost. */
export interface ProbeResult {
  readonly seq: number;
  readonly rttMs: number | null;
  /** Reply only: request bytes the responder received. */
  readonly receivedBytes: number | null;
}

interface Track {
  ip: string;
  fast: boolean;
  lastSentAt: number | null;
  /** When the next probe is due (staggered per peer so the sends spread over the interval). */
  nextAt: number;
  sent: number;
  received: number;
  misses: number;
  /** Recent outcomes, newest last: RTT ms, or null for a loss. */
  history: (number | null)[];
  lastRtt: number | null;
  lastReplyAt: number | null;
  state: ProbeState;
  since: number;
}

interface Outstanding {
  readonly ip: string;
  readonly sentAt: number;
  readonly deadline: number;
  readonly done: (rtt: number | null, receivedBytes: number | null) => void;
}

export class Prober {
  private readonly port: number;
  private readonly intervalMs: number;
  private readonly downAfter: number;
  private readonly window: number;
  private readonly fastIntervalMs: number;
  private readonly fastTimeoutMs: number;
  private readonly maxRate: number;
  /** Targets that are not `fast` (what the rate bound divides among). */
  private slowCount = 0;
  private readonly session = randomInt(1, 0xffffffff);
  private seq = 0;
  private socket: Socket | null = null;
  private boundIp: string | null = null;
  private wantIp: string | null = null;
  private bindError: string | null = null;
  private binding: Promise<void> | null = null;
  private readonly tracks = new Map<string, Track>();
  private readonly outstanding = new Map<number, Outstanding>();
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;
  /** Datagrams sent and received by this prober (requests, replies), for the bench and metrics. */
  readonly counters = { requestsSent: 0, repliesReceived: 0, requestsAnswered: 0 };

  constructor(private readonly o: ProberOptions) {
    this.port = o.port ?? PROBE_PORT;
    this.intervalMs = o.intervalMs ?? PROBE_DEFAULTS.intervalMs;
    this.downAfter = o.downAfter ?? PROBE_DEFAULTS.downAfter;
    this.window = o.window ?? PROBE_DEFAULTS.window;
    this.fastIntervalMs = o.fastIntervalMs ?? PROBE_DEFAULTS.fastIntervalMs;
    this.fastTimeoutMs = o.fastTimeoutMs ?? PROBE_DEFAULTS.fastTimeoutMs;
    this.maxRate = o.maxProbesPerSecond ?? PROBE_DEFAULTS.maxProbesPerSecond;
    if (!(this.maxRate > 0)) throw new RangeError(`maxProbesPerSecond must be > 0, got ${this.maxRate}`);
  }

  /** The probe period of a non-fast peer now: intervalMs, stretched so that all of them together stay within maxProbesPerSecond. */
  get peerIntervalMs(): number {
    return Math.max(this.intervalMs, Math.ceil((this.slowCount * 1000) / this.maxRate));
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
    await this.binding;
    for (const o of this.outstanding.values()) o.done(null, null);
    this.outstanding.clear();
    this.closeSocket();
  }

  /** Our overlay IP (null: none yet); the socket is (re)bound to it. */
  setLocalIp(ip: string | null): void {
    if (ip === this.wantIp) return;
    this.wantIp = ip;
    this.bindError = null;
    this.ensureBound();
  }

  /** The peers to probe (an immutable snapshot); state is kept for names that stay. */
  setTargets(targets: readonly ProbeTarget[]): void {
    const now = this.o.clock.now();
    const keep = new Set(targets.map((t) => t.name));
    for (const name of this.tracks.keys()) if (!keep.has(name)) this.tracks.delete(name);
    const slow = targets.filter((t) => t.fast !== true).length;
    this.slowCount = slow;
    const every = this.peerIntervalMs;
    for (const t of targets) {
      const tr = this.tracks.get(t.name);
      if (tr && tr.ip === t.ip) {
        tr.fast = t.fast === true;
        continue;
      }
      // A new peer's first probe at a random moment within one interval (at once when it is fast):
      // a thousand peers at start-up are not probed in one burst.
      const nextAt = t.fast === true ? now : now + Math.floor(Math.random() * every);
      this.tracks.set(t.name, { ip: t.ip, fast: t.fast === true, lastSentAt: null, nextAt, sent: 0, received: 0, misses: 0, history: [], lastRtt: null, lastReplyAt: null, state: 'pending', since: now });
    }
  }

  get localIp(): string | null {
    return this.boundIp;
  }

  /** Why probing cannot run (socket not bound), or null. */
  get problem(): string | null {
    if (this.wantIp === null) return 'no overlay IP yet';
    if (this.boundIp !== this.wantIp) return `probe socket not bound to ${this.wantIp}:${this.port}${this.bindError ? `: ${this.bindError}` : ''}`;
    return null;
  }

  health(name: string): PeerProbe | null {
    const tr = this.tracks.get(name);
    if (!tr) return null;
    const now = this.o.clock.now();
    const losses = tr.history.filter((h) => h === null).length;
    const lossPct = tr.history.length === 0 ? 0 : Math.round((losses / tr.history.length) * 1000) / 10;
    return {
      state: tr.state,
      reason: this.reasonOf(tr, now),
      target: tr.ip,
      rttMs: tr.lastRtt,
      lossPct,
      window: tr.history.length,
      sent: tr.sent,
      received: tr.received,
      lastReplyAt: tr.lastReplyAt,
      since: tr.since,
    };
  }

  /** `name` is probed and its latest probe was lost (no answer since the streak began). */
  isLosing(name: string): boolean {
    const tr = this.tracks.get(name);
    return tr !== undefined && tr.misses > 0;
  }

  /** Sends `count` probes to `ip` one `gapMs` apart, each padded to `bytes`; resolves when all are answered or timed out. */
  async probe(ip: string, o: { count: number; timeoutMs: number; gapMs?: number; bytes?: number }): Promise<ProbeResult[]> {
    await this.binding;
    if (this.socket === null || this.boundIp === null) throw new Error(this.problem ?? 'probe socket not bound');
    const results: Promise<ProbeResult>[] = [];
    for (let i = 0; i < o.count; i++) {
      if (i > 0) await this.o.clock.sleep(o.gapMs ?? 1000, this.abort.signal);
      results.push(
        new Promise<ProbeResult>((resolve) => {
          // Lost after timeoutMs of the injected clock (ended early by an answer or stop()).
          const expiry = this.expiry(() => seq);
          const seq = this.send(
            ip,
            o.timeoutMs,
            (rtt, receivedBytes) => {
              expiry.cancel();
              resolve({ seq, rttMs: rtt, receivedBytes });
            },
            o.bytes,
          );
          expiry.arm(o.timeoutMs);
        }),
      );
    }
    return Promise.all(results);
  }

  private reasonOf(tr: Track, now: number): string {
    const ago = (t: number | null): string => (t === null ? 'never' : `${Math.max(0, Math.round((now - t) / 1000))}s ago`);
    const problem = this.problem;
    if (problem !== null && tr.state !== 'up') return problem;
    switch (tr.state) {
      case 'up':
        return tr.lastRtt === null ? 'answering' : `answered in ${tr.lastRtt.toFixed(1)} ms`;
      case 'down':
        return tr.received === 0
          ? `never answered (${tr.sent} probe${tr.sent === 1 ? '' : 's'} to ${tr.ip}:${this.port} lost)`
          : `no answer to the last ${tr.misses} probes to ${tr.ip}:${this.port} (last answer ${ago(tr.lastReplyAt)})`;
      case 'pending':
        return tr.sent === 0 ? 'not probed yet' : `waiting for an answer from ${tr.ip}:${this.port} (${tr.misses} lost)`;
    }
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      this.tick();
      await this.o.clock.sleep(this.nextRoundIn(), signal);
    }
  }

  /** Until the next round: at most MAX_ROUND_MS (or intervalMs), and no later than the next fast
   *  target is due — a fixed 250 ms round stretched the 300 ms gateway period to 250–500 ms. */
  private nextRoundIn(): number {
    let wait = Math.min(this.intervalMs, MAX_ROUND_MS);
    if (this.tracks.size === this.slowCount) return wait;
    const now = this.o.clock.now();
    for (const tr of this.tracks.values()) if (tr.fast) wait = Math.min(wait, Math.max(1, tr.nextAt - now));
    return wait;
  }

  /** One round: expire overdue probes, then probe every peer that is due (`force`: every peer). */
  tick(force = false): void {
    const now = this.o.clock.now();
    for (const [seq, o] of this.outstanding) if (o.deadline <= now) this.expire(seq);
    if (this.socket === null || this.boundIp === null) {
      this.ensureBound();
      return;
    }
    const slowEvery = this.peerIntervalMs;
    for (const [name, tr] of this.tracks) {
      const every = tr.fast ? this.fastIntervalMs : slowEvery;
      // 10 % slack (of the base period): a loop that wakes a little early still probes on this round.
      if (!force && now < tr.nextAt - (tr.fast ? this.fastIntervalMs : this.intervalMs) * 0.1) continue;
      tr.sent++;
      tr.lastSentAt = now;
      // Keep the peer's phase (no drift towards one burst); a late round does not make it send twice.
      tr.nextAt = Math.max(tr.nextAt + every, now + every * 0.5);
      const timeoutMs = tr.fast ? this.fastTimeoutMs : this.intervalMs;
      const seq = this.send(tr.ip, timeoutMs, (rtt) => this.record(name, tr, rtt));
      // Fast targets expire on their own timer (the injected clock), not at the next round (failover speed).
      if (tr.fast) this.expiry(() => seq).arm(timeoutMs);
    }
  }

  private record(name: string, tr: Track, rtt: number | null): void {
    if (this.tracks.get(name) !== tr) return; // removed or replaced meanwhile
    const now = this.o.clock.now();
    tr.history.push(rtt);
    if (tr.history.length > this.window) tr.history.shift();
    let next: ProbeState = tr.state;
    if (rtt !== null) {
      tr.received++;
      tr.misses = 0;
      tr.lastRtt = rtt;
      tr.lastReplyAt = now;
      next = 'up';
    } else {
      tr.misses++;
      if (tr.misses === 1) this.o.onFirstLoss?.(name, tr.fast);
      if (tr.misses >= this.downAfter) next = 'down';
    }
    if (next !== tr.state) {
      this.o.logger.info({ peer: name, from: tr.state, to: next, ip: tr.ip, reason: next === 'down' ? `${tr.misses} probes lost` : `answered in ${rtt?.toFixed(1) ?? '?'} ms` }, `peer probe state ${next}`);
      tr.state = next;
      tr.since = now;
      this.o.onStateChange?.(name, next);
    }
  }

  private send(ip: string, timeoutMs: number, done: Outstanding['done'], bytes = PROBE_HEADER_BYTES): number {
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const now = this.o.clock.now();
    this.outstanding.set(seq, { ip, sentAt: now, deadline: now + timeoutMs, done });
    const packet = encodeProbe({ type: 'request', session: this.session, seq, sentAt: now, receivedBytes: 0 }, bytes);
    this.counters.requestsSent++;
    // No per-send callback (cheaper at hundreds of probes a second): a send error (no route,
    // EMSGSIZE) reaches the socket's 'error' listener, and the probe expires like any lost one.
    this.socket?.send(packet, this.port, ip);
    return seq;
  }

  /** A timer (the injected clock's) that reports the probe `seq()` names lost; cancelled by stop(). */
  private expiry(seq: () => number): ClockTimer {
    return new ClockTimer({
      clock: this.o.clock,
      fire: () => this.expire(seq()),
      onError: (err) => this.o.logger.error({ err: errorMessage(err) }, 'expiring a probe failed'),
      signal: this.abort.signal,
    });
  }

  private expire(seq: number): void {
    const o = this.outstanding.get(seq);
    if (!o) return;
    this.outstanding.delete(seq);
    o.done(null, null);
  }

  private onMessage(msg: Buffer, from: { address: string; port: number }): void {
    let p;
    try {
      p = decodeProbe(msg);
    } catch {
      return;
    }
    if (p.type === 'request') {
      this.counters.requestsAnswered++;
      this.socket?.send(replyTo(p, msg.length), from.port, from.address);
      return;
    }
    if (p.session !== this.session) return;
    const o = this.outstanding.get(p.seq);
    // Only the address we probed may answer (a reply through another peer's tunnel is not this path).
    if (!o || o.ip !== from.address) return;
    this.outstanding.delete(p.seq);
    this.counters.repliesReceived++;
    o.done(Math.max(0, this.o.clock.now() - o.sentAt), p.receivedBytes);
  }

  private ensureBound(): void {
    if (this.binding !== null || this.abort.signal.aborted) return;
    if (this.boundIp === this.wantIp && (this.socket !== null || this.wantIp === null)) return;
    this.binding = this.bind(this.wantIp).finally(() => {
      this.binding = null;
    });
  }

  private async bind(ip: string | null): Promise<void> {
    this.closeSocket();
    if (ip === null) return;
    const socket = createSocket({ type: ip.includes(':') ? 'udp6' : 'udp4' });
    socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind({ address: ip, port: this.port, exclusive: true }, () => {
          socket.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      socket.close();
      const msg = errorMessage(err);
      if (msg !== this.bindError) this.o.logger.warn({ ip, port: this.port, err: msg }, 'cannot bind the probe socket yet; retrying every probe interval');
      this.bindError = msg;
      return;
    }
    socket.on('error', (err) => this.o.logger.debug({ err: errorMessage(err) }, 'probe socket error'));
    this.socket = socket;
    this.boundIp = ip;
    this.bindError = null;
    this.o.logger.info({ ip, port: this.port }, 'peer probe responder listening');
  }

  private closeSocket(): void {
    if (this.socket) {
      try {
        this.socket.close();
      } catch {
        // already closed
      }
    }
    this.socket = null;
    this.boundIp = null;
  }
}
