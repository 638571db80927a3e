// Starts and stops a real nats-server with JetStream (tests and the lab). Foreground child,
// SIGTERM then wait; restartable on the same port and store so outages can be simulated.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CrosslinkError } from './errors.ts';

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
  private child: ChildProcess | undefined;
  private ownsStore = false;
  private log = '';
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
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  private async spawnServer(): Promise<void> {
    const args = ['nats-server', '-a', this.host, '-p', String(this.port), '-js', '-sd', this.storeDir, '-n', this.options.name ?? 'xl-nats'];
    const cluster = this.options.cluster;
    if (cluster) args.push('--cluster_name', cluster.name, '--cluster', `nats://${this.host}:${cluster.port}`, '--routes', cluster.routes.join(','));
    const argv = [...(this.options.prefix ?? []), ...args];
    const [file, ...rest] = argv;
    if (!file) throw new CrosslinkError('empty nats-server command');
    this.log = '';
    const child = spawn(file, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new CrosslinkError(`nats-server did not become ready within ${this.options.startTimeoutMs ?? 10_000} ms:\n${this.log.slice(-2000)}`));
      }, this.options.startTimeoutMs ?? 10_000);
      const onData = (chunk: Buffer): void => {
        this.log = (this.log + chunk.toString()).slice(-20_000);
        if (this.log.includes('Server is ready')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new CrosslinkError(`nats-server exited (${code ?? signal ?? '?'}) before ready:\n${this.log.slice(-2000)}`));
      });
    });
    try {
      await ready;
    } catch (err) {
      await this.stopProcess();
      throw err;
    }
  }

  /** Stops the process (SIGTERM, wait; SIGKILL after 5 s) keeping the store, so restart() resumes. */
  async stopProcess(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(killer);
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
    return this.log;
  }
}
