// Drift detection without polling: one supervised `ip monitor link address route` child reports
// every netlink change; lines about our interface (a route on it deleted or added, its MTU or flags
// changed, an address removed) ask for a reconcile, which repairs exactly the gap (the keyed diff).
// Idle it costs nothing: the child blocks on its netlink socket, and no command runs until the
// kernel reports a change. Our own applies produce events too; the reconcile they trigger finds
// nothing to do and runs no mutating command, so there is no feedback loop.
//
// Peers removed by hand make no netlink event (WireGuard peers are not rtnetlink objects): the
// prober's first lost probe asks for a reconcile instead (agent/agent.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { backoffDelay, type BackoffPolicy } from '../../lib/backoff.ts';
import type { Clock } from '../../lib/clock.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';

export const MONITOR_ARGV = ['ip', 'monitor', 'link', 'address', 'route'] as const;

export interface LinkMonitorOptions {
  readonly interfaceName: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Called (debounced) with what changed. */
  readonly onChange: (reason: string) => void;
  /** Prepended to MONITOR_ARGV, e.g. ['ip', 'netns', 'exec', ns]. */
  readonly prefix?: readonly string[];
  /** Starts the monitor child (tests inject a fake). Default: spawn MONITOR_ARGV with `prefix`. */
  readonly spawnMonitor?: () => ChildProcess;
  /** Events within this window make one onChange. Default 100 ms. */
  readonly debounceMs?: number;
  /** Restart backoff after the child exits. Defaults 500 ms … 30 s. */
  readonly restartBackoff?: BackoffPolicy;
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * What a line of `ip monitor link address route` says about `iface`, or null when it is not about it.
 * Route lines name the device (`[Deleted ]<dst> dev <iface> …`); link and address lines start with
 * the index and name (`[Deleted ]5: <iface>: <FLAGS> mtu …`, `5: <iface>    inet …`). Indented
 * continuation lines are ignored.
 */
export function monitorLineAbout(line: string, iface: string): string | null {
  if (line.length === 0 || /^\s/.test(line)) return null;
  const name = escapeRe(iface);
  const deleted = line.startsWith('Deleted ');
  const body = deleted ? line.slice('Deleted '.length) : line;
  if (new RegExp(`^\\d+:\\s+${name}(?:[:@]|\\s)`).test(body)) {
    const kind = /\binet6?\s/.test(body) ? 'address' : 'link';
    return `${kind} ${deleted ? 'deleted' : 'changed'}: ${body.trim().slice(0, 120)}`;
  }
  if (new RegExp(`\\sdev ${name}(?:\\s|$)`).test(body)) {
    // The kernel's own local/link-local routes on the interface are not ours to repair.
    if (/\btable local\b/.test(body) || /^(?:local|broadcast|multicast)\s/.test(body)) return null;
    return `route ${deleted ? 'deleted' : 'changed'}: ${body.trim().slice(0, 120)}`;
  }
  return null;
}

export class LinkMonitor {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
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
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  private launch(): void {
    const child = this.o.spawnMonitor ? this.o.spawnMonitor() : this.spawnDefault();
    this.child = child;
    this.startedAt = this.o.clock.now();
    this.exited = new Promise<void>((resolve) => {
      child.once('error', (err) => {
        this.o.logger.warn({ err: errorMessage(err) }, 'cannot run ip monitor; drift is repaired at the next resync only');
        resolve();
      });
      child.once('close', (code, signal) => {
        resolve();
        this.onExit(code, signal);
      });
    });
    if (child.stdout) {
      const lines = createInterface({ input: child.stdout });
      lines.on('line', (line) => this.onLine(line));
    }
    child.stderr?.on('data', (d: Buffer) => this.o.logger.debug({ stderr: d.toString('utf8').trim() }, 'ip monitor'));
  }

  private spawnDefault(): ChildProcess {
    const [file, ...args] = [...(this.o.prefix ?? []), ...MONITOR_ARGV];
    return spawn(file ?? 'ip', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.abort.signal.aborted) return;
    if (this.o.clock.now() - this.startedAt > 60_000) this.failures = 0;
    const delay = backoffDelay(this.backoff, ++this.failures);
    this.o.logger.warn({ code, signal, retryInMs: delay }, 'ip monitor exited; restarting it');
    // A change while the monitor was down would go unseen: reconcile once it is back.
    void this.o.clock.sleep(delay, this.abort.signal).then(() => {
      if (this.abort.signal.aborted) return;
      this.launch();
      this.note('ip monitor restarted');
    });
  }

  private onLine(line: string): void {
    const about = monitorLineAbout(line, this.o.interfaceName);
    if (about === null) return;
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
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    timer.unref();
    await this.exited;
    clearTimeout(timer);
  }
}
