// One leadership term: load the registry from the bucket, then serve register/deregister, follow
// revocations and run expiry + cluster maintenance until the term ends (lease lost or stopping).
// Only a term writes.
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { errorMessage } from '../lib/errors.ts';
import type { RegisterReply } from '../protocol/messages.ts';
import { subjects } from '../protocol/subjects.ts';
import { expiryCheckIntervalMs } from './config.ts';
import { NotLeaderError, Registry, type RegistryDeps } from './registry.ts';
import { watchKeys, watchRevocations } from './revocation-watch.ts';
import { serviceSubjects } from '../protocol/service.ts';
import { ServiceDirectory } from './services.ts';
import { enrollmentNameFromKey } from '../protocol/subjects.ts';
import { GatewayReportIntake } from './gateway-reports.ts';
import { startConsumerReaper } from './consumer-reaper-nats.ts';
import { RequestSizeGate } from './request-size-gate.ts';
import type { RequestKind } from '../protocol/request-size.ts';

/** The term hands these on to its Registry, and serves requests on `nc`. */
export interface LeaderTermDeps extends RegistryDeps {
  readonly nc: NatsConnection;
  /** The term's epoch (protocol/coordinator-epoch.ts), returned in every registration reply. */
  readonly epoch?: string;
  /** Called once the term serves (registry loaded, subscriptions confirmed), with its live node count. */
  readonly onServing?: (liveNodes: number) => void;
}

/** Queue group for leader-only subjects: if two replicas briefly both think they lead, one answers. */
const QUEUE = 'crosslink-coordinator';

export class LeaderTerm {
  private current: Registry | undefined;
  /** Set once the server has our subscriptions: from then on registrations are answered. */
  private serving = false;
  private readonly subs: Subscription[] = [];
  private readonly abort = new AbortController();
  private readonly done: Promise<void>;
  /** Requests over their subject's byte limit are refused before they are parsed (protocol/request-size.ts). */
  private readonly sizes: RequestSizeGate;

  constructor(private readonly deps: LeaderTermDeps) {
    this.sizes = new RequestSizeGate(deps.logger, deps.clock, (kind) => deps.metrics?.requestTooLarge?.(kind));
    this.done = this.run();
  }

  /** The registry once loaded and served, while the term lasts. */
  get registry(): Registry | undefined {
    return this.abort.signal.aborted || !this.serving ? undefined : this.current;
  }

  /** Stops serving and writing; waits for in-flight work. */
  async end(): Promise<void> {
    this.abort.abort();
    for (const s of this.subs.splice(0)) s.unsubscribe();
    // Registry.end() stops writes synchronously; then wait for in-flight work.
    const ending = this.current?.end();
    await this.done;
    await ending;
    await this.current?.end(); // loaded while we were ending
  }

  private async run(): Promise<void> {
    const { clock, logger, config } = this.deps;
    const signal = this.abort.signal;
    while (!signal.aborted && !this.current) {
      try {
        this.current = await Registry.load(this.deps);
      } catch (err) {
        if (err instanceof NotLeaderError) return;
        logger.warn({ err: errorMessage(err) }, 'could not load state from the bucket; retrying');
        await clock.sleep(1000, signal);
      }
    }
    const registry = this.current;
    if (signal.aborted || !registry) return;
    const s = subjects(config.subjectPrefix);
    const services = new ServiceDirectory({ store: this.deps.store, nodes: registry, clock, logger, maxClockSkewMs: config.maxClockSkewMs, writable: () => registry.isActive && this.deps.holdsLease() });
    const ss = serviceSubjects(config.subjectPrefix);
    // Health-driven gateway failover: signed probe verdicts from the nodes (coordinator/gateway-health.ts).
    const gatewayReports = new GatewayReportIntake({ elections: registry, clock, logger, maxClockSkewMs: config.maxClockSkewMs, sizes: this.sizes });
    this.subs.push(
      this.deps.nc.subscribe(s.gatewayHealth, { callback: (err, msg) => void (err ? undefined : gatewayReports.handle(msg.data).catch((e: unknown) => logger.warn({ err: errorMessage(e) }, 'gateway health re-election failed'))) }),
      this.deps.nc.subscribe(s.register, { queue: QUEUE, callback: (err, msg) => this.serve(err, msg, 'registration', (m) => this.countRegistration(registry.register(m.data))) }),
      this.deps.nc.subscribe(s.deregister, { queue: QUEUE, callback: (err, msg) => this.serve(err, msg, 'deregistration', (m) => registry.deregister(m.data)) }),
      this.deps.nc.subscribe(ss.export, { queue: QUEUE, callback: (err, msg) => this.serve(err, msg, 'service export', (m) => services.export(m.data)) }),
      this.deps.nc.subscribe(ss.unexport, { queue: QUEUE, callback: (err, msg) => this.serve(err, msg, 'service unexport', (m) => services.unexport(m.data)) }),
    );
    // Leading (Coordinator.isLeader) promises that registrations are answered, so wait until the
    // server has the subscriptions (a request before that fails with "no responders").
    await this.subscribed(signal);
    this.serving = true;
    if (!signal.aborted) this.deps.onServing?.(registry.liveNodeNames().length);
    // Started after the load: it first delivers every current revocation (already applied, so
    // ignored by revision) and then each change, which the registry enforces at once.
    const revocationsFollowed = watchRevocations({ kv: this.deps.store.kv, store: this.deps.store, clock, logger, signal }, (name, stored, revision) =>
      registry.applyRevocation(name, stored, revision),
    ).catch((err: unknown) => {
      logger.error({ err: errorMessage(err) }, 'revocation watch crashed');
    });
    const definitionsFollowed = watchKeys({ kv: this.deps.store.kv, clock, logger, signal }, 'enrollments.>', 'cluster definition', async (e) => {
      const name = enrollmentNameFromKey(e.key);
      if (name === undefined) return;
      const stored = e.operation === 'PUT' ? await this.deps.store.decodeDefinition(e) : null;
      // A malformed or foreign-signed entry is logged by the store and changes nothing.
      if (e.operation === 'PUT' && !stored) return;
      await registry.applyDefinition(name, stored ?? null, e.revision);
    }).catch((err: unknown) => {
      logger.error({ err: errorMessage(err) }, 'cluster definition watch crashed');
    });
    // Durable consumers on the bucket stream are removed at once (docs/security.md, consumer-reaper.ts).
    const reaper = await startConsumerReaper({ nc: this.deps.nc, bucket: config.bucket, clock, logger, events: this.deps.events }).catch((err: unknown) => {
      logger.warn({ err: errorMessage(err) }, 'consumer reaper not started');
    });
    const interval = expiryCheckIntervalMs(config);
    while (!signal.aborted) {
      await clock.sleep(interval, signal);
      if (signal.aborted) break;
      try {
        await registry.expireDue();
        await gatewayReports.refresh();
      } catch (err) {
        logger.warn({ err: errorMessage(err) }, 'expiry round failed');
      }
    }
    await reaper?.stop();
    await revocationsFollowed;
    await definitionsFollowed;
  }

  private async countRegistration(reply: Promise<RegisterReply>): Promise<RegisterReply> {
    const r = await reply;
    this.deps.metrics?.registration(r.ok ? 'ok' : r.error.code);
    return this.deps.epoch === undefined ? r : { ...r, epoch: this.deps.epoch };
  }

  /** Resolves once the server has confirmed our subscriptions (a flush round trip) or the term ends. */
  private subscribed(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      signal.addEventListener('abort', () => resolve(), { once: true });
      this.deps.nc.flush().then(resolve, (err: unknown) => {
        this.deps.logger.debug({ err: errorMessage(err) }, 'flush after subscribing failed');
        resolve();
      });
    });
  }

  /** Answers `msg` with `handle`'s reply, or refuses it `invalid` unread when it is over `kind`'s byte limit (counted as the handler's refusals are). */
  private serve(err: Error | null, msg: Msg, kind: RequestKind, handle: (m: Msg) => Promise<unknown>): void {
    if (err) {
      this.deps.logger.warn({ err: errorMessage(err) }, 'subscription error');
      return;
    }
    const tooLarge = this.sizes.refusal(msg.data, kind);
    if (tooLarge && kind === 'registration') this.deps.metrics?.registration(tooLarge.code);
    (tooLarge ? Promise.resolve({ ok: false, error: tooLarge }) : handle(msg))
      .then((reply) => {
        if (msg.reply) msg.respond(JSON.stringify(reply));
      })
      .catch((e: unknown) => {
        this.deps.logger.error({ err: errorMessage(e), subject: msg.subject }, 'request handler failed');
        if (msg.reply) msg.respond(JSON.stringify({ ok: false, error: { code: 'internal', message: errorMessage(e) } }));
      });
  }
}
