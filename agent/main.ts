// `crosslink-agent`: parse flags once, build the real dependencies, run the Agent until SIGTERM/SIGINT.
import { hostname } from 'node:os';
import { systemClock } from '../lib/clock.ts';
import { isEntryPoint } from '../lib/entry-point.ts';
import { ValidationError, errorMessage } from '../lib/errors.ts';
import { createLogger, type Logger } from '../lib/logger.ts';
import { ProcessRunner, type Runner } from '../lib/runner.ts';
import { heapTrimFromGlobal } from '../lib/heap-trim.ts';
import { connectNats, resolveNatsAddresses } from '../lib/nats-connect.ts';
import { Agent } from './agent.ts';
import { agentCommand, parseAgentConfig, type AgentConfig } from './config.ts';
import { createDataplane } from './dataplane/dataplane.ts';
import { readJoinCredentialFile } from './control/keys.ts';
import { readCoordinatorKeyFile } from '../protocol/coordinator-key-file.ts';
import type { NodeSource } from './plan/model.ts';
import { defaultMtu } from './dataplane/mtu.ts';
import { RelayForwarder } from './dataplane/relay-forwarder.ts';
import { createStaticNodeSource } from './control/static-source.ts';
import type { ServicesSyncFactory } from './services/sync.ts';
import type { EventPublisher } from '../protocol/events.ts';

async function createNodeSource(config: AgentConfig, runner: Runner, logger: Logger): Promise<NodeSource> {
  if (config.mode === 'standalone') return createStaticNodeSource({ config, runner, logger });
  // Imported lazily: the Kubernetes client is large and standalone agents never need it.
  const { kubernetesNodeSourceFromConfig } = await import('./kubernetes/agent-mode.ts');
  return kubernetesNodeSourceFromConfig(config, { logger, clock: systemClock });
}

/** Kubernetes mode: ServiceExport/EndpointSlice → exports, ServiceImports (agent/kubernetes/mcs). */
async function createServicesSync(config: AgentConfig, logger: Logger): Promise<ServicesSyncFactory | undefined> {
  if (config.mode === 'standalone') return undefined;
  const { mcsSyncFromConfig } = await import('./kubernetes/agent-mode.ts');
  return mcsSyncFromConfig(config, { logger, clock: systemClock });
}

/** Kubernetes mode: the agent's events also as Events on its Node (agent/kubernetes/node-events.ts). */
async function createNodeEvents(config: AgentConfig, logger: Logger): Promise<EventPublisher | undefined> {
  if (config.mode === 'standalone') return undefined;
  const { kubernetesNodeEventsFromConfig } = await import('./kubernetes/agent-mode.ts');
  return kubernetesNodeEventsFromConfig(config, { logger, clock: systemClock });
}

/** Test-only knobs: never reachable from flags or the environment (test/helpers/unguarded-crosslink-agent.ts). */
export interface AgentMainTesting {
  /** No route guard: the negative control of test/adversary-dataplane.test.ts. */
  readonly unsafeUnguardedRoutes?: boolean;
}

async function main(argv: readonly string[], testing: AgentMainTesting): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    agentCommand().outputHelp();
    return 0;
  }
  let config: AgentConfig;
  try {
    config = parseAgentConfig(argv, { env: process.env, hostname: hostname() });
  } catch (err) {
    if (err instanceof ValidationError) {
      process.stderr.write(`crosslink-agent: ${err.message}\n(see crosslink-agent --help)\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger('crosslink-agent', config.logLevel);
  // The V8 heap kept near its live size from the start (bin/run-compiled gives the agent --expose-gc; lib/heap-trim.ts).
  const heapTrim = heapTrimFromGlobal({ clock: systemClock, logger: logger.child({ component: 'heap-trim' }) });
  heapTrim?.start();
  try {
    return await runAgent(config, logger, testing);
  } finally {
    await heapTrim?.stop();
  }
}

async function runAgent(config: AgentConfig, logger: Logger, testing: AgentMainTesting): Promise<number> {
  // Don't die on a stray rejection: every loop retries on its own; log loudly so it gets fixed.
  process.on('unhandledRejection', (reason) => logger.error({ err: errorMessage(reason) }, 'unhandled rejection'));

  // Signals are handled from the start: a SIGTERM while starting must still stop wireguard-go cleanly.
  let agent: Agent | undefined;
  let stopRequested = false;
  // Aborts a start that is still waiting (e.g. for the Node object): SIGTERM must not be ignored then.
  const startAbort = new AbortController();
  let signals = 0;
  let resolveDone: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting without finishing cleanup');
      process.exit(1);
    }
    logger.info({ signal }, 'signal received');
    stopRequested = true;
    startAbort.abort();
    if (agent) {
      agent.stop().then(resolveDone, (err: unknown) => {
        logger.error({ err: errorMessage(err) }, 'shutdown failed');
        resolveDone();
      });
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  const runner = new ProcessRunner();
  try {
    const coordinatorKey = config.coordinatorKeys.length > 0 ? config.coordinatorKeys : await readCoordinatorKeyFile(config.coordinatorKeyFile ?? '');
    const joinCredential = config.joinCredentialFile === null ? null : await readJoinCredentialFile(config.joinCredentialFile, config.cluster);
    if (joinCredential === null) logger.error({}, 'no --join-credential-file: the coordinator refuses registrations without the cluster\'s join credential');
    const mtu = config.mtu === 'auto' ? await defaultMtu(runner, logger) : config.mtu;
    logger.info(
      { node: config.nodeName, cluster: config.cluster, mode: config.mode, interface: config.interfaceName, mtu, cleanup: config.cleanup },
      'starting',
    );
    const nodeSource = await createNodeSource(config, runner, logger.child({ component: 'node-source' }));
    const servicesSync = await createServicesSync(config, logger.child({ component: 'mcs' }));
    const events = await createNodeEvents(config, logger.child({ component: 'node-events' }));
    agent = await Agent.start({
      config,
      ...(servicesSync ? { servicesSync } : {}),
      ...(events ? { events } : {}),
      logger,
      clock: systemClock,
      runner,
      coordinatorKey,
      joinCredential,
      mtu,
      nodeSource,
      signal: startAbort.signal,
      ...(testing.unsafeUnguardedRoutes === true ? { unsafeUnguardedRoutes: true } : {}),
      connectNats: () => connectNats(config.nats, `crosslink-agent/${config.nodeName}`),
      // The route guard never lets a peer CIDR cover these (names resolved once, at start).
      natsAddresses: await resolveNatsAddresses(config.nats),
      // The relay's bind address follows the node's published endpoints (the data plane reads them
      // from our verified record), so it is right in Kubernetes mode too, where they come from the Node.
      createDataplane: ({ config: dataplaneConfig, wireguardMode }) =>
        createDataplane({
          runner,
          logger: logger.child({ component: 'dataplane' }),
          config: dataplaneConfig,
          wireguardMode,
          clock: systemClock,
          // Drift (a route deleted, the MTU changed) is repaired on the netlink event, not at the next resync.
          monitorPrefix: [],
          relay: new RelayForwarder({ logger: logger.child({ component: 'relay' }), clock: systemClock }),
        }),
    });
  } catch (err) {
    if (stopRequested) {
      logger.info({ err: errorMessage(err) }, 'stopped before the start completed');
      return 0;
    }
    logger.fatal({ err: errorMessage(err) }, 'cannot start');
    return 1;
  }
  if (stopRequested) {
    await agent.stop();
    return 0;
  }
  await done;
  return 0;
}

/** Runs the agent as the process: exit code, and exit even if a dependency leaves a handle open. */
export function runAgentProcess(argv: readonly string[], testing: AgentMainTesting = {}): void {
  main(argv, testing).then(
    (code) => {
      process.exitCode = code;
      // NATS sockets or timers left by a dependency must not keep a stopped agent alive.
      setTimeout(() => process.exit(code), 1000).unref();
    },
    (err: unknown) => {
      process.stderr.write(`crosslink-agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}

if (isEntryPoint(import.meta.url)) runAgentProcess(process.argv.slice(2));
