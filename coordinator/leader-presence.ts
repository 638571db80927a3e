// Is a leader serving right now? Every replica listens to heartbeats (followers keep liveness warm)
// but only the leader answers them. When the leader dies without releasing its lease (SIGKILL, a
// lost node), followers take over only once the lease expires; meanwhile the heartbeats they hear
// went unanswered and every agent waited out its request timeout. So the leader answers a presence
// probe on its own subject for as long as it leads, and followers probe it a few times a second:
// "no responders" (the leader's connection, and with it its subscription, is gone) or no answer
// means nobody serves, and a follower then answers heartbeats `unavailable` at once — the agent
// retries within seconds — until a leader (perhaps itself) serves again.
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Clock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { CoordinatorEpoch } from '../protocol/coordinator-epoch.ts';

/** What a follower knows of the leader: not probed yet, answering, or not answering (since when, its clock). */
export type LeaderSeen = { readonly kind: 'unknown' } | { readonly kind: 'present'; readonly holder: string } | { readonly kind: 'absent'; readonly since: number; readonly why: string };

/** What the leader answers a probe with: who it is and its epoch (protocol/coordinator-epoch.ts). */
export interface LeaderPresence {
  readonly holder: string;
  readonly epoch: string;
}

/** Leader side: answers probes with its holder id and epoch until the returned function is called. */
export function serveLeaderPresence(nc: NatsConnection, subject: string, presence: LeaderPresence, logger: Logger): () => void {
  let sub: Subscription | undefined;
  try {
    sub = nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) {
          logger.debug({ err: errorMessage(err) }, 'leader presence subscription error');
          return;
        }
        if (msg.reply) msg.respond(JSON.stringify(presence));
      },
    });
  } catch (err) {
    // A closed connection: nobody could probe us through it anyway.
    logger.debug({ err: errorMessage(err) }, 'cannot serve leader presence');
  }
  return () => {
    try {
      sub?.unsubscribe();
    } catch {
      // connection already closed
    }
  };
}

export interface LeaderProbeOptions {
  readonly nc: NatsConnection;
  readonly subject: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Between probes; default 500 ms. */
  readonly periodMs?: number;
  /** A probe unanswered this long counts as no leader; default 1000 ms. */
  readonly timeoutMs?: number;
}

/**
 * Follower side: probes the leader's presence subject between start() and stop() (a replica runs it
 * only while it follows: a leader's loop would only sleep on the injected clock for nothing).
 */
export class LeaderProbe {
  private state: LeaderSeen = { kind: 'unknown' };
  /** The epoch the leader last announced; kept while it is absent (its agents still sign it). */
  private announced: string | undefined;
  private running: { readonly abort: AbortController; readonly loop: Promise<void> } | undefined;

  constructor(private readonly o: LeaderProbeOptions) {}

  get seen(): LeaderSeen {
    return this.state;
  }

  /** The epoch the leader answered with last (undefined: none yet, or an older leader that sends none). */
  get epoch(): string | undefined {
    return this.announced;
  }

  /** True once a probe found no leader serving (and none has answered since). */
  leaderAbsent(): boolean {
    return this.state.kind === 'absent';
  }

  /** One probe now; updates what is seen (unless stopped meanwhile). */
  async probe(): Promise<LeaderSeen> {
    const run = this.running;
    let next: LeaderSeen;
    try {
      const reply = await this.o.nc.request(this.o.subject, '', { timeout: this.o.timeoutMs ?? 1000 });
      const presence = parsePresence(reply.string());
      next = { kind: 'present', holder: presence.holder };
      if (run === this.running) this.announced = presence.epoch;
    } catch (err) {
      next = this.state.kind === 'absent' ? this.state : { kind: 'absent', since: this.o.clock.now(), why: errorMessage(err) };
    }
    if (run === this.running) this.set(next);
    return this.state;
  }

  /** Starts probing (no-op if it is already). */
  start(): void {
    if (this.running) return;
    const abort = new AbortController();
    this.running = { abort, loop: this.run(abort.signal) };
  }

  /** Stops probing and forgets what it saw; resolves when the loop has ended. */
  async stop(): Promise<void> {
    const r = this.running;
    this.running = undefined;
    this.state = { kind: 'unknown' };
    this.announced = undefined;
    if (!r) return;
    r.abort.abort();
    await r.loop;
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.probe();
      await this.o.clock.sleep(this.o.periodMs ?? 500, signal);
    }
  }

  private set(next: LeaderSeen): void {
    const was = this.state.kind;
    this.state = next;
    if (next.kind === 'absent' && was !== 'absent') this.o.logger.info({ why: next.why }, 'no leader answers: answering heartbeats "unavailable" until one does');
    else if (next.kind === 'present' && was === 'absent') this.o.logger.info({ leader: next.holder }, 'a leader answers again');
  }
}

function parsePresence(text: string): { holder: string; epoch: string | undefined } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { holder: '(unknown)', epoch: undefined };
  }
  if (typeof v !== 'object' || v === null) return { holder: '(unknown)', epoch: undefined };
  const holder = 'holder' in v && typeof v.holder === 'string' ? v.holder : '(unknown)';
  const epoch = CoordinatorEpoch.safeParse('epoch' in v ? v.epoch : undefined);
  return { holder, epoch: epoch.success ? epoch.data : undefined };
}
