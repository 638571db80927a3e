// The netlink echo of our own route changes. `ip monitor` (agent/dataplane/link-monitor.ts) reports
// every route the data plane itself just replaced or deleted; taken as drift, each batch would be
// followed by a full reconcile re-reading WireGuard and both route tables — the O(mesh) work a
// change-driven apply exists to avoid. The data plane announces the routes a batch will touch; the
// matching monitor line is its echo and is consumed once. Anything else (a route deleted by hand,
// one added by someone else, a change after the expiry) is still drift. Pure apart from the clock
// value passed in.
import { canonicalCidr, hostCidr, parseIp } from '../../protocol/cidr.ts';
import { ROUTE_PROTO } from './route-diff.ts';
import { monitorLineAbout } from './link-monitor.ts';

/** How long an announced change waits for its echo (the monitor reports within milliseconds). */
export const ECHO_WINDOW_MS = 10_000;

type Kind = 'add' | 'del';

/** A route line of ours (after an optional 'Deleted '). */
const OUR_PROTO = new RegExp(`\\sproto ${ROUTE_PROTO}(\\s|$)`);

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
    if (!OUR_PROTO.test(body)) return false;
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

/**
 * Link and address lines about our interface that report what the data plane last ensured (link
 * UP with our MTU, an address we hold, the deletion of one we no longer hold) are not drift: there
 * is nothing to repair, whoever caused them — typically the echo of our own `ip link set up` and
 * `ip address replace` at the start, which, taken as drift, made the first full apply re-read the
 * host, WireGuard and the route tables (two rounds of spawns on the start's critical path). A line
 * that differs from it (the MTU or flags changed, one of our addresses deleted, a foreign address
 * added) is drift as before. Route lines are OwnRouteChanges'. Pure.
 */
export class InterfaceEcho {
  private ensured: { readonly mtu: number; readonly addresses: ReadonlySet<string> } | undefined;

  constructor(private readonly iface: string) {}

  /** The interface as the last apply ensured it (its MTU and addresses, CIDRs). */
  set(iface: { readonly mtu: number; readonly addresses: readonly string[] }): void {
    this.ensured = { mtu: iface.mtu, addresses: new Set(iface.addresses.map((a) => canonicalCidr(a) ?? a)) };
  }

  /** `about`: monitorLineAbout's reading of the line, when the caller has it already (LinkMonitor does). */
  isEcho(line: string, about: string | null = monitorLineAbout(line, this.iface)): boolean {
    const ensured = this.ensured;
    if (ensured === undefined || about === null) return false;
    const deleted = line.startsWith('Deleted ');
    if (about.startsWith('link ')) {
      if (deleted) return false;
      const flags = /<([^>]*)>/.exec(line)?.[1]?.split(',') ?? [];
      return flags.includes('UP') && Number(/\smtu (\d+)/.exec(line)?.[1]) === ensured.mtu;
    }
    if (about.startsWith('address ')) {
      // Link-local addresses are the kernel's (ensureInterface leaves them alone too).
      if (/\sscope link\b/.test(line)) return true;
      const cidr = /\binet6?\s+(\S+)/.exec(line)?.[1];
      const canonical = cidr === undefined ? undefined : canonicalCidr(cidr);
      if (canonical === undefined) return false;
      return deleted ? !ensured.addresses.has(canonical) : ensured.addresses.has(canonical);
    }
    return false;
  }
}
