// `crosslink-coordinator nats-config`: prints `max_payload` (protocol/nats-payload.ts) and the
// nats-server `accounts` block (STORE, COORDINATOR, AGENTS; coordinator/nats-permissions.ts) with one
// user per role (agent, coordinator, read-only reader). Passwords are nats-server variable references
// (set them in the server's environment), so the output holds no secret.
import { Option, type Command } from 'commander';
import { DEFAULT_BUCKET, DEFAULT_SUBJECT_PREFIX } from '../protocol/subjects.ts';
import { ValidationError } from '../lib/errors.ts';
import { renderAccounts } from './nats-permissions.ts';

interface NatsConfigOptions {
  bucket: string;
  subjectPrefix: string;
  agentUser: string;
  coordinatorUser: string;
  readerUser: string;
  maxConsumers?: string;
}

/** `--max-consumers`: a whole number from 1, or undefined. */
export function parseMaxConsumers(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[1-9][0-9]{0,8}$/.test(v.trim())) throw new ValidationError('--max-consumers', v, 'must be a whole number from 1 to 999999999 (about 7 per agent plus a few per coordinator and CLI watch)');
  return Number(v.trim());
}

export function addNatsConfigCommand(program: Command): void {
  program
    .command('nats-config')
    .description('print the nats-server max_payload and accounts block: accounts, users and permissions for agents, the coordinator and read-only CLIs')
    .addOption(new Option('--bucket <name>', 'KV bucket').env('CROSSLINK_BUCKET').default(DEFAULT_BUCKET))
    .addOption(new Option('--subject-prefix <prefix>', 'request subject prefix').env('CROSSLINK_SUBJECT_PREFIX').default(DEFAULT_SUBJECT_PREFIX))
    .option('--agent-user <name>', 'user of the agents (password: $CROSSLINK_AGENT_PASSWORD in the server environment)', 'crosslink-agent')
    .option('--coordinator-user <name>', 'user of the coordinator (password: $CROSSLINK_COORDINATOR_PASSWORD)', 'crosslink-coordinator')
    .option('--reader-user <name>', 'read-only user for `crosslink nodes` / `showconf --nats-url` (password: $CROSSLINK_READER_PASSWORD)', 'crosslink-reader')
    .option('--max-consumers <n>', 'cap the STORE account\'s JetStream consumers (default: unlimited; size: about 7 per agent, docs/security.md)')
    .action((o: NatsConfigOptions) => {
      const maxConsumers = parseMaxConsumers(o.maxConsumers);
      process.stdout.write(
        renderAccounts(
          [
            { user: o.agentUser, role: 'agent', password: '$CROSSLINK_AGENT_PASSWORD' },
            { user: o.coordinatorUser, role: 'coordinator', password: '$CROSSLINK_COORDINATOR_PASSWORD' },
            { user: o.readerUser, role: 'reader', password: '$CROSSLINK_READER_PASSWORD' },
          ],
          { bucket: o.bucket, subjectPrefix: o.subjectPrefix },
          { maxConsumers: maxConsumers ?? null },
        ),
      );
    });
}
