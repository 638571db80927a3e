// `crosslink`: the operator's tool on a bad day. Talks to the local agent over its status socket
// (status, peers, showconf, diagnose, rotate-key) or reads the coordinator's KV directly (nodes, showconf --nats-url).
// Exit codes: 0 healthy, 1 unhealthy (a peer down, a check failed, a record refused), 2 usage or
// the agent/NATS could not be reached.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { computeDesiredState } from '../agent/plan/desired-state.ts';
import { readCoordinatorKeyFile } from '../protocol/coordinator-key-file.ts';
import type { DataplaneConfig, DesiredState, MeshView } from '../agent/plan/model.ts';
import { fromViewDocument } from '../agent/status/view.ts';
import { DiagnosticsDocument, RotateKeyResponse, ViewDocument } from '../protocol/status-api.ts';
import { durationFlag } from '../lib/duration.ts';
import { CrosslinkError, ValidationError, errorMessage } from '../lib/errors.ts';
import { addFlags, check, flagOption, resolveFlags, single, type Env, type FlagSpec, type RawFlag } from '../lib/flags.ts';
import { NatsServers } from '../lib/nats-url.ts';
import { NATS_AUTH_FLAGS, connectNats, natsSettingsFromFlags, type NatsFlagKey, type NatsSettings } from '../lib/nats-connect.ts';
import { silentLogger } from '../lib/logger.ts';
import { Key32, NodeName } from '../protocol/messages.ts';
import { AgentStatus } from '../protocol/status.ts';
import { withFresh } from '../protocol/fresh-read.ts';
import { DEFAULT_BUCKET } from '../protocol/subjects.ts';
import { AgentResponseError, getFromAgent, postToAgent } from './client.ts';
import { diagnose, formatChecks } from './diagnose.ts';
import { formatNodeTable, formatPeerTable, formatStatus, peerHealthy, statusExitCode, type NodeRow } from './format.ts';
import { readMeshFromKv } from './kv-read.ts';
import { registerManifestsCommand } from './manifests.ts';
import { policyChecks, registerPolicyCommand } from './policy.ts';
import { PolicyDocumentResponse } from '../protocol/policy/status.ts';
import { agentProber, pathMtuProbes } from './diagnose-probes.ts';
import { registerPingCommand } from './ping.ts';
import { AGENT_VERSION } from '../agent/agent.ts';
import { renderWgConf } from './showconf.ts';
import { ASSUMED_WITHOUT_SETTINGS, showconfSettings } from './showconf-settings.ts';
import { registerServicesCommands } from './services.ts';
import { byName, compareText } from '../lib/compare.ts';
import { colourEnabled, palette, type Palette } from '../lib/colour.ts';
import { colourText } from './colour-text.ts';
import { registerEventsCommand } from './events-command.ts';
import { watch } from './watch.ts';
import { formatMeshDiagnosis, loadMesh, registerMeshCommands, type MeshCommandDeps } from './mesh-command.ts';
import type { NatsConnection } from '@nats-io/transport-node';

export const DEFAULT_SOCKET = '/var/lib/crosslink/agent.sock';

export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly now: () => number;
  /** stdout is a terminal (colour is on unless NO_COLOR or --no-color). */
  readonly isTTY?: boolean;
  /** Ends long-running commands (`events --follow`, `status --watch`). */
  readonly signal?: AbortSignal;
}

const processIo: CliIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
  now: () => Date.now(),
  isTTY: process.stdout.isTTY,
};

const FRESH_HELP = 'read WireGuard, nftables and the interface now, not the reading the agent shares among requests for up to 1 s (e.g. right after a fix)';
const SOCKET_FLAG: FlagSpec<'socket'> = { key: 'socket', flags: '--socket <path>', env: 'CROSSLINK_STATUS_SOCKET', default: DEFAULT_SOCKET, help: 'the agent\'s status socket' };

type KvFlagKey = Exclude<keyof KvOpts, 'natsFlags'> | NatsFlagKey;

const KV_FLAGS: readonly FlagSpec<KvFlagKey>[] = [
  { key: 'natsUrl', flags: '--nats-url <urls>', env: 'CROSSLINK_NATS_URL', help: 'NATS servers, comma-separated' },
  { key: 'natsCreds', flags: '--nats-creds <file>', env: 'CROSSLINK_NATS_CREDS', help: 'NATS credentials file' },
  ...NATS_AUTH_FLAGS,
  { key: 'coordinatorKey', flags: '--coordinator-key <base64>', env: 'CROSSLINK_COORDINATOR_KEY', help: 'coordinator public key: records must be signed by it (comma-separated during a signing-key rotation: the new key and the previous ones)' },
  { key: 'coordinatorKeyFile', flags: '--coordinator-key-file <file>', env: 'CROSSLINK_COORDINATOR_KEY_FILE', help: 'file holding the coordinator public key' },
  { key: 'bucket', flags: '--bucket <name>', env: 'CROSSLINK_BUCKET', default: DEFAULT_BUCKET, help: 'KV bucket' },
];

/** The KV flags after resolution (command line, else io.env, else default). */
interface KvOpts {
  natsUrl: string | undefined;
  natsCreds: string | undefined;
  coordinatorKey: string | undefined;
  coordinatorKeyFile: string | undefined;
  bucket: string;
  /** The resolved NATS flags (URL, creds, auth, TLS) for lib/nats-connect.ts. */
  natsFlags: Readonly<Record<string, RawFlag>>;
}

const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

function socketOf(cmd: Command, env: Env): string {
  return single(resolveFlags(cmd, [SOCKET_FLAG], env).socket) ?? DEFAULT_SOCKET;
}

function kvOf(cmd: Command, env: Env): KvOpts {
  const f = resolveFlags(cmd, KV_FLAGS, env);
  return {
    natsUrl: single(f.natsUrl),
    natsCreds: single(f.natsCreds),
    coordinatorKey: single(f.coordinatorKey),
    coordinatorKeyFile: single(f.coordinatorKeyFile),
    bucket: single(f.bucket) ?? DEFAULT_BUCKET,
    natsFlags: f,
  };
}

/** The NATS settings of a KV command (`--nats-url` required). */
function natsOf(o: KvOpts): NatsSettings {
  if (o.natsUrl === undefined) throw new ValidationError('--nats-url', undefined, 'required: comma-separated NATS URLs, e.g. nats://10.0.0.1:4222');
  return natsSettingsFromFlags(o.natsFlags, check(o.natsFlags['natsUrl']?.label ?? '--nats-url', o.natsUrl, NatsServers));
}

/** A command either gets its answer or says why: no reconnects. */
const RECONNECT_NONE = Object.freeze({ maxReconnectAttempts: 0, reconnectTimeWaitMs: 500 });

async function readKv(o: KvOpts): Promise<Awaited<ReturnType<typeof readMeshFromKv>>> {
  if (o.natsUrl === undefined) throw new ValidationError('--nats-url', undefined, 'required: comma-separated NATS URLs, e.g. nats://10.0.0.1:4222');
  const nats = natsSettingsFromFlags(o.natsFlags, check(o.natsFlags['natsUrl']?.label ?? '--nats-url', o.natsUrl, NatsServers));
  return readMeshFromKv({ nats, coordinatorKey: await coordinatorKeyOf(o), bucket: o.bucket, logger: silentLogger() });
}

/** --coordinator-key (one key, or several comma-separated during a rotation), else --coordinator-key-file; required. */
async function coordinatorKeyOf(o: KvOpts): Promise<readonly string[]> {
  if (o.coordinatorKey !== undefined) return Object.freeze(o.coordinatorKey.split(',').map((k) => check('--coordinator-key', k.trim(), Key32)));
  if (o.coordinatorKeyFile !== undefined) return [await readCoordinatorKeyFile(o.coordinatorKeyFile)];
  throw new ValidationError('--coordinator-key', undefined, 'required (or --coordinator-key-file): records and events are only trusted when signed (by the coordinator, or by a node whose record it signed)');
}

function parseSeconds(flag: string, text: string): number {
  return durationFlag(flag, text, { minMs: 0, maxMs: 60_000, zero: '0 disables' });
}

/** Builds the program; `setExit` receives each command's exit code. */
export function buildProgram(io: CliIo, setExit: (code: number) => void): Command {
  const program = new Command('crosslink')
    .description('Inspect and debug the Crosslink overlay on this node.')
    .version(AGENT_VERSION, '--version', 'print the crosslink version')
    .showHelpAfterError('(run crosslink --help for usage)')
    // One prefix for every error: commander's own usage errors say "error: …" unless told otherwise.
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr, outputError: (text, write) => write(text.replace(/^error: /, 'crosslink: ')) })
    .option('--no-color', 'no colour (also NO_COLOR=1; output that is not a terminal has none)')
    .exitOverride();
  const connectCli = async (c: Command): Promise<{ nc: NatsConnection; bucket: string }> => {
    const o = kvOf(c, io.env);
    return { nc: await connectNats(natsOf(o), 'crosslink-cli', RECONNECT_NONE), bucket: o.bucket };
  };
  const meshDeps: MeshCommandDeps = {
    stdout: io.stdout,
    setExit,
    now: io.now,
    palette: () => colours(),
    addKvFlags: (c) => addFlags(c, KV_FLAGS),
    readKv: (c) => readKv(kvOf(c, io.env)),
    connect: connectCli,
  };
  const colours = (): Palette => palette(colourEnabled({ isTTY: io.isTTY === true, env: io.env, noColorFlag: program.opts<{ color?: boolean }>().color === false }));

  program
    .command('status')
    .description('this node and its peers; exit 0 when ready and every peer has a recent handshake, else 1')
    .addOption(flagOption(SOCKET_FLAG))
    .option('--json', 'print the agent\'s status document')
    .option('--watch [interval]', 'refresh every interval (default 2s) until interrupted; exit code of the last view')
    .option('--fresh', FRESH_HELP)
    .action(async (opts: { json?: boolean; watch?: string | true; fresh?: boolean }, cmd: Command) => {
      const o = { ...opts, socket: socketOf(cmd, io.env) };
      const frame = async (): Promise<{ text: string; code: number }> => {
        const status = await getFromAgent(o.socket, withFresh('/status', o.fresh), AgentStatus);
        return { text: o.json ? json(status) : `${colourText(formatStatus(status, io.now()), colours())}\n`, code: statusExitCode(status, io.now()) };
      };
      if (o.watch === undefined) {
        const f = await frame();
        io.stdout(f.text);
        setExit(f.code);
        return;
      }
      const intervalMs = o.watch === true ? 2000 : parseSeconds('--watch', o.watch);
      if (intervalMs < 100) throw new ValidationError('--watch', o.watch, 'must be a duration of at least 0.1s, e.g. 2s');
      setExit(await watch({ intervalMs, signal: io.signal, isTTY: io.isTTY === true, now: io.now, stdout: io.stdout }, frame));
    });

  program
    .command('peers')
    .description('the WireGuard peer table; exit 0 when every peer has a recent handshake, else 1')
    .addOption(flagOption(SOCKET_FLAG))
    .option('--json', 'print the peers as JSON')
    .option('--fresh', FRESH_HELP)
    .action(async (opts: { json?: boolean; fresh?: boolean }, cmd: Command) => {
      const o = { ...opts, socket: socketOf(cmd, io.env) };
      const status = await getFromAgent(o.socket, withFresh('/status', o.fresh), AgentStatus);
      io.stdout(o.json ? json(status.peers) : `${colourText(formatPeerTable(status.peers, io.now()), colours())}\n`);
      setExit(status.peers.every((p) => peerHealthy(p, io.now())) ? 0 : 1);
    });

  addFlags(
    program
      .command('showconf')
      .description('the desired WireGuard config, computed exactly as the agent does: from the agent (--socket) or straight from the KV (--nats-url … --node NAME)')
      .addOption(flagOption(SOCKET_FLAG))
      .addOption(new Option('--format <format>', 'wg (wg-quick style INI) or json (the full desired state)').choices(['wg', 'json']).default('wg'))
      .option('--json', 'same as --format json')
      .option('--node <name>', 'with --nats-url: the node whose config to compute')
      // With --nats-url the node's record says what its agent applies; these override it, or stand in for an older agent's record without settings.
      .option('--interface <name>', `with --nats-url: interface name (default: from the node's record, else ${ASSUMED_WITHOUT_SETTINGS.interface})`)
      .option('--mtu <bytes>', `with --nats-url: interface MTU (default: from the node's record, else ${ASSUMED_WITHOUT_SETTINGS.mtu})`)
      .option('--nat-keepalive <seconds>', `with --nats-url: keepalive used when the node is behind NAT (default: from the node's record, else ${ASSUMED_WITHOUT_SETTINGS.natKeepalive})`)
      .option('--relay-port-range <a-b>', `with --nats-url: relay ports (default: from the node's record, else ${ASSUMED_WITHOUT_SETTINGS.relayPortRange})`),
    KV_FLAGS,
  ).action(async (opts: { json?: boolean; format: string; node?: string; interface?: string; mtu?: string; natKeepalive?: string; relayPortRange?: string }, cmd: Command) => {
    const o = { ...opts, ...kvOf(cmd, io.env), socket: socketOf(cmd, io.env) };
    let view: MeshView;
    let config: DataplaneConfig;
    let source: string;
    let notes: readonly string[] = [];
    if (o.natsUrl !== undefined) {
      if (o.node === undefined) throw new ValidationError('--node', undefined, 'required with --nats-url: the node whose config to compute');
      const name = check('--node', o.node, NodeName);
      const kv = await readKv(o);
      const self = kv.nodes.get(name);
      if (!self) {
        const refused = kv.rejected.get(`nodes.${name}`);
        throw new CrosslinkError(refused ? `the record of ${name} is refused: ${refused.reason}` : `no verified record for node ${name} in bucket ${o.bucket} (try \`crosslink nodes\`)`);
      }
      view = { self, nodes: kv.nodes, clusters: kv.clusters };
      ({ config, notes } = showconfSettings(self, o));
      source = `the KV bucket ${o.bucket}${self.settings ? ' with the settings the agent published in its record' : ''}`;
    } else {
      ({ view, dataplaneConfig: config } = fromViewDocument(await getFromAgent(o.socket, '/view', ViewDocument)));
      source = `the agent at ${o.socket}`;
    }
    const desired: DesiredState = computeDesiredState(view, config);
    for (const n of notes) io.stderr(`crosslink: showconf: ${n}\n`);
    io.stdout(o.json || o.format === 'json' ? json(desired) : renderWgConf(desired, { node: view.self.name, cluster: view.self.cluster, source, notes }));
    setExit(0);
  });

  addFlags(
    program
      .command('nodes')
      .description('registered nodes from the KV, each signature checked; exit 1 if any record is refused')
      .option('--json', 'print rows as JSON'),
    KV_FLAGS,
  ).action(async (o: { json?: boolean }, cmd: Command) => {
    const kv = await readKv(kvOf(cmd, io.env));
    const rows: NodeRow[] = [...kv.nodes.values()].map((n) => ({
      key: `nodes.${n.name}`,
      name: n.name,
      cluster: n.cluster,
      location: n.location,
      overlayIp: n.overlayIp,
      endpoints: n.endpoints,
      podCidrs: n.podCidrs,
      gateway: kv.clusters.get(n.cluster)?.gateway === n.name ? 'active' : n.gatewayEligible ? 'eligible' : '',
      problem: null,
    }));
    for (const r of kv.rejected.values()) {
      if (!r.key.startsWith('nodes.')) continue;
      // A refused update of a node we hold verified: show both.
      rows.push({ key: r.key, name: r.key.slice('nodes.'.length), cluster: '', location: '', overlayIp: '', endpoints: [], podCidrs: [], gateway: '', problem: r.reason });
    }
    const clusterProblems = [...kv.rejected.values()].filter((r) => r.key.startsWith('clusters.'));
    const refusedLast = (r: NodeRow): number => (r.problem === null ? 0 : 1);
    rows.sort((a, b) => refusedLast(a) - refusedLast(b) || compareText(a.cluster, b.cluster) || byName(a, b));
    if (o.json) io.stdout(json({ nodes: rows, refusedClusters: clusterProblems }));
    else {
      io.stdout(`${formatNodeTable(rows)}\n`);
      for (const c of clusterProblems) io.stdout(`  ✗ ${c.key}: ${c.reason}\n`);
    }
    setExit(kv.rejected.size > 0 ? 1 : 0);
  });

  addFlags(program
    .command('diagnose')
    .description('walk the path to each remote node (or --peer) and say where it breaks; exit 1 if a check fails; --all: from every node at once (health summaries, NATS flags)')
    .addOption(flagOption(SOCKET_FLAG))
    .option('--all', 'look from every node at once: which node reports which broken hop (needs --nats-url and the coordinator key, not the agent)')
    .option('--peer <name>', 'only this remote node')
    .option('--interval <duration>', 'wait between the two samples used to see traffic arrive (0: one sample)', '3s')
    .option('--json', 'print the checks as JSON'), KV_FLAGS)
    .action(async (opts: { json?: boolean; all?: boolean; peer?: string; interval: string }, cmd: Command) => {
      if (opts.all) {
        const diag = formatMeshDiagnosis(await loadMesh(meshDeps, cmd), colours());
        io.stdout(opts.json ? json(diag.json) : `${diag.text}\n`);
        setExit(diag.ok ? 0 : 1);
        return;
      }
      const o = { ...opts, socket: socketOf(cmd, io.env) };
      const intervalMs = parseSeconds('--interval', o.interval);
      // Diagnose is asked for after something went wrong or was fixed: the kernel as it is now.
      const status = await getFromAgent(o.socket, withFresh('/status', true), AgentStatus);
      let view: MeshView | null = null;
      let desired: DesiredState | null = null;
      try {
        const doc = fromViewDocument(await getFromAgent(o.socket, '/view', ViewDocument));
        view = doc.view;
        desired = computeDesiredState(doc.view, doc.dataplaneConfig);
      } catch (err) {
        // 503: the agent has no view yet (not registered); diagnose still checks what it can.
        if (!(err instanceof AgentResponseError && err.status === 503)) throw err;
      }
      const before = await getFromAgent(o.socket, '/diagnostics', DiagnosticsDocument);
      let after: DiagnosticsDocument | null = null;
      if (intervalMs > 0) {
        await new Promise((r) => setTimeout(r, intervalMs));
        after = await getFromAgent(o.socket, '/diagnostics', DiagnosticsDocument);
      }
      const pmtu = await pathMtuProbes(agentProber(o.socket), status, o.peer);
      const diagnosed = diagnose({ status, view, desired, before, after, intervalMs, pmtu, now: io.now(), ...(o.peer === undefined ? {} : { target: o.peer }) });
      // The access policy: is it enforced, and would it deny a ping (so a failing ping is not read as a broken tunnel).
      const policyDoc = await getFromAgent(o.socket, '/policy', PolicyDocumentResponse).catch(() => null);
      const remotes = [...(view?.nodes.values() ?? [])].filter((n) => n.cluster !== status.node.cluster && (o.peer === undefined || n.name === o.peer));
      const extra = policyDoc === null ? [] : policyChecks(policyDoc, status.node, remotes.map((n) => ({ node: n.name, podCidrs: n.podCidrs })));
      const result = { checks: [...diagnosed.checks, ...extra], ok: diagnosed.ok && extra.every((c) => c.ok !== false) };
      io.stdout(o.json ? json(result) : `${colourText(formatChecks([{ ok: true, label: 'agent reachable', detail: o.socket }, ...result.checks]), colours())}\n`);
      setExit(result.ok ? 0 : 1);
    });

  program
    .command('rotate-key')
    .description('give this node a new WireGuard key pair and re-register it; exit 0 rotated, 1 refused (the old key is kept), 2 agent unreachable')
    .addOption(flagOption(SOCKET_FLAG))
    .option('--json', 'print the agent\'s answer ({ node, oldPublicKey, newPublicKey, generation, interfaceUpdated })')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const o = { ...opts, socket: socketOf(cmd, io.env) };
      let r: RotateKeyResponse;
      try {
        r = await postToAgent(o.socket, '/rotate-key', RotateKeyResponse);
      } catch (err) {
        // The agent answered but did not rotate: its message says why and what it kept.
        if (!(err instanceof AgentResponseError)) throw err;
        io.stderr(`crosslink: key rotation failed: ${err.message}\n`);
        setExit(1);
        return;
      }
      if (o.json) io.stdout(json(r));
      else {
        io.stdout(`${r.node}: WireGuard key rotated (record generation ${r.generation})\n  old public key: ${r.oldPublicKey}\n  new public key: ${r.newPublicKey}\n`);
        if (!r.interfaceUpdated) io.stdout('  warning: the interface does not have the new key yet (the agent retries at its next resync); see `crosslink status`\n');
      }
      setExit(0);
    });

  registerPingCommand(program, flagOption(SOCKET_FLAG), (cmd) => socketOf(cmd, io.env), io, setExit);
  registerMeshCommands(program, meshDeps);
  registerEventsCommand(program, {
    stdout: io.stdout,
    stderr: io.stderr,
    setExit,
    palette: colours,
    addNatsFlags: (c) => addFlags(c, KV_FLAGS),
    connect: connectCli,
    coordinatorKey: (c) => coordinatorKeyOf(kvOf(c, io.env)),
    ...(io.signal ? { signal: io.signal } : {}),
  });
  registerManifestsCommand(program);
  registerServicesCommands(program, io, setExit, () => flagOption(SOCKET_FLAG));
  registerPolicyCommand(program, () => flagOption(SOCKET_FLAG), io.stdout, setExit);
  return program;
}

/** Runs the CLI with `argv` (without node and script); returns the exit code. */
export async function runCli(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (c) => {
    code = c;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    io.stderr(`crosslink: ${errorMessage(err)}\n`);
    return 2;
  }
}

const invokedDirectly = ((): boolean => {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
})();

if (invokedDirectly) {
  // SIGINT/SIGTERM end `--follow`/`--watch` cleanly (exit code of the command, not a signal death).
  const stop = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => stop.abort());
  runCli(process.argv.slice(2), { ...processIo, signal: stop.signal }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`crosslink: ${errorMessage(err)}\n`);
      process.exitCode = 2;
    },
  );
}
