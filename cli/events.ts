// `crosslink events [--follow]`: the recent history from the coordinator's event stream
// (protocol/events.ts, coordinator/event-stream.ts), then — with --follow — live events.
// Only stream info, message get and a plain subscription are used (no consumers), so read-only
// NATS credentials suffice. Live events are subscribed to BEFORE the history is read, and
// de-duplicated by id, so nothing published in between is lost.
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { CrosslinkError, errorMessage } from '../lib/errors.ts';
import { CrosslinkEvent, eventStreamName } from '../protocol/events.ts';

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
  readonly onEvent: (e: CrosslinkEvent) => void;
  /** A message on the subject that is not a valid event (shown, never trusted). */
  readonly onInvalid?: (subject: string, reason: string) => void;
}

export function parseEvent(data: Uint8Array): { ok: true; event: CrosslinkEvent } | { ok: false; reason: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(data)) as unknown;
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const parsed = CrosslinkEvent.safeParse(raw);
  return parsed.success ? { ok: true, event: parsed.data } : { ok: false, reason: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') };
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
  const deliver = (data: Uint8Array, subject: string): void => {
    const r = parseEvent(data);
    if (!r.ok) {
      o.onInvalid?.(subject, r.reason);
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
  let sub: Subscription | undefined;
  if (o.follow) {
    sub = o.nc.subscribe(info.config.subjects[0] ?? '', {
      callback: (err, msg) => {
        if (err) return;
        if (historyDone) deliver(msg.data, msg.subject);
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
      if (m) deliver(m.data, m.subject);
    }
    historyDone = true;
    for (const m of live.splice(0)) deliver(m.data, m.subject);
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
  }
  return shown;
}
