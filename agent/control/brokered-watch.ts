// KV watches through the coordinator's watch broker (protocol/watch-broker.ts): the agent asks any
// coordinator replica (`<prefix>.watch`) for a consumer delivering to an inbox it subscribed to
// first, and turns the deliveries into the same KvWatchEntry values the nats.js watch yields: the
// key from the subject, the revision (stream sequence), delta and time from the `$JS.ACK.…` reply
// subject, the operation from the KV-Operation header. It answers flow-control requests, and ENDS the
// watch — never skips — on a consumer-sequence gap, missing idle heartbeats or a reconnect: the
// watcher's own resume logic (MeshWatch: from the last applied revision) then asks again. With every
// coordinator down, a consumer already created keeps delivering; only (re)creation waits.
// When no coordinator serves the subject at all (an older coordinator during an upgrade) it uses
// `fallback`, if given (the direct watch: refused by the server where agents hold no consumer permission).
import type { KvWatchEntry } from '@nats-io/kv';
import { createInbox, headers, nuid, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { VerifyKeys } from '../../protocol/signing.ts';
import { openCatchUpPage } from './catch-up-verify.ts';
import type { Clock } from '../../lib/clock.ts';
import { ClockTimer } from '../../lib/clock-timer.ts';
import { CrosslinkError, errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { AsyncQueue } from '../../lib/async-queue.ts';
import { onConnectionStatus } from '../../lib/nats-status.ts';
import { ConnectionLostError, requestUntilDisconnect } from '../../lib/nats-request.ts';
import { subjects } from '../../protocol/subjects.ts';
import { macWatchRequest, watchRequestMacInput, WATCH_MAC_HEADERS, type WatchRequestMac } from '../../protocol/watch-request-mac.ts';
import { CatchUpReply, WatchReply, type WatchRefusalCode, type WatchRequest } from '../../protocol/watch-broker.ts';
import { directWatchSource, type CatchUpOptions, type FilterCount, type KeyWatch, type KeyWatchOptions, type KeyWatchSource, type KvCatchUpPage } from './key-watch.ts';

/** The broker refused (or could not be asked): `code` says why; `retryAfterMs` when rate-limited. */
export class WatchBrokerError extends CrosslinkError {
  override name = 'WatchBrokerError';
  constructor(
    readonly code: WatchRefusalCode,
    message: string,
    readonly retryAfterMs?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The longest wait a broker's `retryAfterMs` imposes on the agent (10 s): a larger value (a broker's
 * bug, or a budget refilled that slowly) is cut to this, so a refusal never parks a recovering watch
 * for longer than a watch re-creation backs off to at most (MeshWatch retryMaxMs, 5 s) twice.
 */
export const RETRY_AFTER_MAX_MS = 10_000;

/**
 * How long a refusal asked us to wait before asking again: a rate-limited WatchBrokerError's
 * `retryAfterMs`, at most RETRY_AFTER_MAX_MS; 0 for any other error (the caller's own pace applies).
 */
export function retryAfterOf(err: unknown): number {
  if (!(err instanceof WatchBrokerError) || err.code !== 'rate-limited' || err.retryAfterMs === undefined) return 0;
  return Math.min(Math.max(0, err.retryAfterMs), RETRY_AFTER_MAX_MS);
}

export interface BrokeredWatchOptions {
  readonly nc: NatsConnection;
  readonly bucket: string;
  readonly subjectPrefix: string;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Verifies catch-up pages (the coordinator signs them; the same key(s) that verify records). */
  readonly coordinatorKey: VerifyKeys;
  /** Timeout of the request to the broker (default WATCH_REQUEST_TIMEOUT_MS, 3 s). */
  readonly requestTimeoutMs?: number;
  /** Used only when nobody serves the watch subject ("no responders"). */
  readonly fallback?: KeyWatchSource;
  /**
   * What each request is MAC'd with (the node's name and K_watch, protocol/watch-request-mac.ts), asked
   * per request; undefined (no K yet, or heartbeats fell back to signatures): sent without headers,
   * from the broker's shared budget.
   */
  readonly requestMac?: () => WatchRequestMac | undefined;
}

/** The MAC headers of a request with `body`, sent at `sentAt` (ms). */
export function watchMacHeaders(mac: WatchRequestMac, sentAt: number, body: Uint8Array): MsgHdrs {
  const h = headers();
  h.set(WATCH_MAC_HEADERS.node, mac.node);
  h.set(WATCH_MAC_HEADERS.sentAt, String(sentAt));
  h.set(WATCH_MAC_HEADERS.mac, macWatchRequest(mac.key, watchRequestMacInput(mac.node, sentAt, body)).toString('base64'));
  return h;
}

export interface BrokeredWatchStats {
  /** Watches the broker created for us. */
  readonly brokered: number;
  /** Watches and counts that took the fallback (no coordinator served the subject). */
  readonly fallbacks: number;
  /** Catch-up pages the broker served (while a watch could not be created). */
  readonly catchUps: number;
  /** Watches ended because they broke: a consumer-sequence gap, missing heartbeats, a reconnect. */
  readonly gaps: number;
  readonly silent: number;
  readonly reconnects: number;
}

export interface BrokeredWatchSource extends KeyWatchSource {
  stats(): BrokeredWatchStats;
}

interface AckInfo {
  readonly consumer: string;
  readonly streamSeq: number;
  readonly consumerSeq: number;
  readonly timestampNanos: number;
  readonly pending: number;
}

/** `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` (and the 12-token form with domain and account hash). */
export function parseAckSubject(reply: string | undefined): AckInfo | undefined {
  if (reply?.startsWith('$JS.ACK.') !== true) return undefined;
  const t = reply.split('.');
  const o = t.length === 9 ? 2 : t.length >= 11 ? 4 : -1;
  if (o < 0) return undefined;
  const n = (i: number): number => Number(t[o + i]);
  const info = { consumer: t[o + 1] ?? '', streamSeq: n(3), consumerSeq: n(4), timestampNanos: n(5), pending: n(6) };
  return [info.streamSeq, info.consumerSeq, info.pending].every((x) => Number.isSafeInteger(x) && x >= 0) ? info : undefined;
}

export function brokeredWatchSource(o: BrokeredWatchOptions): BrokeredWatchSource {
  const counts = { brokered: 0, fallbacks: 0, catchUps: 0, gaps: 0, silent: 0, reconnects: 0 };
  const subject = subjects(o.subjectPrefix).watch;

  const ask = async (req: WatchRequest): Promise<Extract<WatchReply, { ok: true }> | 'no-responders'> => {
    const r = await askFor(req, WatchReply);
    if (r === 'no-responders' || 'name' in r) return r;
    throw new WatchBrokerError('unavailable', 'unexpected reply from the watch broker: not a watch or count answer');
  };

  const askFor = async <R extends WatchReply | CatchUpReply>(req: WatchRequest, schema: { parse(v: unknown): R }): Promise<Exclude<R, { ok: false }> | 'no-responders'> => {
    let msg: Msg;
    try {
      // Lost with the connection: ends at the disconnect, not the timeout (the watcher asks again once reconnected).
      const body = Buffer.from(JSON.stringify(req), 'utf8');
      const mac = o.requestMac?.();
      const h = mac === undefined ? {} : { headers: watchMacHeaders(mac, Math.floor(o.clock.now()), body) };
      msg = await requestUntilDisconnect(o.nc, subject, body, { timeout: o.requestTimeoutMs ?? WATCH_REQUEST_TIMEOUT_MS, ...h });
    } catch (err) {
      if (err instanceof ConnectionLostError) throw new WatchBrokerError('unavailable', `the watch request was lost with the NATS connection: ${err.message}`, undefined, { cause: err });
      const noResponders = typeof (err as { isNoResponders?: unknown }).isNoResponders === 'function' && (err as { isNoResponders: () => boolean }).isNoResponders();
      if (noResponders) return 'no-responders';
      throw new WatchBrokerError('unavailable', `no coordinator answered the watch request: ${errorMessage(err)}`, undefined, { cause: err });
    }
    let parsed: R;
    try {
      parsed = schema.parse(JSON.parse(msg.string()));
    } catch (err) {
      throw new WatchBrokerError('unavailable', `unexpected reply from the watch broker: ${errorMessage(err)}`, undefined, { cause: err });
    }
    if (!parsed.ok) throw new WatchBrokerError(parsed.code, `the watch broker refused: ${parsed.message}`, parsed.retryAfterMs);
    return parsed as Exclude<R, { ok: false }>;
  };

  const noCoordinator = (): WatchBrokerError => new WatchBrokerError('unavailable', `no coordinator serves ${subject} (none running, or older than the watch broker)`);

  return {
    stats: () => ({ ...counts }),
    async count(filter): Promise<FilterCount> {
      const r = await ask({ kind: 'count', filter });
      if (r === 'no-responders') {
        if (!o.fallback) throw noCoordinator();
        counts.fallbacks++;
        return o.fallback.count(filter);
      }
      return { keys: r.pending, lastRevision: r.lastRevision };
    },
    async catchUp(c: CatchUpOptions): Promise<KvCatchUpPage> {
      const nonce = nuid.next();
      const r = await askFor({ kind: 'catchup', filter: c.filter, afterRevision: c.afterRevision, limit: c.limit, nonce }, CatchUpReply);
      if (r === 'no-responders') {
        if (!o.fallback) throw noCoordinator();
        counts.fallbacks++;
        return o.fallback.catchUp(c);
      }
      const page = await openCatchUpPage(r, { ...c, nonce }, o.coordinatorKey).catch((err: unknown) => {
        throw new WatchBrokerError('unavailable', `a catch-up page failed verification: ${errorMessage(err)}`, undefined, { cause: err });
      });
      counts.catchUps++;
      return page;
    },
    async watch(w: KeyWatchOptions): Promise<KeyWatch> {
      const inbox = createInbox();
      const watch = new InboxWatch(o, w.key, counts);
      // Subscribed before asking: deliveries may arrive before the reply.
      watch.subscribe(inbox);
      let r: Awaited<ReturnType<typeof ask>>;
      try {
        const start = w.resumeFromRevision === undefined ? { kind: 'last-per-subject' as const } : { kind: 'after' as const, revision: Math.max(0, w.resumeFromRevision - 1) };
        r = await ask({ kind: 'watch', filter: w.key, deliverSubject: inbox, start });
      } catch (err) {
        watch.stop();
        throw err;
      }
      if (r === 'no-responders') {
        watch.stop();
        if (!o.fallback) throw noCoordinator();
        counts.fallbacks++;
        return o.fallback.watch(w);
      }
      counts.brokered++;
      watch.begin(r);
      return watch;
    },
  };
}

/**
 * How long the agent waits for a broker's answer (default): longer than the broker's own JetStream API
 * timeout (coordinator/watch-broker.ts, 2 s) so its `unavailable` arrives, short enough that a watch lost
 * with a NATS server is asked for again soon (each failure then backs off from 250 ms).
 */
export const WATCH_REQUEST_TIMEOUT_MS = 3000;

/** Where the server asks for flow-control answers (`$JS.FC.<stream>.…`). */
const FLOW_CONTROL_PREFIX = '$JS.FC.';

/** One brokered watch: the inbox subscription turned into an entry iterator. */
class InboxWatch implements KeyWatch {
  private sub: Subscription | undefined;
  private readonly early: Msg[] = [];
  private readonly queue = new AsyncQueue<KvWatchEntry>();
  private ended = false;
  private name: string | undefined;
  private initial = 0;
  private delivered = 0;
  private lastConsumerSeq = 0;
  private lastActivity = 0;
  /** Looks every heartbeat interval (of the injected clock) whether the consumer went silent. */
  private silence: ClockTimer | undefined;
  private stopStatus: (() => void) | undefined;
  private readonly prefix: string;
  private readonly decoder = new TextDecoder();

  constructor(
    private readonly o: BrokeredWatchOptions,
    private readonly filter: string,
    private readonly counts: { gaps: number; silent: number; reconnects: number },
  ) {
    this.prefix = `$KV.${o.bucket}.`;
  }

  subscribe(inbox: string): void {
    this.sub = this.o.nc.subscribe(inbox, {
      callback: (err, msg) => {
        if (err) this.end(`inbox subscription: ${errorMessage(err)}`);
        else if (this.name === undefined) this.early.push(msg);
        else this.onMessage(msg);
      },
    });
  }

  /** The broker created the consumer: deliveries from now on (and those that came before the reply). */
  begin(r: Extract<WatchReply, { ok: true }>): void {
    if (this.ended) return;
    this.name = r.name;
    this.initial = r.pending;
    this.lastActivity = this.o.clock.now();
    this.stopStatus = onConnectionStatus(this.o.nc, (s) => {
      if (s.type !== 'reconnect') return;
      this.counts.reconnects++;
      this.end('NATS reconnected (the consumer may be gone)', true);
    });
    if (r.heartbeatMs > 0) {
      const silentMs = 3 * r.heartbeatMs;
      const silence = new ClockTimer({
        clock: this.o.clock,
        fire: () => {
          if (this.o.clock.now() - this.lastActivity <= silentMs) {
            silence.arm(r.heartbeatMs);
            return;
          }
          this.counts.silent++;
          this.end(`no delivery or heartbeat for ${silentMs} ms (the consumer is gone)`, true);
        },
        onError: (err) => this.end(`the silence check failed: ${errorMessage(err)}`, true),
      });
      this.silence = silence;
      silence.arm(r.heartbeatMs);
    }
    for (const m of this.early.splice(0)) this.onMessage(m);
  }

  initialCount(): Promise<number | undefined> {
    return Promise.resolve(this.name === undefined ? undefined : this.initial);
  }

  stop(): void {
    this.end('stopped', false);
  }

  [Symbol.asyncIterator](): AsyncIterator<KvWatchEntry> {
    return this.queue.iterator(() => this.stop());
  }

  private onMessage(msg: Msg): void {
    if (this.ended) return;
    const h = msg.headers;
    if (h && h.code === 100) {
      this.lastActivity = this.o.clock.now();
      // Flow control: the server waits for this answer before sending more. Only to the server's
      // flow-control subjects: a status message published into our shared inbox must not make every
      // agent publish to a subject of the sender's choosing (the register or heartbeat subject).
      if (msg.reply?.startsWith(FLOW_CONTROL_PREFIX)) msg.respond();
      const stalled = h.get('Nats-Consumer-Stalled');
      if (stalled.startsWith(FLOW_CONTROL_PREFIX)) this.o.nc.publish(stalled);
      const last = Number(h.get('Nats-Last-Consumer') || '0');
      if (last > this.lastConsumerSeq) {
        this.counts.gaps++;
        this.end(`heartbeat: the consumer delivered up to ${last}, we received ${this.lastConsumerSeq}`, true);
      }
      return;
    }
    const ack = parseAckSubject(msg.reply);
    // Not from our consumer: ignored. (A client publishing into our inbox cannot fake a delivery: the
    // server presents a delivery with its stream subject `$KV.<bucket>.<key>`, a publish with the inbox.)
    if (!ack || ack.consumer !== this.name || !msg.subject.startsWith(this.prefix)) {
      this.o.logger.debug({ subject: msg.subject, reply: msg.reply }, 'brokered watch: ignoring a message not from our consumer');
      return;
    }
    this.lastActivity = this.o.clock.now();
    if (ack.consumerSeq !== this.lastConsumerSeq + 1) {
      this.counts.gaps++;
      this.end(`consumer sequence ${ack.consumerSeq} after ${this.lastConsumerSeq} (a delivery was lost)`, true);
      return;
    }
    this.lastConsumerSeq = ack.consumerSeq;
    const op = h?.get('KV-Operation');
    const operation = op === 'DEL' || op === 'PURGE' ? op : 'PUT';
    const key = msg.subject.slice(this.prefix.length);
    const value = msg.data;
    const decoder = this.decoder;
    const entry: KvWatchEntry = {
      bucket: this.o.bucket,
      key,
      rawKey: key,
      value,
      created: new Date(Math.floor(ack.timestampNanos / 1e6)),
      revision: ack.streamSeq,
      delta: ack.pending,
      operation,
      length: value.length,
      // As nats.js marks them: the last entry of the initial snapshot is already an update (callers end the snapshot on it).
      isUpdate: this.delivered + 1 >= this.initial,
      // KvEntry's json<T>() is the caller's assertion, as in nats.js.
      json: () => JSON.parse(decoder.decode(value)) as never,
      string: (): string => decoder.decode(value),
    };
    this.delivered++;
    this.queue.push(entry);
  }

  private end(reason: string, broke = false): void {
    if (this.ended) return;
    this.ended = true;
    this.sub?.unsubscribe();
    this.stopStatus?.();
    this.silence?.cancel();
    if (broke) this.o.logger.warn({ filter: this.filter, consumer: this.name, reason }, 'brokered KV watch ended; it is re-created from where it was');
    this.queue.close();
  }
}

/** The agent's source: the broker, and the direct watch only where no coordinator serves the broker subject. */
export function agentWatchSource(o: Omit<BrokeredWatchOptions, 'fallback'>): BrokeredWatchSource {
  return brokeredWatchSource({ ...o, fallback: directWatchSource({ nc: o.nc, bucket: o.bucket }) });
}
