// `crosslink-coordinator revoke | unrevoke | revocations`: the operator's side of node revocation.
// Wires flags, the signing key and one NATS connection into revocation-admin.ts and prints what
// was done. Nothing here needs a running coordinator; the leader picks changes up from the bucket.
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { JetStreamUnavailableError, retryJetStream, type JetStreamRetryOptions } from '../lib/jetstream-retry.ts';
import { catchUpWatchEntry, readKvRange } from '../lib/kv-catch-up.ts';
import { NATS_AUTH_FLAGS, RECONNECT_ONE_SHOT, connectNats, type NatsFlagKey } from '../lib/nats-connect.ts';
import { Option, type Command } from 'commander';
import { renderTable } from '../lib/text-format.ts';
import { systemClock } from '../lib/clock.ts';
import { errorMessage } from '../lib/errors.ts';
import { createLogger } from '../lib/logger.ts';
import type { Revocation } from '../protocol/messages.ts';
import type { SigningKeyPair } from '../protocol/signing.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { flagOption } from '../lib/flags.ts';
import { RUN_FLAGS, parseCoordinatorConfig, type CoordinatorConfig, type RawRunOptions } from './config.ts';
import { RevocationAdminError, listRevocations, parseNodeName, parseReason, revokeNode, unrevokeNode, type RevokeResult } from './revocation-admin.ts';
import { loadSigningKey } from './signing-key.ts';
import { StateStore } from './store.ts';
import { COORDINATOR_INBOX_PREFIX } from './nats-permissions.ts';

/** The run flags these commands share (same names, env variables and defaults). */
const SHARED_FLAGS: readonly (keyof RawRunOptions)[] = ['natsUrl', 'natsCreds', ...NATS_AUTH_FLAGS.map((f) => f.key), 'signingKeyFile', 'previousPublicKey', 'bucket', 'subjectPrefix'];

export type SharedOptions = Pick<RawRunOptions, 'natsUrl' | 'natsCreds' | NatsFlagKey | 'signingKeyFile' | 'previousPublicKey' | 'bucket' | 'subjectPrefix'>;

export function addSharedOptions(cmd: Command): Command {
  for (const key of SHARED_FLAGS) {
    const f = RUN_FLAGS.find((x) => x.key === key);
    if (!f) continue;
    const help =
      key === 'subjectPrefix'
        ? 'accepted for symmetry with "run"; not used (revocations go through the bucket)'
        : key === 'signingKeyFile'
          ? 'the coordinator\'s Ed25519 signing key (must exist; revocations are signed and records verified with it)'
          : f.help;
    const o = flagOption({ ...f, help });
    cmd.addOption(o);
  }
  return cmd;
}

export function sharedConfig(opts: SharedOptions, cmd: Command): CoordinatorConfig {
  const picked: Record<string, string | readonly string[]> = {};
  for (const k of SHARED_FLAGS) {
    const v = opts[k as keyof SharedOptions];
    if (v !== undefined) picked[k] = v;
  }
  return parseCoordinatorConfig(picked, (k) => {
    const src: string | undefined = cmd.getOptionValueSource(k);
    return src === 'cli' || src === 'env' || src === 'default' ? src : undefined;
  });
}

export interface Admin {
  /** Retried reads and writes (see ADMIN_ATTEMPT_TIMEOUT_MS). */
  readonly store: StateStore;
  /** The bucket with nats.js's default timeouts and no retry, for the policy commands' own multi-key writes. */
  readonly kv: KV;
  readonly signingKey: SigningKeyPair;
  close(): Promise<void>;
}

/**
 * Each JetStream request of an operator's command: its own timeout, and how long one operation keeps
 * retrying while JetStream cannot serve it. After a NATS server loss the bucket's stream has no leader
 * until the surviving servers elect one (4–6 s after a crash) and a request sent meanwhile is never
 * answered: the attempts are short and retried soon (250 ms, NATS's retry wait, growing to 1 s), so
 * the command goes on within about a second of the election, well within the deadline.
 */
export const ADMIN_ATTEMPT_TIMEOUT_MS = 1000;
export const ADMIN_DEADLINE_MS = 30_000;

/** What an operator's command says while it waits for JetStream (once per operation, on stderr). */
export function adminRetry(report: (line: string) => void = (l) => process.stderr.write(l)): JetStreamRetryOptions {
  return {
    clock: systemClock,
    deadlineMs: ADMIN_DEADLINE_MS,
    policy: { initialMs: 250, maxMs: 1000, jitter: 0.2 },
    onRetry: (what, err, attempt) => {
      if (attempt === 1) {
        report(
          `waiting for NATS JetStream: ${what} was not served (${errorMessage(err)}); after a NATS server loss the bucket's stream elects a new leader within seconds — retrying for up to ${ADMIN_DEADLINE_MS / 1000} s\n`,
        );
      }
    },
  };
}

/** Why the bucket could not be opened: not served in time (say so), or missing (another --bucket?). */
export function bucketOpenError(bucket: string, servers: readonly string[], err: unknown): RevocationAdminError {
  const hint = err instanceof JetStreamUnavailableError ? '' : ' (does the coordinator use another --bucket?)';
  return new RevocationAdminError(`cannot open the KV bucket "${bucket}" on ${servers.join(',')}: ${errorMessage(err)}${hint}`, { cause: err });
}

/** Loads the signing key (never creates one), connects once (bounded) and opens the existing bucket. */
async function openAdmin(config: CoordinatorConfig): Promise<Admin> {
  const key = await loadSigningKey(config.signingKeyFile);
  let nc: NatsConnection;
  try {
    nc = await connectNats(config.nats, 'crosslink-coordinator-admin', { ...RECONNECT_ONE_SHOT, inboxPrefix: COORDINATOR_INBOX_PREFIX });
  } catch (err) {
    throw new RevocationAdminError(`cannot connect to NATS at ${config.nats.servers.join(',')}: ${errorMessage(err)}`, { cause: err });
  }
  try {
    const retry = adminRetry();
    // Reads by direct get (any replica; no stream leader needed): the bucket has allow_direct (Kvm.create).
    const kv = await new Kvm(jetstream(nc, { timeout: ADMIN_ATTEMPT_TIMEOUT_MS })).open(config.bucket, { allow_direct: true });
    const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: ADMIN_ATTEMPT_TIMEOUT_MS });
    const rangeReader = async (filter: string) => (await readKvRange(jsm, config.bucket, filter)).map((e) => catchUpWatchEntry(config.bucket, e, false));
    try {
      await retryJetStream(`open the bucket "${config.bucket}"`, () => kv.status(), retry);
    } catch (err) {
      throw bucketOpenError(config.bucket, config.nats.servers, err);
    }
    const logger = createLogger('crosslink-coordinator', process.env['CROSSLINK_LOG_LEVEL'] ?? 'warn');
    const store = new StateStore(kv, key, logger, config.previousPublicKeys, { retry, rangeReader });
    return { store, kv: await new Kvm(nc).open(config.bucket), signingKey: key, close: () => nc.close() };
  } catch (err) {
    await nc.close();
    throw err;
  }
}

export async function withAdmin<T>(config: CoordinatorConfig, fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = await openAdmin(config);
  try {
    return await fn(admin);
  } finally {
    await admin.close();
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();
const reasonText = (r: Revocation): string => (r.reason === '' ? '(no reason given)' : JSON.stringify(r.reason));

/** What `revoke` prints: what was revoked, what was deleted, and how to undo it. */
export function describeRevoke(r: RevokeResult): string {
  const v = r.revocation;
  const lines: string[] = [];
  if (r.previous) lines.push(`node "${v.name}" was already revoked at ${iso(r.previous.revokedAt)}; revocation kept${r.previous.reason !== v.reason ? ', reason updated' : ''}`);
  else lines.push(`revoked node "${v.name}" at ${iso(v.revokedAt)}; reason: ${reasonText(v)}`);
  if (v.identityKey !== null || v.publicKey !== null) {
    lines.push(`  blocked under any name: identity key ${v.identityKey ?? '-'}, WireGuard key ${v.publicKey ?? '-'}`);
  } else {
    lines.push(`  node "${v.name}" was not registered: the revocation blocks the name for any identity`);
  }
  if (r.removed) lines.push(`  removed ${kvKeys.node(v.name)} (cluster ${r.removed.cluster}, overlay IP ${r.removed.overlayIp}): every agent drops the node now`);
  else lines.push(`  no node record to delete`);
  lines.push(`  the coordinator refuses its registrations and heartbeats; undo with: crosslink-coordinator unrevoke ${v.name}`);
  return `${lines.join('\n')}\n`;
}

/** The `revocations` table: one row per revoked node; a revocation signed by another key is marked. */
export function formatRevocations(rows: readonly { value: Revocation; signedByUs: boolean }[]): string {
  if (rows.length === 0) return 'no nodes are revoked\n';
  const table = renderTable(
    ['NAME', 'REVOKED AT', 'IDENTITY KEY', 'WIREGUARD KEY', 'REASON'],
    rows.map(({ value: r, signedByUs }) => [
      signedByUs ? r.name : `${r.name} (signed by another key)`,
      iso(r.revokedAt),
      r.identityKey ?? '-',
      r.publicKey ?? '-',
      r.reason === '' ? '-' : r.reason,
    ]),
  );
  return `${table}\n`;
}

export function addRevocationCommands(program: Command): void {
  addSharedOptions(
    program
      .command('revoke')
      .argument('<node>', 'node name')
      .description('revoke a node: its record is deleted (peers drop it at once) and its name and keys are refused until "unrevoke"'),
  )
    .addOption(new Option('--reason <text>', 'why (shown to the node in the refusal, and by "revocations")'))
    .action(async (node: string, opts: SharedOptions & { reason?: string }, cmd: Command) => {
      const name = parseNodeName(node);
      if (opts.reason !== undefined) parseReason(opts.reason);
      const config = sharedConfig(opts, cmd);
      const result = await withAdmin(config, ({ store }) => revokeNode({ store, clock: systemClock }, name, opts.reason));
      process.stdout.write(describeRevoke(result));
    });

  addSharedOptions(program.command('unrevoke').argument('<node>', 'node name').description('lift the revocation of a node; it may register again')).action(
    async (node: string, opts: SharedOptions, cmd: Command) => {
      const name = parseNodeName(node);
      const lifted = await withAdmin(sharedConfig(opts, cmd), ({ store }) => unrevokeNode({ store }, name));
      process.stdout.write(`lifted the revocation of node "${name}" (revoked at ${iso(lifted.revokedAt)}; reason: ${reasonText(lifted)}); it may register again\n`);
    },
  );

  addSharedOptions(program.command('revocations').description('list revoked nodes'))
    .addOption(new Option('--json', 'print JSON (one array) instead of a table'))
    .action(async (opts: SharedOptions & { json?: boolean }, cmd: Command) => {
      const rows = await withAdmin(sharedConfig(opts, cmd), ({ store }) => listRevocations({ store }));
      if (opts.json === true) {
        process.stdout.write(`${JSON.stringify(rows.map((r) => ({ ...r.value, signedByCoordinatorKey: r.signedByUs })), null, 2)}\n`);
      } else {
        process.stdout.write(formatRevocations(rows));
      }
    });
}
