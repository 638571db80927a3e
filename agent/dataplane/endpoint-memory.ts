// Learned endpoints survive an empty interface. A NATed peer has no endpoint in its record: WireGuard
// learns its mapped address from the peer's handshakes. When our interface comes back empty (wireguard-go
// restarted, kernel link re-created) that address is gone, and the NATed peer keeps sending on a
// session we no longer know until it re-keys (up to ~2 min). Re-adding the peer with the address we
// last saw lets us initiate the handshake ourselves at once: the NAT mapping is kept alive by the
// peer's keepalives, so our handshake gets through it.
//
// Pure bookkeeping: observe() every `wg show dump` the data plane reads; fill() the desired peers
// before the diff. Only peers ADDED with no endpoint are filled; a live peer is never touched
// (its learned endpoint is WireGuard's business), so an idle apply stays free of commands.
import type { DesiredPeer } from '../plan/model.ts';
import type { LivePeer } from './wg-dump.ts';

export class EndpointMemory {
  private readonly learned = new Map<string, string>();

  /** Remembers the endpoint of every live peer that has one (learned or configured). */
  observe(peers: readonly LivePeer[]): void {
    for (const p of peers) if (p.endpoint !== null) this.learned.set(p.publicKey, p.endpoint);
  }

  /** The endpoint last seen for `publicKey`, if any. */
  get(publicKey: string): string | undefined {
    return this.learned.get(publicKey);
  }

  /**
   * Desired peers with a remembered endpoint for each one that is about to be added without one
   * (not live, no endpoint of its own). Forgets peers that are no longer desired — of `scope` only,
   * when given (a change-driven apply passes the changed keys and only their peers).
   */
  fill(desired: readonly DesiredPeer[], live: readonly LivePeer[], scope?: ReadonlySet<string>): readonly DesiredPeer[] {
    const wanted = new Set(desired.map((p) => p.publicKey));
    for (const key of scope ?? this.learned.keys()) if (!wanted.has(key)) this.learned.delete(key);
    const liveKeys = new Set(live.map((p) => p.publicKey));
    return desired.map((p) => {
      if (p.endpoint !== null || liveKeys.has(p.publicKey)) return p;
      const endpoint = this.learned.get(p.publicKey);
      return endpoint === undefined ? p : { ...p, endpoint };
    });
  }
}
