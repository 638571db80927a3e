// Drift detection without polling: one supervised `ip monitor link address route` child reports
// every netlink change; lines about our interface (a route on it deleted or added, its MTU or flags
// changed, an address removed) ask for a reconcile, which repairs exactly the gap (the keyed diff).
// Idle it costs nothing: the child blocks on its netlink socket, and no command runs until the
// kernel reports a change. Our own applies produce events too; the reconcile they trigger finds
// nothing to do and runs no mutating command, so there is no feedback loop.
//
// Peers removed by hand make no netlink event (WireGuard peers are not rtnetlink objects): the
// prober's first lost probe asks for a reconcile instead (agent/agent.ts).
import { backoffDelay, type BackoffPolicy } from '../../lib/backoff.ts';
import type { Clock } from '../../lib/clock.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { Child, describeExit, type ChildExit, type StopOptions } from '../../lib/child-process.ts';

export const MONITOR_ARGV = ['ip', 'monitor', 'link', 'address', 'route'] as const;

export interface LinkMonitorOptions {
  readonly interfaceName: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Called (debounced) with what changed. */
  readonly onChange: (reason: string) => void;
  /** A line reporting a change this agent just made itself (agent/dataplane/own-changes.ts): not drift.
   *  `about` is what monitorLineAbout made of the line (never null here), so it is not parsed again. */
  readonly isEcho?: (line: string, about: string) => boolean;
  /** Prepended to MONITOR_ARGV, e.g. ['ip', 'netns', 'exec', ns]. */
  readonly prefix?: readonly string[];
  /** Starts the monitor child, handing every output line to `onLine` (tests inject a fake). Default: Child.start of MONITOR_ARGV with `prefix`. */
  readonly spawnMonitor?: (onLine: (line: string) => void) => MonitorProcess;
  /** Events within this window make one onChange. Default 100 ms. */
  readonly debounceMs?: number;
  /** Restart backoff after the child exits. Defaults 500 ms … 30 s. */
  readonly restartBackoff?: BackoffPolicy;
}

/** What the monitor needs of its child (lib/child-process.ts Child has it). */
export interface MonitorProcess {
  readonly running: boolean;
  readonly exited: Promise<ChildExit>;
  stop(options: StopOptions): Promise<ChildExit>;
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The two patterns naming `iface` (link/address lines, route lines), built once per interface name. */
const patterns = new Map<string, { readonly own: RegExp; readonly dev: RegExp }>();
function patternsFor(iface: string): { readonly own: RegExp; readonly dev: RegExp } {
  let p = patterns.get(iface);
  if (p === undefined) {
    const name = escapeRe(iface);
    p = { own: new RegExp(`^\\d+:\\s+${name}(?:[:@]|\\s)`), dev: new RegExp(`\\sdev ${name}(?:\\s|$)`) };
    patterns.set(iface, p);
  }
  return p;
}

/**
 * What a line of `ip monitor link address route` says about `iface`, or null when it is not about it.
 * Route lines name the device (`[Deleted ]<dst> dev <iface> …`); link and address lines start with
 * the index and name (`[Deleted ]5: <iface>: <FLAGS> mtu …`, `5: <iface>    inet …`). Indented
 * continuation lines are ignored.
 */
export function monitorLineAbout(line: string, iface: string): string | null {
  if (line.length === 0 || /^\s/.test(line)) return null;
  const { own, dev } = patternsFor(iface);
  const deleted = line.startsWith('Deleted ');
  const body = deleted ? line.slice('Deleted '.length) : line;
  if (own.test(body)) {
    const kind = /\binet6?\s/.test(body) ? 'address' : 'link';
    return `${kind} ${deleted ? 'deleted' : 'changed'}: ${body.trim().slice(0, 120)}`;
  }
  if (dev.test(body)) {
    // The kernel's own routes on the interface (local, broadcast, the fe80::/64 it adds when the
    // link comes up, connected subnets of its addresses) are not ours to repair.
    if (/\btable local\b/.test(body) || /^(?:local|broadcast|multicast)\s/.test(body) || /\sproto kernel(?:\s|$)/.test(body)) return null;
    return `route ${deleted ? 'deleted' : 'changed'}: ${body.trim().slice(0, 120)}`;
  }
  return null;
}

export class LinkMonitor {
  private child: MonitorProcess | undefined;
  private readonly abort = new AbortController();
  private pending: string[] = [];
  private flushing = false;
  private failures = 0;
  private startedAt = 0;
  private readonly debounceMs: number;
  private readonly backoff: BackoffPolicy;
  /** Relevant events seen (status, tests). */
  events = 0;

  constructor(private readonly o: LinkMonitorOptions) {
    this.debounceMs = o.debounceMs ?? 100;
    this.backoff = o.restartBackoff ?? { initialMs: 500, maxMs: 30_000 };
  }

  start(): void {
    if (this.child || this.abort.signal.aborted) return;
    this.launch();
  }

  /** The monitor child is running. */
  get running(): boolean {
    return this.child?.running ?? false;
  }

  private launch(): void {
    const onLine = (line: string): void => this.onLine(line);
    const child = this.o.spawnMonitor ? this.o.spawnMonitor(onLine) : Child.start([...(this.o.prefix ?? []), ...MONITOR_ARGV], { env: { ...process.env, LC_ALL: 'C' }, onLine, keepLines: 5 });
    this.child = child;
    this.startedAt = this.o.clock.now();
    void child.exited.then((exit) => this.onExit(child, exit));
  }

  private onExit(child: MonitorProcess, exit: ChildExit): void {
    if (this.abort.signal.aborted || child !== this.child) return;
    if (this.o.clock.now() - this.startedAt > 60_000) this.failures = 0;
    const delay = backoffDelay(this.backoff, ++this.failures);
    // A missing `ip` or no permission: drift is then repaired at the next resync only.
    this.o.logger.warn({ exit: describeExit(exit), retryInMs: delay }, 'ip monitor exited; restarting it');
    // A change while the monitor was down would go unseen: reconcile once it is back.
    void this.o.clock.sleep(delay, this.abort.signal).then(() => {
      if (this.abort.signal.aborted) return;
      this.launch();
      this.note('ip monitor restarted');
    });
  }

  private onLine(line: string): void {
    const about = monitorLineAbout(line, this.o.interfaceName);
    if (about === null || this.o.isEcho?.(line, about) === true) return;
    this.events++;
    this.note(about);
  }

  private note(reason: string): void {
    this.pending.push(reason);
    if (this.flushing) return;
    this.flushing = true;
    void this.o.clock.sleep(this.debounceMs, this.abort.signal).then(() => {
      this.flushing = false;
      const reasons = this.pending.splice(0);
      if (this.abort.signal.aborted || reasons.length === 0) return;
      try {
        this.o.onChange(reasons.length === 1 ? (reasons[0] ?? '') : `${reasons[0] ?? ''} (+${reasons.length - 1} more)`);
      } catch (err) {
        this.o.logger.warn({ err: errorMessage(err) }, 'link monitor listener threw');
      }
    });
  }

  /** Stops the child (SIGTERM, awaited; SIGKILL after 5 s). */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.child?.stop({ graceMs: 5_000 });
  }
}
