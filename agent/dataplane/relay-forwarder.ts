// UDP forwarder for NAT-to-NAT pairs this node relays for. Both NATed nodes use <our public ip>:<port>
// as each other's WireGuard endpoint; we pass datagrams between the two sides without decrypting
// them (we hold no keys for that pair, so the traffic stays end-to-end encrypted and authenticated).
// Per port we learn the two sides from arriving datagrams: a hint (the IP our own WireGuard sees for
// that node) identifies a side directly; otherwise two-slot learning, where a new address replaces
// the least recently seen slot. A stranger can at worst disturb the pair (WireGuard drops anything
// it cannot authenticate) and is pushed out again by the real sides' keepalives.
import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { systemClock, type Clock } from '../../lib/clock.ts';
import { CrosslinkError, errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { parseEndpoint } from '../../protocol/cidr.ts';
import type { RelayAssignment } from '../plan/model.ts';
import type { RelayPorts, RelayUpdateOptions } from './api.ts';
import type { LivePeer } from './wg-dump.ts';

export const RELAY_STALE_MS = 3 * 60_000;

export interface RelayStats {
  readonly port: number;
  readonly between: [string, string];
  readonly packets: number;
  readonly bytes: number;
}

export interface RelayForwarderOptions {
  readonly logger: Logger;
  /**
   * Address to bind relay ports on when update() names none; default 0.0.0.0. The data plane passes
   * the relay's advertised endpoint IP when it is a local address: bound to 0.0.0.0, a multi-homed
   * node answers from whatever address the route picks, and the peers' WireGuard then roams away
   * from the configured relay endpoint.
   */
  readonly bindAddress?: string;
  readonly clock?: Clock;
  /** A side not heard from for this long is forgotten. Default 3 minutes. */
  readonly staleAfterMs?: number;
}

interface Side {
  address: string;
  port: number;
  lastSeen: number;
  /** Public key of the node this side was identified as by a hint, if any. */
  publicKey: string | null;
}

interface Relay {
  assignment: RelayAssignment;
  socket: Socket;
  slots: [Side | null, Side | null];
  /** Datagrams received, forwarded or not (learning a side forwards nothing). */
  received: number;
  packets: number;
  bytes: number;
}

const sameAssignment = (x: RelayAssignment, y: RelayAssignment): boolean =>
  x.port === y.port && x.a.publicKey === y.a.publicKey && x.b.publicKey === y.b.publicKey;

/** publicKey → IP our WireGuard currently sees for that peer (from `wg show dump`): hints for side identification. */
export function relayHintsFrom(peers: readonly LivePeer[]): Map<string, string> {
  const hints = new Map<string, string>();
  for (const p of peers) {
    const host = p.endpoint === null ? undefined : parseEndpoint(p.endpoint)?.host;
    if (host !== undefined) hints.set(p.publicKey, host);
  }
  return hints;
}

export class RelayForwarder implements RelayPorts {
  private readonly relays = new Map<number, Relay>();
  private hints: ReadonlyMap<string, string> = new Map();
  private readonly clock: Clock;
  private readonly staleAfterMs: number;
  private closed = false;
  /** The address the open sockets are bound to. */
  private boundAddress: string;

  constructor(private readonly options: RelayForwarderOptions) {
    this.clock = options.clock ?? systemClock;
    this.staleAfterMs = options.staleAfterMs ?? RELAY_STALE_MS;
    this.boundAddress = options.bindAddress ?? '0.0.0.0';
  }

  /**
   * Opens ports for new assignments, closes ports of removed ones, keeps sockets (and learned sides)
   * of unchanged ones. A port that fails to bind is reported in the rejection; the others still apply.
   * A new bind address (our advertised endpoint changed) re-opens every port on it.
   */
  async update(assignments: readonly RelayAssignment[], options: RelayUpdateOptions = {}): Promise<void> {
    if (this.closed) throw new CrosslinkError('RelayForwarder is closed');
    if (options.hints) this.hints = options.hints;
    const address = options.bindAddress ?? this.options.bindAddress ?? '0.0.0.0';
    const rebind = address !== this.boundAddress;
    this.boundAddress = address;
    const wanted = new Map(assignments.map((a) => [a.port, a]));
    for (const [port, relay] of this.relays) {
      const want = wanted.get(port);
      if (!rebind && want && sameAssignment(want, relay.assignment)) {
        relay.assignment = want; // node names may have changed; sides stay
        continue;
      }
      this.relays.delete(port);
      await closeSocket(relay.socket);
      this.options.logger.info({ port, between: [relay.assignment.a.node, relay.assignment.b.node] }, 'relay port closed');
    }
    const errors: string[] = [];
    for (const a of assignments) {
      if (this.relays.has(a.port)) continue;
      try {
        const socket = await this.bind(a.port);
        const relay: Relay = { assignment: a, socket, slots: [null, null], received: 0, packets: 0, bytes: 0 };
        socket.on('message', (msg, rinfo) => this.onMessage(relay, msg, rinfo.address, rinfo.port));
        socket.on('error', (err) => this.options.logger.warn({ port: a.port, err: err.message }, 'relay socket error'));
        this.relays.set(a.port, relay);
        this.options.logger.info({ port: a.port, between: [a.a.node, a.b.node] }, 'relay port open');
      } catch (err) {
        errors.push(`port ${a.port}: ${errorMessage(err)}`);
      }
    }
    if (errors.length > 0) throw new CrosslinkError(`relay forwarder could not bind ${errors.length} port(s): ${errors.join('; ')}`);
  }

  private bind(port: number): Promise<Socket> {
    const address = this.boundAddress;
    const socket = createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4' });
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        socket.close();
        reject(err);
      };
      socket.once('error', onError);
      socket.bind(port, address, () => {
        socket.off('error', onError);
        resolve(socket);
      });
    });
  }

  private live(side: Side | null, now: number): side is Side {
    return side !== null && now - side.lastSeen <= this.staleAfterMs;
  }

  private onMessage(relay: Relay, msg: Buffer, address: string, port: number): void {
    const now = this.clock.now();
    relay.received++;
    const slot = this.slotFor(relay, address, port, now);
    const side = relay.slots[slot];
    const other = relay.slots[slot === 0 ? 1 : 0];
    if (side) side.lastSeen = now;
    if (!this.live(other, now)) return; // the other side has not shown up (yet): nowhere to send
    relay.packets++;
    relay.bytes += msg.length;
    relay.socket.send(msg, other.port, other.address, (err) => {
      if (err) this.options.logger.debug({ port: relay.assignment.port, err: err.message }, 'relay send failed');
    });
  }

  /** Which slot a datagram from address:port belongs to (learning it if new). */
  private slotFor(relay: Relay, address: string, port: number, now: number): 0 | 1 {
    const { slots, assignment } = relay;
    for (const i of [0, 1] as const) {
      const s = slots[i];
      if (s && s.address === address && s.port === port) return i;
    }
    const fresh = (publicKey: string | null): Side => ({ address, port, lastSeen: now, publicKey });
    // Hint: exactly one side of the pair is known (by our own WireGuard) to sit behind this IP.
    const hinted = [assignment.a.publicKey, assignment.b.publicKey].filter((k) => this.hints.get(k) === address);
    const key = hinted.length === 1 ? (hinted[0] ?? null) : null;
    if (key !== null) {
      const i = slots[0]?.publicKey === key ? 0 : slots[1]?.publicKey === key ? 1 : this.replaceable(relay, now, key);
      slots[i] = fresh(key);
      this.logLearned(relay, i, address, port, 'hint');
      return i;
    }
    const i = this.replaceable(relay, now, null);
    slots[i] = fresh(null);
    this.logLearned(relay, i, address, port, 'learned');
    return i;
  }

  /** An empty or expired slot, else the least recently seen one — but never a slot hinted as the other node. */
  private replaceable(relay: Relay, now: number, key: string | null): 0 | 1 {
    const [s0, s1] = relay.slots;
    const otherNode = (s: Side | null): boolean => s !== null && s.publicKey !== null && s.publicKey !== key && this.live(s, now);
    if (!this.live(s0, now)) return 0;
    if (!this.live(s1, now)) return 1;
    if (otherNode(s0) && !otherNode(s1)) return 1;
    if (otherNode(s1) && !otherNode(s0)) return 0;
    return s0.lastSeen <= s1.lastSeen ? 0 : 1;
  }

  private logLearned(relay: Relay, slot: number, address: string, port: number, how: string): void {
    this.options.logger.debug({ port: relay.assignment.port, slot, side: `${address}:${port}`, how }, 'relay side learned');
  }

  /** Datagrams the relay on `port` has received (and learned its side from), forwarded or not. */
  received(port: number): number {
    return this.relays.get(port)?.received ?? 0;
  }

  stats(): RelayStats[] {
    return [...this.relays.values()]
      .map((r) => ({ port: r.assignment.port, between: [r.assignment.a.node, r.assignment.b.node] as [string, string], packets: r.packets, bytes: r.bytes }))
      .sort((x, y) => x.port - y.port);
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.relays.values()];
    this.relays.clear();
    await Promise.all(all.map((r) => closeSocket(r.socket)));
  }
}

function closeSocket(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}
