// Mesh events: what changed and why, published on NATS (`<prefix>.events.<type>`) by the coordinator
// (gateway changes, joins, expiries, revocations) and by agents (wireguard-go restarts, reconcile
// failures, repairs). The coordinator keeps a bounded history in a JetStream stream
// (eventStreamName(bucket)); `crosslink events [--follow]` reads it. Events are informational: a
// lost event changes nothing, so publishing is fire-and-forget and never throws. Each event goes
// out as a SignedEnvelope: the coordinator's signed with its signing key, an agent's with its node
// identity key; readers attribute only what verifies (protocol/event-verify.ts).
import { randomBytes } from 'node:crypto';
import * as z from 'zod';
import type { Clock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { ClusterName, NodeName } from './messages.ts';
import { signEnvelopeNow } from './signing.ts';

export const EventType = z.enum([
  // coordinator
  'gateway-changed',
  'node-joined',
  'node-left',
  'node-expired',
  'node-revoked',
  'consumer-removed',
  // agent
  'wireguard-restarted',
  'reconcile-failed',
  'route-repaired',
  'peer-repaired',
  'mtu-repaired',
]);
export type EventType = z.infer<typeof EventType>;

/** The event types an agent publishes (the rest are the coordinator's): all an agent credential may publish. */
export const AGENT_EVENT_TYPES = ['wireguard-restarted', 'reconcile-failed', 'route-repaired', 'peer-repaired', 'mtu-repaired'] as const satisfies readonly EventType[];

export const EventSeverity = z.enum(['info', 'warning']);
export type EventSeverity = z.infer<typeof EventSeverity>;

/** Who published the event: a coordinator replica (name = its lease holder id) or an agent (its node name). */
export const EventReporter = z
  .object({
    role: z.enum(['agent', 'coordinator']),
    name: z.string().min(1).max(253),
  })
  .strict();
export type EventReporter = z.infer<typeof EventReporter>;

const DetailValue = z.union([z.string().max(512), z.number(), z.boolean(), z.null()]);

/** The largest encoded event accepted (publishers truncate the message to stay below). */
export const MAX_EVENT_BYTES = 4096;

export const CrosslinkEvent = z
  .object({
    v: z.literal(1),
    /** Random id (12 hex), to de-duplicate. */
    id: z.string().regex(/^[0-9a-f]{12}$/),
    /** Unix ms at the reporter. */
    at: z.number().int().nonnegative(),
    type: EventType,
    severity: EventSeverity,
    reporter: EventReporter,
    /** The node the event is about (for gateway-changed: the new gateway, if any). */
    node: NodeName.optional(),
    cluster: ClusterName.optional(),
    /** One line for humans. */
    message: z.string().min(1).max(1024),
    /** Small machine-readable facts (e.g. previous gateway, failed op count). */
    details: z.record(z.string().max(64), DetailValue).optional(),
  })
  .strict();
export type CrosslinkEvent = z.infer<typeof CrosslinkEvent>;

/** What an emitter fills in; the publisher adds v, id, at and reporter. */
export type EventInput = Omit<CrosslinkEvent, 'v' | 'id' | 'at' | 'reporter'>;

/** Anything that can take events: NATS, Kubernetes Events, a test recorder. Never throws, never blocks. */
export interface EventPublisher {
  publish(event: EventInput): void;
}

/** For components built without an event sink (tests, tools). */
export const noEvents: EventPublisher = { publish: () => undefined };

/** Sends every event to each publisher. */
export function fanOutEvents(...publishers: readonly EventPublisher[]): EventPublisher {
  return { publish: (e) => publishers.forEach((p) => p.publish(e)) };
}

/** Subject of one event type. */
export function eventSubject(prefix: string, type: EventType): string {
  return `${prefix}.events.${type}`;
}

/** The JetStream stream holding the recent events of the mesh whose KV bucket is `bucket`. */
export function eventStreamName(bucket: string): string {
  return `${bucket}_events`;
}

/** History bounds of the event stream (documented in docs/cli.md, `crosslink events`). */
export const EVENT_HISTORY = { maxMsgs: 10_000, maxBytes: 16 * 1024 * 1024, maxAgeMs: 7 * 24 * 3600_000 } as const;

/** The part of a NATS connection a publisher needs (a NatsConnection fits). */
export interface NatsPublish {
  publish(subject: string, payload: string): void;
}

export interface NatsEventPublisherOptions {
  readonly nc: () => NatsPublish | undefined;
  readonly subjectPrefix: string;
  /** A function when the reporter's name can change (an agent's node identity). */
  readonly reporter: EventReporter | (() => EventReporter);
  /**
   * The reporter's Ed25519 secret key (base64; never logged): the coordinator's signing key, or the
   * node's identity key, whose public half its coordinator-signed node record binds to its name.
   */
  readonly signingKey: string;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** Builds a complete, valid event (message truncated so the encoding stays under MAX_EVENT_BYTES). */
export function completeEvent(input: EventInput, reporter: EventReporter, at: number): CrosslinkEvent {
  const message = input.message.length > 1024 ? `${input.message.slice(0, 1021)}...` : input.message;
  const event: CrosslinkEvent = { v: 1, id: randomBytes(6).toString('hex'), at, ...input, message, reporter };
  if (Buffer.byteLength(JSON.stringify(event)) > MAX_EVENT_BYTES) {
    const { details: _dropped, ...rest } = event;
    return { ...rest, message: message.slice(0, 512) };
  }
  return event;
}

/**
 * Publishes events, signed (a SignedEnvelope of the event JSON), on `<prefix>.events.<type>` through
 * core NATS (no JetStream round trip on the agent's path; the coordinator's stream captures them).
 * Without a connection, or on an error, the event is logged and dropped.
 */
export class NatsEventPublisher implements EventPublisher {
  constructor(private readonly o: NatsEventPublisherOptions) {}

  publish(input: EventInput): void {
    const reporter = typeof this.o.reporter === 'function' ? this.o.reporter() : this.o.reporter;
    const event = completeEvent(input, reporter, this.o.clock.now());
    const parsed = CrosslinkEvent.safeParse(event);
    if (!parsed.success) {
      this.o.logger.warn({ type: input.type, err: parsed.error.message }, 'event not published: invalid');
      return;
    }
    this.o.logger.info({ event: { type: event.type, node: event.node, cluster: event.cluster } }, `event: ${event.message}`);
    const nc = this.o.nc();
    if (nc === undefined) return;
    try {
      nc.publish(eventSubject(this.o.subjectPrefix, event.type), JSON.stringify(signEnvelopeNow(parsed.data, this.o.signingKey)));
    } catch (err) {
      this.o.logger.debug({ type: event.type, err: errorMessage(err) }, 'event not published');
    }
  }
}
