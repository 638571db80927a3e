// crosslink-coordinator: `run` (default) serves registrations from NATS; `public-key` prints the key
// agents verify records with; `revoke`/`unrevoke`/`revocations` manage node revocations. Wires the
// real NATS connection, clock and logger into Coordinator.
import { addNatsConfigCommand } from './nats-config-command.ts';
import { Command, CommanderError, Option } from 'commander';
import type { NatsConnection } from '@nats-io/transport-node';
import { retryWithBackoff } from '../lib/backoff.ts';
import { systemClock } from '../lib/clock.ts';
import { errorMessage, ValidationError } from '../lib/errors.ts';
import { addFlags } from '../lib/flags.ts';
import { createLogger, type Logger } from '../lib/logger.ts';
import { DEFAULT_SIGNING_KEY_FILE, RUN_FLAGS, describeConfig, parseCoordinatorConfig, type RawRunOptions } from './config.ts';
import { Coordinator } from './coordinator.ts';
import { startHealthServer, type HealthProvider } from './health-server.ts';
import { CoordinatorMetrics } from './metrics.ts';
import { connectNats } from './nats.ts';
import { addPolicyCommands } from './policy-commands.ts';
import { addRevocationCommands } from './revocation-commands.ts';
import { addClusterCommands } from './cluster-commands.ts';
import { addReleaseCommand } from './release-commands.ts';
import { SecretFileError } from '../lib/secret-file.ts';
import { loadOrCreateSigningKey } from './signing-key.ts';

const EXIT_USAGE = 2;

function addRunOptions(cmd: Command): Command {
  return addFlags(cmd, RUN_FLAGS);
}

function runFlagsHelp(): string {
  const width = Math.max(...RUN_FLAGS.map((f) => f.flags.length));
  const lines = RUN_FLAGS.map((f) => {
    const extra = [`env ${f.env}`, ...(f.default === undefined ? [] : [`default ${f.default}`])].join(', ');
    return `  ${f.flags.padEnd(width)}  ${f.help} (${extra})`;
  });
  return `\nFlags of "run" (the default command; the word "run" may be left out):\n${lines.join('\n')}\n\nSIGTERM/SIGINT stop cleanly: the leader lease is released and NATS drained.\n`;
}

async function runCoordinator(raw: RawRunOptions, sourceOf: (key: keyof RawRunOptions) => 'cli' | 'env' | 'default' | undefined): Promise<void> {
  const config = parseCoordinatorConfig(raw, sourceOf);
  const logger = createLogger('crosslink-coordinator', config.logLevel);
  const key = await loadOrCreateSigningKey(config.signingKeyFile);
  if (key.created) logger.info({ file: config.signingKeyFile, publicKey: key.publicKey }, 'created a new signing key; give agents this public key');
  logger.info({ config: describeConfig(config), publicKey: key.publicKey }, 'starting');

  const stopping = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    logger.info({ signal: sig }, 'stopping');
    stopping.abort();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  // Probes and scrapes are answered from the start, also while NATS or the bucket is not reachable yet.
  const metrics = new CoordinatorMetrics();
  const running: { coordinator?: Coordinator | undefined } = {};
  const health = config.healthAddr === null ? null : await startHealthServer(config.healthAddr, healthProvider(metrics, () => running.coordinator), logger.child({ component: 'health' }));
  try {
    await serveUntilStopped(config, key, logger, stopping, metrics, running);
  } finally {
    await health?.close();
    metrics.stop();
  }
}

async function serveUntilStopped(
  config: ReturnType<typeof parseCoordinatorConfig>,
  key: Awaited<ReturnType<typeof loadOrCreateSigningKey>>,
  logger: Logger,
  stopping: AbortController,
  metrics: CoordinatorMetrics,
  running: { coordinator?: Coordinator | undefined },
): Promise<void> {
  const nc = await connectNats(config, logger, systemClock, stopping.signal);
  if (!nc) return;
  const closedEarly = nc.closed().then((err) => {
    if (!stopping.signal.aborted) {
      logger.error({ err: err ? errorMessage(err) : undefined }, 'NATS connection closed');
      stopping.abort();
    }
  });
  const coordinator = await startWithRetry(nc, config, key, logger, stopping.signal, metrics);
  running.coordinator = coordinator;
  if (!stopping.signal.aborted) {
    await new Promise<void>((resolve) => stopping.signal.addEventListener('abort', () => resolve(), { once: true }));
  }
  await coordinator?.stop();
  if (!nc.isClosed()) {
    // Drain flushes pending replies; bounded, because NATS may be unreachable while we stop.
    const drained = nc.drain().then(
      () => true,
      (err: unknown) => {
        logger.warn({ err: errorMessage(err) }, 'NATS drain failed');
        return false;
      },
    );
    const timeout = new AbortController();
    const inTime = await Promise.race([drained, systemClock.sleep(5000, timeout.signal).then(() => false)]);
    timeout.abort();
    if (!inTime && !nc.isClosed()) await nc.close();
  }
  await closedEarly;
}

/** The bucket may be unreachable at first (NATS or JetStream still starting): keep trying until stopped. */
async function startWithRetry(
  nc: NatsConnection,
  config: ReturnType<typeof parseCoordinatorConfig>,
  signingKey: Awaited<ReturnType<typeof loadOrCreateSigningKey>>,
  logger: Logger,
  signal: AbortSignal,
  metrics: CoordinatorMetrics,
): Promise<Coordinator | undefined> {
  return retryWithBackoff(
    () => Coordinator.start({ nc, clock: systemClock, logger, config, signingKey: { publicKey: signingKey.publicKey, secretKey: signingKey.secretKey }, metrics }),
    {
      policy: { initialMs: 500, maxMs: 10_000 },
      clock: systemClock,
      signal,
      onFailure: (err, _failures, retryInMs) => logger.warn({ err: errorMessage(err), retryInMs }, 'could not open the bucket; retrying'),
    },
  );
}

/** /readyz and /metrics of the health listener; `current` is the coordinator once the bucket is open. */
function healthProvider(metrics: CoordinatorMetrics, current: () => Coordinator | undefined): HealthProvider {
  return {
    readiness: () => {
      const c = current();
      if (!c) return { ready: false, leader: false, reason: 'not started: waiting for NATS and the KV bucket' };
      const leader = c.isLeader();
      return { ready: true, leader, reason: leader ? 'leader: serving registrations' : 'standby: following the leader lease' };
    },
    metrics: async () => {
      const c = current();
      metrics.observe(c ? await c.metricsSnapshot() : { leader: false, natsConnected: false, nodes: null, kvRevision: null });
      return metrics.render();
    },
  };
}

async function printPublicKey(file: string): Promise<void> {
  const key = await loadOrCreateSigningKey(file);
  if (key.created) process.stderr.write(`created a new signing key in ${file} (mode 0600)\n`);
  process.stdout.write(`${key.publicKey}\n`);
}

export function buildProgram(): Command {
  const program = new Command('crosslink-coordinator')
    .description('Crosslink coordinator: allocates overlay IPs and publishes signed node and cluster records in a NATS JetStream KV bucket.')
    .showHelpAfterError('(run with --help for usage)')
    // Usage errors (unknown command, flag or argument) throw instead of exiting 1; main exits 2.
    // Set before the commands are added, so every subcommand inherits it.
    .exitOverride();
  const run = addRunOptions(program.command('run', { isDefault: true }).description('serve registrations, heartbeats and expiry (default)')).allowExcessArguments(false);
  run.action(async (opts: RawRunOptions, cmd: Command) => {
    await runCoordinator(opts, (k): 'cli' | 'env' | 'default' | undefined => {
      const src: string | undefined = cmd.getOptionValueSource(k);
      return src === 'cli' || src === 'env' || src === 'default' ? src : undefined;
    });
  });
  program
    .command('public-key')
    .description('print the base64 Ed25519 public key agents use to verify records (creates the key if missing)')
    .addOption(new Option('--signing-key-file <file>', 'coordinator signing key file').env('CROSSLINK_SIGNING_KEY_FILE').default(DEFAULT_SIGNING_KEY_FILE))
    .action(async (opts: { signingKeyFile: string }) => {
      await printPublicKey(opts.signingKeyFile);
    });
  addRevocationCommands(program);
  addReleaseCommand(program);
  addPolicyCommands(program);
  addNatsConfigCommand(program);
  addClusterCommands(program);
  program.addHelpText('after', runFlagsHelp);
  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
    process.exitCode ??= 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version requests exit 0; commander has printed the usage error already.
      process.exitCode = err.exitCode === 0 ? 0 : EXIT_USAGE;
      return;
    }
    const usage = err instanceof ValidationError;
    process.stderr.write(`crosslink-coordinator: ${errorMessage(err)}\n`);
    if (err instanceof SecretFileError || usage) process.exitCode = EXIT_USAGE;
    else process.exitCode = 1;
  }
}

await main();
