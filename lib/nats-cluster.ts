// A real NATS cluster for tests, the lab and the bench: `size` nats-server processes with JetStream
// and cluster routes to each other (on 127.0.0.1, or inside a namespace via `prefix`). Any member
// can be stopped and started again on the same ports and store, to simulate losing a server.
import { randomBytes } from 'node:crypto';
import { StorageType, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { NatsServer, clusterRoutes, freeLoopbackPort } from './nats-server.ts';
import { waitFor } from './wait.ts';

export interface NatsClusterOptions {
  readonly size?: number;
  /** Prefix of the server names (`<name>-0` …) and the cluster name; default xl-natsc-<random>. */
  readonly name?: string;
  readonly host?: string;
  readonly prefix?: readonly string[];
  /** How long to wait for JetStream to be usable (a meta leader elected); default 30 s. */
  readonly readyTimeoutMs?: number;
}

export class NatsCluster {
  private constructor(
    readonly name: string,
    readonly servers: readonly NatsServer[],
  ) {}

  static async start(options: NatsClusterOptions = {}): Promise<NatsCluster> {
    const size = options.size ?? 3;
    const name = options.name ?? `xl-natsc-${randomBytes(3).toString('hex')}`;
    const host = options.host ?? '127.0.0.1';
    const routePorts: number[] = [];
    for (let i = 0; i < size; i++) routePorts.push(await freeLoopbackPort());
    const routes = clusterRoutes(host, routePorts);
    const servers: NatsServer[] = [];
    try {
      const started = await Promise.all(
        routePorts.map((port, i) =>
          NatsServer.start({ host, name: `${name}-${i}`, ...(options.prefix ? { prefix: options.prefix } : {}), cluster: { name, port, routes } }),
        ),
      );
      servers.push(...started);
      const cluster = new NatsCluster(name, servers);
      await cluster.waitForJetStream(options.readyTimeoutMs ?? 30_000);
      await cluster.waitForPlacement(options.readyTimeoutMs ?? 30_000);
      return cluster;
    } catch (err) {
      await Promise.all(servers.map((s) => s.stop()));
      throw err;
    }
  }

  /** Every member's client URL: clients connect to all of them (and fail over between them). */
  get urls(): string[] {
    return this.servers.map((s) => s.url);
  }

  /**
   * A client connection preferring member `first` (as agents spread over a cluster), failing over to
   * the others in order, reconnecting for ever every 250 ms.
   */
  connectPreferring(first: number, name: string): Promise<NatsConnection> {
    const preferred = this.server(first).url;
    return connect({ servers: [preferred, ...this.urls.filter((u) => u !== preferred)], noRandomize: true, name, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  }

  server(i: number): NatsServer {
    const s = this.servers[i];
    if (!s) throw new Error(`no server ${i} in a cluster of ${this.servers.length}`);
    return s;
  }

  /** The index of the member with this server name (e.g. a stream's cluster leader). */
  indexOf(serverName: string): number {
    return this.servers.findIndex((_, i) => `${this.name}-${i}` === serverName);
  }

  /** Waits until JetStream answers through the given members (default: all running ones). */
  async waitForJetStream(timeoutMs = 30_000, members?: readonly number[]): Promise<void> {
    const urls = (members ?? this.servers.map((_, i) => i)).filter((i) => this.server(i).running).map((i) => this.server(i).url);
    await waitFor(
      async () => {
        for (const url of urls) {
          const nc = await connect({ servers: url, reconnect: false, timeout: 2000 });
          try {
            await (await jetstreamManager(nc, { timeout: 2000 })).getAccountInfo();
          } finally {
            await nc.close();
          }
        }
        return true;
      },
      { timeoutMs, intervalMs: 250, what: `JetStream in the NATS cluster ${this.name}` },
    );
  }

  /** Waits until a stream replicated on every member can be placed (all peers known to the meta leader). */
  private async waitForPlacement(timeoutMs: number): Promise<void> {
    const nc = await connect({ servers: this.urls, timeout: 2000 });
    try {
      const jsm = await jetstreamManager(nc, { timeout: 5000 });
      const name = `xl_ready_${randomBytes(3).toString('hex')}`;
      await waitFor(
        async () => {
          await jsm.streams.add({ name, subjects: [`${name}.>`], num_replicas: this.servers.length, storage: StorageType.Memory });
          return true;
        },
        { timeoutMs, intervalMs: 250, what: `placement of a stream on all ${this.servers.length} members of ${this.name}` },
      );
      await jsm.streams.delete(name);
    } finally {
      await nc.close();
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
  }
}
