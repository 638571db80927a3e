// `crosslink events [--follow]`: mesh events from NATS (see cli/events.ts for how they are read).
import { Command, Option } from 'commander';
import type { NatsConnection } from '@nats-io/transport-node';
import * as z from 'zod';
import { check } from '../lib/flags.ts';
import type { Palette } from '../lib/colour.ts';
import { EventType, type CrosslinkEvent } from '../protocol/events.ts';
import { ClusterName, NodeName } from '../protocol/messages.ts';
import type { VerifyKeys } from '../protocol/signing.ts';
import { formatEvent } from './event-format.ts';
import { kvEventSigners } from './event-signers.ts';
import { readEvents } from './events.ts';


export interface EventsCommandDeps {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly setExit: (code: number) => void;
  readonly palette: () => Palette;
  /** Adds --nats-url, --nats-creds, --bucket (…) to the command. */
  readonly addNatsFlags: (cmd: Command) => Command;
  /** Connects with the command's NATS flags (one-shot, no reconnects) and names its bucket. */
  readonly connect: (cmd: Command) => Promise<{ readonly nc: NatsConnection; readonly bucket: string }>;
  /** The coordinator public keys of the command's --coordinator-key[-file] (required: events are verified). */
  readonly coordinatorKey: (cmd: Command) => Promise<VerifyKeys>;
  /** Ends --follow (SIGINT/SIGTERM in the binary; the test's controller in tests). */
  readonly signal?: AbortSignal;
}

export function parseEventTypes(text: string | undefined): EventType[] | undefined {
  if (text === undefined) return undefined;
  return text.split(',').map((t) => check('--type', t.trim(), EventType));
}

export function registerEventsCommand(program: Command, d: EventsCommandDeps): void {
  d.addNatsFlags(
    program
      .command('events')
      .description('recent mesh events (gateway changes, joins, expiries, revocations, wireguard-go restarts, reconcile failures, repairs); --follow keeps listening')
      .option('--follow', 'after the history, print new events as they happen (until interrupted)')
      .option('--last <n>', 'how many of the most recent stored events to look at (1-10000)', '50')
      .option('--node <name>', 'only events about or reported by this node')
      .option('--cluster <name>', 'only events of this cluster')
      .addOption(new Option('--type <types>', `only these types, comma-separated: ${EventType.options.join(', ')}`))
      .option('--json', 'one JSON event per line'),
  ).action(async (opts: { follow?: boolean; last: string; node?: string; cluster?: string; type?: string; json?: boolean }, cmd: Command) => {
    const last = check('--last', opts.last, z.coerce.number().int().min(1, 'must be 1-10000').max(10_000, 'must be 1-10000'));
    const filter = {
      ...(opts.node === undefined ? {} : { node: check('--node', opts.node, NodeName) }),
      ...(opts.cluster === undefined ? {} : { cluster: check('--cluster', opts.cluster, ClusterName) }),
      ...(opts.type === undefined ? {} : { types: parseEventTypes(opts.type) ?? [] }),
    };
    const coordinatorKey = await d.coordinatorKey(cmd);
    const { nc, bucket } = await d.connect(cmd);
    try {
      const p = d.palette();
      const print = (e: CrosslinkEvent): void => d.stdout(opts.json ? `${JSON.stringify(e)}\n` : `${formatEvent(e, p)}\n`);
      const shown = await readEvents({
        nc,
        bucket,
        last,
        filter,
        follow: opts.follow === true,
        ...(d.signal ? { signal: d.signal } : {}),
        signers: kvEventSigners(nc, bucket, coordinatorKey),
        onEvent: print,
        onInvalid: (subject, reason) => d.stderr(`crosslink: ignored an invalid event on ${subject}: ${reason}\n`),
        // Never attributed: what it claims is quoted as a claim, on stderr, not among the events.
        onUnverified: (subject, claimed, reason) =>
          d.stderr(`crosslink: ignored an UNVERIFIED event on ${subject} (${reason}); it claims to be ${claimed.type} from ${claimed.reporter.role} ${JSON.stringify(claimed.reporter.name)}: ${JSON.stringify(claimed.message.slice(0, 120))}\n`),
      });
      if (shown === 0 && !opts.json && opts.follow !== true) d.stdout('No events.\n');
    } finally {
      await nc.close();
    }
    d.setExit(0);
  });
}
