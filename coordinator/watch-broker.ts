// The watch broker (issue 8): agents may not create JetStream consumers at all (no `$JS.API.CONSUMER.*`
// permission), so every coordinator replica — leader and followers, one queue group, so a watch can
// be (re)created whenever any replica is up — creates their KV watch consumers for them, with its own
// credential: an EPHEMERAL push consumer (ack none, flow control and idle heartbeats as nats.js's
// ordered consumer, in memory, one replica, a short inactive threshold) on exactly the requested
// readable filter, delivering only to the requester's `_INBOX.` subject. Never a durable, never
// another filter, never another deliver subject (protocol/watch-broker.ts validates; adversary tests
// in test/nats-auth.test.ts and test/watch-broker.test.ts). A token bucket per replica bounds a flood
// while the honest fleet's re-watch storm after a NATS server loss fits in its burst. A request MAC'd
// by a node this replica knows (protocol/watch-request-mac.ts, headers) draws from that node's own
// bounded budget instead, so a flood that empties the shared one does not starve honest agents.
// `catchup` answers what changed after a revision by direct gets (lib/kv-catch-up.ts: no consumer, any
// replica), in a page signed with the coordinator's key (catch-up-page.ts): what agents follow while
// consumer creates are unservable after a NATS server loss (agent/control/catch-up-watch.ts).
import { AckPolicy, DeliverPolicy, jetstreamManager, ReplayPolicy, type ConsumerConfig, type JetStreamManager } from '@nats-io/jetstream';
import { countKvFilter } from '../lib/kv-filter-count.ts';
import { readKvAfter, type KvCatchUpPage } from '../lib/kv-catch-up.ts';
import { nanos, nuid, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { Clock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { RateLimitedLog } from '../lib/rate-limited-log.ts';
import { parseSentAtHeader, watchRequestMacInput, watchRequestMacKey, watchRequestMacMatches, WATCH_MAC_HEADERS, WATCH_REQUEST_AUTH_OUTCOMES, type WatchRequestAuthOutcome } from '../protocol/watch-request-mac.ts';
import { CATCHUP_MAX_BYTES, parseWatchRequest, type CatchUpReply, type WatchReply, type WatchRequest } from '../protocol/watch-broker.ts';
import type { SigningKeyPair } from '../protocol/signing.ts';
import { signedCatchUpPage } from './catch-up-page.ts';
import { subjects } from '../protocol/subjects.ts';
import { RegistrationRateLimit } from './rate-limit.ts';
import { RequestSizeGate } from './request-size-gate.ts';
import type { CoordinatorMetricsHooks } from './metrics.ts';

/** Default timeout of the broker's JetStream API requests (see WatchBrokerOptions.apiTimeoutMs). */
export const BROKER_API_TIMEOUT_MS = 2000;

/** The queue group every replica serves the watch subject in (one replica answers each request). */
export const WATCH_QUEUE = 'crosslink-watch';

/**
 * Per replica: consumers created per second, and at once. A fleet of 1,000 agents re-creating its
 * five watches each after losing a NATS server (5,000 requests) fits in one replica's burst; a flood
 * gets the burst, then 500 a second.
 */
export const WATCH_RATE_DEFAULTS = Object.freeze({ ratePerSecond: 500, burst: 10_000 });

/**
 * Per replica: catch-up ENTRIES read per second, and at once. A catch-up request costs this replica one
 * direct get per entry plus one (up to 257), so requests alone would not bound its work: an agent
 * credential asking for full pages over and over could keep the coordinator reading for it instead of
 * answering heartbeats. An honest fleet reads little (after a NATS server loss each agent reads the few
 * changes it missed; a new agent its mesh once: 100 new agents of a 1,000-node mesh fit in the burst);
 * past the budget a page is cut short (`more`) or refused `rate-limited`.
 */
export const CATCHUP_ENTRY_RATE_DEFAULTS = Object.freeze({ ratePerSecond: 10_000, burst: 100_000 });

/**
 * Per node whose request carries a valid MAC (its own budget, apart from the shared one): requests per
 * second and at once (an agent re-creates its five watches after a NATS server loss, and polls catch-up
 * about once a second per watch while they cannot be created: 10/s with 50 at once leaves it room to
 * retry), catch-up entries per second and at once (a new agent reads its mesh once: 2,000 at once
 * covers a mesh of 1,000 nodes twice), and how many nodes' budgets are kept (the one used longest ago
 * goes first and comes back full; as many as the MAC keys kept, HeartbeatMacKeys).
 */
export const NODE_WATCH_BUDGET_DEFAULTS: NodeWatchBudget = Object.freeze({ ratePerSecond: 10, burst: 50, catchUpEntryRate: Object.freeze({ ratePerSecond: 200, burst: 2000 }), maxNodes: 20_000 });

export interface NodeWatchBudget {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly catchUpEntryRate: { readonly ratePerSecond: number; readonly burst: number };
  readonly maxNodes: number;
}

/** How a MAC'd request is checked: what the replica knows of the named node and its heartbeat MAC key K. */
export interface WatchRequestAuth {
  /** The identity key this replica knows for node `name` (Coordinator.identityKeyOf), or undefined. */
  identityKeyOf(name: string): string | undefined;
  /** K for that identity key (HeartbeatMacKeys.keyFor), or null when none can be agreed. */
  keyFor(identityKey: string, name: string): Buffer | null;
  /** A `sentAt` further than this from the replica's clock is stale (--max-clock-skew). */
  readonly maxClockSkewMs: number;
}

export interface WatchBrokerOptions {
  readonly nc: NatsConnection;
  readonly bucket: string;
  readonly subjectPrefix: string;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Signs catch-up pages (the coordinator's key: agents verify them with the key they verify records with). */
  readonly signingKey: SigningKeyPair;
  /** Requests served per second (refill) and at once (burst), per replica: WATCH_RATE_DEFAULTS. */
  readonly ratePerSecond?: number;
  readonly burst?: number;
  /** Catch-up entries read per second and at once, per replica: CATCHUP_ENTRY_RATE_DEFAULTS. */
  readonly catchUpEntryRate?: { readonly ratePerSecond: number; readonly burst: number };
  /** The consumers' idle heartbeat (default 5 s); the agent ends a watch silent for about 3× this. */
  readonly heartbeatMs?: number;
  /** The server removes a consumer whose inbox has had no subscriber this long (default 30 s). */
  readonly inactiveMs?: number;
  /** JetStream API requests handled at once (default 32); the rest queue. */
  readonly concurrency?: number;
  /**
   * Timeout of the broker's own JetStream API requests (default 2 s): shorter than the agent's request
   * timeout (brokered-watch.ts), so a create that cannot be served (the JetStream meta leader lost
   * with a server) is answered `unavailable` while the agent still listens, and it retries soon.
   */
  readonly apiTimeoutMs?: number;
  /** Checks MAC'd requests; absent: every request draws from the shared budget. */
  readonly auth?: WatchRequestAuth;
  /** Budgets of nodes whose requests carry a valid MAC: NODE_WATCH_BUDGET_DEFAULTS. */
  readonly nodeBudget?: NodeWatchBudget;
  /** Counts requests refused for their size and requests by budget (crosslink_coordinator_watch_requests_total). */
  readonly metrics?: Pick<CoordinatorMetricsHooks, 'requestTooLarge' | 'watchRequestAuth'> | undefined;
}

export interface WatchBroker {
  /** Requests answered so far, by outcome. */
  stats(): { readonly created: number; readonly counted: number; readonly caughtUp: number; readonly refused: number; readonly rateLimited: number; readonly failed: number; readonly auth: Readonly<Record<WatchRequestAuthOutcome, number>> };
  stop(): Promise<void>;
}

/** The consumer a watch request gets: ephemeral, pinned filter and inbox, ack none, flow control. */
export function watchConsumerConfig(bucket: string, req: Extract<WatchRequest, { kind: 'watch' }>, o: { readonly heartbeatMs: number; readonly inactiveMs: number }): Partial<ConsumerConfig> {
  const start = req.start.kind === 'after' ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: req.start.revision + 1 } : { deliver_policy: DeliverPolicy.LastPerSubject };
  return {
    // A name but no durable_name: ephemeral (nats-server 2.9 names ephemerals too; the create subject then carries the filter).
    name: `xlw_${nuid.next()}`,
    deliver_subject: req.deliverSubject,
    filter_subject: `$KV.${bucket}.${req.filter}`,
    ...start,
    ack_policy: AckPolicy.None,
    replay_policy: ReplayPolicy.Instant,
    flow_control: true,
    idle_heartbeat: nanos(o.heartbeatMs),
    inactive_threshold: nanos(o.inactiveMs),
    mem_storage: true,
    num_replicas: 1,
  };
}

/** Serves `<prefix>.watch` on this connection until stop(). */
export function serveWatchBroker(o: WatchBrokerOptions): WatchBroker {
  const limit = new RegistrationRateLimit(o.ratePerSecond ?? WATCH_RATE_DEFAULTS.ratePerSecond, o.burst ?? WATCH_RATE_DEFAULTS.burst);
  const entryRate = o.catchUpEntryRate ?? CATCHUP_ENTRY_RATE_DEFAULTS;
  const entries = new RegistrationRateLimit(entryRate.ratePerSecond, entryRate.burst);
  const nb = o.nodeBudget ?? NODE_WATCH_BUDGET_DEFAULTS;
  // Per node, keyed by its name: requests of each kind, catch-up entries.
  const nodeLimits = { watch: new RegistrationRateLimit(nb.ratePerSecond, nb.burst, nb.maxNodes), catchup: new RegistrationRateLimit(nb.ratePerSecond, nb.burst, nb.maxNodes) };
  const nodeEntries = new RegistrationRateLimit(nb.catchUpEntryRate.ratePerSecond, nb.catchUpEntryRate.burst, nb.maxNodes);
  /**
   * Up to `n` tokens: from the node's own budget first (a valid MAC of a node this replica knows), then
   * the shared one — a node past its own budget draws on the shared one as every request did before;
   * a flood that emptied the shared budget never reaches a node's own. With where they came from, to
   * give back what was not used.
   */
  const draw = (own: RegistrationRateLimit, shared: RegistrationRateLimit, sharedKey: string, node: string | undefined, n: number) => {
    const now = o.clock.now();
    if (node !== undefined) {
      const d = own.takeUpTo(node, now, n);
      if (d.ok) return { d, from: own, key: node };
    }
    return { d: shared.takeUpTo(sharedKey, now, n), from: shared, key: sharedKey };
  };
  const authCounts = Object.fromEntries(WATCH_REQUEST_AUTH_OUTCOMES.map((k) => [k, 0])) as Record<WatchRequestAuthOutcome, number>;
  const heartbeatMs = o.heartbeatMs ?? 5000;
  const inactiveMs = o.inactiveMs ?? 30_000;
  const concurrency = o.concurrency ?? 32;
  const throttle = new RateLimitedLog(o.logger, o.clock);
  const sizes = new RequestSizeGate(o.logger, o.clock, (kind) => o.metrics?.requestTooLarge?.(kind));
  const counts = { created: 0, counted: 0, caughtUp: 0, refused: 0, rateLimited: 0, failed: 0 };
  const stream = `KV_${o.bucket}`;
  let jsm: Promise<JetStreamManager> | undefined;
  let active = 0;
  const queue: Msg[] = [];
  const inFlight = new Set<Promise<void>>();

  const reply = (msg: Msg, r: WatchReply | CatchUpReply): void => {
    try {
      msg.respond(JSON.stringify(r));
    } catch (err) {
      o.logger.debug({ err: errorMessage(err) }, 'watch broker: cannot reply');
    }
  };

  /** Over REQUEST_MAX_BYTES['watch request']: refused unread and never queued (the watch protocol's `invalid` is `bad-request`). */
  const refusedForSize = (msg: Msg): boolean => {
    const tooLarge = sizes.refusal(msg.data, 'watch request');
    if (!tooLarge) return false;
    counts.refused++;
    reply(msg, { ok: false, code: 'bad-request', field: '(body)', message: tooLarge.message });
    return true;
  };

  /** Whose budget `msg` draws from: the node's, for a valid MAC of a node this replica knows (never refused for its MAC: old agents and tools keep the shared budget). */
  const authenticate = (msg: Msg): { readonly outcome: WatchRequestAuthOutcome; readonly node?: string } => {
    const h = msg.headers;
    const node = h?.get(WATCH_MAC_HEADERS.node) ?? '';
    const sentAtRaw = h?.get(WATCH_MAC_HEADERS.sentAt) ?? '';
    const mac = h?.get(WATCH_MAC_HEADERS.mac) ?? '';
    if (o.auth === undefined || node === '' || sentAtRaw === '' || mac === '') return { outcome: 'unsigned' };
    const sentAt = parseSentAtHeader(sentAtRaw);
    if (sentAt === undefined || Math.abs(o.clock.now() - sentAt) > o.auth.maxClockSkewMs) return { outcome: 'stale' };
    const identityKey = o.auth.identityKeyOf(node);
    const key = identityKey === undefined ? null : o.auth.keyFor(identityKey, node);
    if (key === null) return { outcome: 'unknown-node' };
    if (!watchRequestMacMatches(watchRequestMacInput(node, sentAt, msg.data), mac, watchRequestMacKey(key))) return { outcome: 'bad-mac' };
    return { outcome: 'node', node };
  };

  const handle = async (msg: Msg): Promise<void> => {
    const parsed = parseWatchRequest(msg.data);
    if (!parsed.ok) {
      counts.refused++;
      throttle.warn('watch-refused', { field: parsed.field, reason: parsed.message }, 'watch broker: refused a request');
      reply(msg, parsed);
      return;
    }
    const req = parsed.request;
    const who = authenticate(msg);
    authCounts[who.outcome]++;
    o.metrics?.watchRequestAuth?.(who.outcome);
    // Catch-up polls (every second per agent while its watch cannot be created) have their own
    // bucket: they cannot use up the tokens the re-watch storm needs, nor the other way round.
    const kind = req.kind === 'catchup' ? 'catchup' : 'watch';
    const take = draw(nodeLimits[kind], limit, kind, who.node, 1).d;
    if (!take.ok) {
      counts.rateLimited++;
      throttle.warn('watch-rate', { retryAfterMs: take.retryAfterMs }, 'watch broker: rate limit reached; refusing watch requests for now');
      reply(msg, { ok: false, code: 'rate-limited', message: `too many watch requests; retry in ${take.retryAfterMs} ms`, retryAfterMs: take.retryAfterMs });
      return;
    }
    try {
      jsm ??= jetstreamManager(o.nc, { checkAPI: false, timeout: o.apiTimeoutMs ?? BROKER_API_TIMEOUT_MS });
      const api = await jsm.catch((err: unknown) => {
        jsm = undefined;
        throw err;
      });
      if (req.kind === 'catchup') {
        // The page is as long as the entry budget allows (a shorter page says `more`); the entries
        // not read are given back. Direct gets with this replica's own credential, pinned to the
        // validated filter: no consumer.
        const { d: budget, from: budgets, key: entriesKey } = draw(nodeEntries, entries, 'entries', who.node, req.limit);
        if (!budget.ok) {
          counts.rateLimited++;
          throttle.warn('catchup-rate', { retryAfterMs: budget.retryAfterMs }, 'watch broker: catch-up entry budget used up; refusing catch-up for now');
          reply(msg, { ok: false, code: 'rate-limited', message: `too many catch-up entries read; retry in ${budget.retryAfterMs} ms`, retryAfterMs: budget.retryAfterMs });
          return;
        }
        let page: KvCatchUpPage;
        try {
          page = await readKvAfter(api, o.bucket, req.filter, req.afterRevision, { limit: budget.taken, maxBytes: CATCHUP_MAX_BYTES });
        } catch (err) {
          budgets.giveBack(entriesKey, budget.taken);
          throw err;
        }
        budgets.giveBack(entriesKey, budget.taken - page.entries.length);
        counts.caughtUp++;
        reply(msg, await signedCatchUpPage(req, page, o.signingKey.secretKey));
        return;
      }
      if (req.kind === 'count') {
        const c = await countKvFilter(api, o.bucket, req.filter, { name: `xlc_${nuid.next()}`, inactiveMs });
        counts.counted++;
        reply(msg, { ok: true, name: '', pending: c.keys, lastRevision: c.lastRevision, heartbeatMs: 0 });
        return;
      }
      const c = await api.consumers.add(stream, watchConsumerConfig(o.bucket, req, { heartbeatMs, inactiveMs }));
      counts.created++;
      reply(msg, { ok: true, name: c.name, pending: c.num_pending, lastRevision: c.delivered.stream_seq, heartbeatMs });
    } catch (err) {
      counts.failed++;
      throttle.warn('watch-failed', { err: errorMessage(err), filter: req.filter, kind: req.kind }, 'watch broker: cannot serve the request');
      reply(msg, { ok: false, code: 'unavailable', message: `cannot ${req.kind === 'watch' ? 'create the watch' : `serve the ${req.kind}`}: ${errorMessage(err)}; retry` });
    }
  };

  const pump = (): void => {
    while (active < concurrency && queue.length > 0) {
      const msg = queue.shift() as Msg;
      active++;
      const p = handle(msg)
        .catch((err: unknown) => o.logger.error({ err: errorMessage(err) }, 'watch broker: handler failed'))
        .finally(() => {
          active--;
          inFlight.delete(p);
          pump();
        });
      inFlight.add(p);
    }
  };

  const sub: Subscription = o.nc.subscribe(subjects(o.subjectPrefix).watch, {
    queue: WATCH_QUEUE,
    callback: (err, msg) => {
      if (err) {
        o.logger.warn({ err: errorMessage(err) }, 'watch broker subscription error');
        return;
      }
      if (refusedForSize(msg)) return;
      queue.push(msg);
      pump();
    },
  });

  return {
    stats: () => ({ ...counts, auth: { ...authCounts } }),
    async stop() {
      sub.unsubscribe();
      queue.length = 0;
      await Promise.all([...inFlight]);
    },
  };
}
