// The netlink echo of our own route changes. `ip monitor` (agent/dataplane/link-monitor.ts) reports
// every route the data plane itself just replaced or deleted; taken as drift, each batch would be
// followed by a full reconcile re-reading WireGuard and both route tables — the O(mesh) work a
// change-driven apply exists to avoid. The data plane announces the routes a batch will touch; the
// matching monitor line is its echo and is consumed once. Anything else (a route deleted by hand,
// one added by someone else, a change after the expiry) is still drift. Pure apart from the clock
// value passed in.
import { canonicalCidr, hostCidr, parseIp } from '../../protocol/cidr.ts';
import { ROUTE_PROTO } from './route-diff.ts';

/** How long an announced change waits for its echo (the monitor reports within milliseconds). */
export const ECHO_WINDOW_MS = 10_000;

type Kind = 'add' | 'del';

export class OwnRouteChanges {
  /** "add 10.1.0.0/24" → until when its echo is expected (ms); a count for the same change announced twice. */
  private readonly expected = new Map<string, { until: number; count: number }>();

  /** The routes a batch is about to replace (`add`) or delete (`del`), canonical CIDRs. */
  expect(kind: Kind, dsts: readonly string[], now: number): void {
    for (const dst of dsts) {
      const key = `${kind} ${dst}`;
      const e = this.expected.get(key);
      this.expected.set(key, { until: now + ECHO_WINDOW_MS, count: (e && e.until >= now ? e.count : 0) + 1 });
    }
    if (this.expected.size > 50_000) this.prune(now);
  }

  /** Is this `ip monitor` line the echo of a change we announced? Consumes it if so. */
  isEcho(line: string, now: number): boolean {
    const deleted = line.startsWith('Deleted ');
    const body = deleted ? line.slice('Deleted '.length) : line;
    if (!new RegExp(`\\sproto ${ROUTE_PROTO}(\\s|$)`).test(body)) return false;
    const token = body.trim().split(/\s+/)[0] ?? '';
    const dst = token.includes('/') ? canonicalCidr(token) : parseIp(token) ? hostCidr(token) : undefined;
    if (dst === undefined) return false;
    const key = `${deleted ? 'del' : 'add'} ${dst}`;
    const e = this.expected.get(key);
    if (!e) return false;
    if (e.until < now) {
      this.expected.delete(key);
      return false;
    }
    if (e.count <= 1) this.expected.delete(key);
    else e.count--;
    return true;
  }

  private prune(now: number): void {
    for (const [k, e] of this.expected) if (e.until < now) this.expected.delete(k);
  }
}
