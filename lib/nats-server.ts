// Starts and stops a real nats-server with JetStream (tests and the lab). Foreground child
// (lib/child-process.ts: SIGTERM, wait, SIGKILL); restartable on the same port and store so
// outages can be simulated.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Child } from './child-process.ts';
import { CrosslinkError, errorMessage } from './errors.ts';

export interface NatsServerOptions {
  /** Address to listen on; default 127.0.0.1. */
  readonly host?: string;
  /** Port; default: a free loopback port. */
  readonly port?: number;
  /** JetStream store dir; default: a fresh temp dir removed on stop(). */
  readonly storeDir?: string;
  /** Command prefix, e.g. ['ip', 'netns', 'exec', 'xl-lab-inet'] to run inside a namespace. */
  readonly prefix?: readonly string[];
  /** Server name (also used in logs). */
  readonly name?: string;
  readonly startTimeoutMs?: number;
  /** Member of a NATS cluster (lib/nats-cluster.ts): its name, route port and the routes to all members. */
  readonly cluster?: { readonly name: string; readonly port: number; readonly routes: readonly string[] };
}

/** What one nats-server with JetStream needs on its command line (tests, lib/nats-cluster.ts and the lab). */
export interface NatsServerArgs {
  readonly host: string;
  readonly port: number;
  readonly storeDir: string;
  /** Server name: a cluster's stream and meta leaders are reported by it. */
  readonly name: string;
  /** HTTP monitoring port (/jsz, /routez) on the same host; none if absent. */
  readonly monitorPort?: number;
  readonly cluster?: { readonly name: string; readonly port: number; readonly routes: readonly string[] };
}

export function natsServerArgv(o: NatsServerArgs): string[] {
  const args = ['nats-server', '-a', o.host, '-p', String(o.port), '-js', '-sd', o.storeDir, '-n', o.name];
  if (o.monitorPort !== undefined) args.push('-m', String(o.monitorPort));
  if (o.cluster) args.push('--cluster_name', o.cluster.name, '--cluster', `nats://${o.host}:${o.cluster.port}`, '--routes', o.cluster.routes.join(','));
  return args;
}

/** The route URLs of a cluster whose members listen for routes on `host` at `ports`. */
export function clusterRoutes(host: string, ports: readonly number[]): string[] {
  return ports.map((p) => `nats://${host}:${p}`);
}

export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export class NatsServer {
  private child: Child | undefined;
  /** The last child stopped, for recentLog() after a failed start or a stop. */
  private lastChild: Child | undefined;
  private ownsStore = false;
  host = '127.0.0.1';
  port = 0;
  storeDir = '';

  private constructor(private readonly options: NatsServerOptions) {}

  static async start(options: NatsServerOptions = {}): Promise<NatsServer> {
    const s = new NatsServer(options);
    s.host = options.host ?? '127.0.0.1';
    s.port = options.port ?? (await freeLoopbackPort());
    if (options.storeDir) s.storeDir = options.storeDir;
    else {
      s.storeDir = await mkdtemp(join(tmpdir(), 'xl-nats-'));
      s.ownsStore = true;
    }
    await s.spawnServer();
    return s;
  }

  get url(): string {
    return `nats://${this.host}:${this.port}`;
  }

  get running(): boolean {
    return this.child?.running ?? false;
  }

  private async spawnServer(): Promise<void> {
    const args = natsServerArgv({ host: this.host, port: this.port, storeDir: this.storeDir, name: this.options.name ?? 'xl-nats', ...(this.options.cluster ? { cluster: this.options.cluster } : {}) });
    const argv = [...(this.options.prefix ?? []), ...args];
    if (argv.length === 0) throw new CrosslinkError('empty nats-server command');
    const child = Child.start(argv, { keepLines: 200 });
    this.child = child;
    try {
      await child.waitForLine('Server is ready', { timeoutMs: this.options.startTimeoutMs ?? 10_000 });
    } catch (err) {
      await this.stopProcess();
      throw new CrosslinkError(`nats-server did not become ready: ${errorMessage(err)}\n${this.recentLog().slice(-2000)}`, { cause: err });
    }
  }

  /** Stops the process (SIGTERM, wait; SIGKILL after 5 s; or SIGKILL at once: a crash) keeping the store, so restart() resumes. */
  async stopProcess(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child) this.lastChild = child;
    if (signal === 'SIGKILL') child?.kill('SIGKILL');
    await child?.stop({ graceMs: 5000 });
  }

  async restart(): Promise<void> {
    await this.stopProcess();
    await this.spawnServer();
  }

  /** Stops the server and removes its store if we created it. */
  async stop(): Promise<void> {
    await this.stopProcess();
    if (this.ownsStore) await rm(this.storeDir, { recursive: true, force: true });
  }

  recentLog(): string {
    return (this.child ?? this.lastChild)?.tail().join('\n') ?? '';
  }
}
