// `crosslink events [--follow]`: the recent history from the coordinator's event stream
// (protocol/events.ts, coordinator/event-stream.ts), then — with --follow — live events.
// Only stream info, message get, direct gets of node records and a plain subscription are used (no
// consumers), so read-only NATS credentials suffice. Live events are subscribed to BEFORE the
// history is read, and de-duplicated by id, so nothing published in between is lost. Every event
// is verified (protocol/event-verify.ts): one whose reporter cannot be confirmed goes to
// onUnverified, never to onEvent.
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';
import { eventStreamName, type CrosslinkEvent } from '../protocol/events.ts';
import { verifyEvent, type EventSigners } from '../protocol/event-verify.ts';

export class EventReadError extends CrosslinkError {
  override name = 'EventReadError';
}

export interface EventFilter {
  readonly node?: string;
  readonly cluster?: string;
  readonly types?: readonly string[];
}

export function matchesFilter(e: CrosslinkEvent, f: EventFilter): boolean {
  if (f.node !== undefined && e.node !== f.node && !(e.reporter.role === 'agent' && e.reporter.name === f.node)) return false;
  if (f.cluster !== undefined && e.cluster !== f.cluster) return false;
  if (f.types !== undefined && f.types.length > 0 && !f.types.includes(e.type)) return false;
  return true;
}

export interface ReadEventsOptions {
  readonly nc: NatsConnection;
  readonly bucket: string;
  /** How many of the most recent stored events to look at. */
  readonly last: number;
  readonly filter: EventFilter;
  /** Keep listening until the signal aborts. */
  readonly follow: boolean;
  readonly signal?: AbortSignal;
  /** The keys events are verified with (cli/event-signers.ts reads them from the bucket). */
  readonly signers: EventSigners;
  /** A verified event that passes the filter. */
  readonly onEvent: (e: CrosslinkEvent) => void;
  /** A message on the subject that is not a valid event (shown, never trusted). */
  readonly onInvalid?: (subject: string, reason: string) => void;
  /** A valid event whose reporter could not be confirmed (`claimed`: what it says; never attributed). Not filtered. */
  readonly onUnverified?: (subject: string, claimed: CrosslinkEvent, reason: string) => void;
}

/** Reads history (and follows); resolves with the number of events shown. */
export async function readEvents(o: ReadEventsOptions): Promise<number> {
  const stream = eventStreamName(o.bucket);
  const jsm = await jetstreamManager(o.nc, { checkAPI: false });
  let info;
  try {
    info = await jsm.streams.info(stream);
  } catch (err) {
    throw new EventReadError(`cannot read the event stream "${stream}": ${errorMessage(err)} — is a coordinator running with --bucket ${o.bucket}?`, { cause: err });
  }
  const seen = new Set<string>();
  let shown = 0;
  const deliver = async (data: Uint8Array, subject: string): Promise<void> => {
    const r = await verifyEvent(data, subject, o.signers);
    if (!r.ok) {
      if (r.kind === 'invalid') o.onInvalid?.(subject, r.reason);
      else o.onUnverified?.(subject, r.claimed, r.reason);
      return;
    }
    if (seen.has(r.event.id)) return;
    seen.add(r.event.id);
    if (!matchesFilter(r.event, o.filter)) return;
    shown++;
    o.onEvent(r.event);
  };
  const live: { data: Uint8Array; subject: string }[] = [];
  let historyDone = false;
  // Live events are verified one after another, in arrival order (a node-record lookup may wait).
  let verifying = Promise.resolve();
  let sub: Subscription | undefined;
  if (o.follow) {
    sub = o.nc.subscribe(info.config.subjects[0] ?? '', {
      callback: (err, msg) => {
        if (err) return;
        // verifyEvent never throws; a throwing onEvent must not become an unhandled rejection.
        if (historyDone) verifying = verifying.then(() => deliver(msg.data, msg.subject)).catch(() => undefined);
        else live.push({ data: msg.data, subject: msg.subject });
      },
    });
    await o.nc.flush();
  }
  try {
    const last = info.state.last_seq;
    const first = Math.max(info.state.first_seq, last - o.last + 1, 1);
    for (let seq = first; seq <= last && info.state.messages > 0; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
      if (m) await deliver(m.data, m.subject);
    }
    // What arrived meanwhile, including while these are verified; then live delivery takes over.
    for (let m = live.shift(); m !== undefined; m = live.shift()) await deliver(m.data, m.subject);
    historyDone = true;
    if (o.follow && sub) {
      const s = sub;
      await new Promise<void>((resolve) => {
        if (o.signal?.aborted) resolve();
        o.signal?.addEventListener('abort', () => resolve(), { once: true });
        void s.closed.then(() => resolve());
      });
    }
  } finally {
    sub?.unsubscribe();
    await verifying;
  }
  return shown;
}
