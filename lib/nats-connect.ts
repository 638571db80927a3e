// The one NATS connect of Crosslink (coordinator, agent, CLI): server URLs, TLS (CA, client
// certificate, `tls://` URLs), user/password (flags or `user:pass@` in the URL), .creds files
// (JWT + nkey) and bare nkey seeds, and the reconnect policy. Secrets never reach a log: URLs are
// shown redacted, passwords and seeds are read from files at connect time and handed to the client
// only. Flags are validated once at the edge (`natsSettingsFrom`), into a frozen NatsSettings.
import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  usernamePasswordAuthenticator,
  type Authenticator,
  type ConnectionOptions,
  type NatsConnection,
} from '@nats-io/transport-node';
import { CrosslinkError, ValidationError, errorMessage } from './errors.ts';
import { flagName, single, type FlagSpec, type RawFlag } from './flags.ts';
import { redactUrl } from './nats-url.ts';

/** The NATS authentication and TLS flags every program takes (agent, coordinator, CLI), in lib/flags.ts form. */
export const NATS_AUTH_FLAGS = [
  { key: 'natsUser', flags: '--nats-user <name>', env: 'CROSSLINK_NATS_USER', help: 'NATS user name (with --nats-password or --nats-password-file; or user:pass@ in the URL)' },
  { key: 'natsPassword', flags: '--nats-password <password>', env: 'CROSSLINK_NATS_PASSWORD', help: 'NATS password (prefer --nats-password-file: argv is visible to other users)' },
  { key: 'natsPasswordFile', flags: '--nats-password-file <file>', env: 'CROSSLINK_NATS_PASSWORD_FILE', help: 'file holding the NATS password' },
  { key: 'natsNkeyFile', flags: '--nats-nkey-file <file>', env: 'CROSSLINK_NATS_NKEY_FILE', help: 'file holding a NATS user nkey seed (SU...)' },
  { key: 'natsTlsCa', flags: '--nats-tls-ca <file>', env: 'CROSSLINK_NATS_TLS_CA', help: 'PEM CA bundle that signs the NATS servers\' certificates (implies TLS)' },
  { key: 'natsTlsCert', flags: '--nats-tls-cert <file>', env: 'CROSSLINK_NATS_TLS_CERT', help: 'PEM client certificate for NATS (with --nats-tls-key; implies TLS)' },
  { key: 'natsTlsKey', flags: '--nats-tls-key <file>', env: 'CROSSLINK_NATS_TLS_KEY', help: 'PEM private key of the NATS client certificate' },
] as const satisfies readonly (FlagSpec & { readonly env: string })[];

export type NatsFlagKey = (typeof NATS_AUTH_FLAGS)[number]['key'];

/** The flag name of a key ("natsTlsCa" → "--nats-tls-ca"; "creds" → "--nats-creds"). */
export function natsFlagOf(key: NatsFlagKey | 'creds'): string {
  if (key === 'creds') return '--nats-creds';
  return flagName(NATS_AUTH_FLAGS.find((f) => f.key === key) ?? { flags: key });
}

export interface NatsSettings {
  /** host:port (or scheme://host:port) without credentials: safe to log. */
  readonly servers: readonly string[];
  readonly user: string | null;
  /** Literal password (flag, env or URL): never logged. */
  readonly password: string | null;
  readonly passwordFile: string | null;
  readonly credsFile: string | null;
  readonly nkeyFile: string | null;
  /** null: plain TCP (unless the server requires TLS). */
  readonly tls: { readonly caFile: string | null; readonly certFile: string | null; readonly keyFile: string | null } | null;
}

/** nats:// or tls:// URL, or host:port; optional user[:password]@. */
const NATS_URL_RE = /^(?:(nats|tls|ws|wss):\/\/)?(?:([^\s:/@]+)(?::([^\s/@]*))?@)?([A-Za-z0-9.-]+|\[[0-9a-fA-F:.]+\])(?::([0-9]{1,5}))?\/?$/;

export { redactUrl };

export interface RawNatsOptions {
  readonly urls: readonly string[];
  readonly creds?: string | undefined;
  readonly natsUser?: string | undefined;
  readonly natsPassword?: string | undefined;
  readonly natsPasswordFile?: string | undefined;
  readonly natsNkeyFile?: string | undefined;
  readonly natsTlsCa?: string | undefined;
  readonly natsTlsCert?: string | undefined;
  readonly natsTlsKey?: string | undefined;
}

/**
 * Validates the NATS options once. `label(key)` names the flag (or env var) in errors; `urlLabel`
 * names the URL flag. Credentials in URLs are moved out of the server list (the client ignores
 * them there: that was an Authorization Violation), and must agree across URLs and with flags.
 */
export function natsSettingsFrom(raw: RawNatsOptions, label: (key: NatsFlagKey | 'creds') => string, urlLabel: string): NatsSettings {
  const servers: string[] = [];
  let urlUser: string | null = null;
  let urlPass: string | null = null;
  let anyTls = false;
  for (const u of raw.urls) {
    const m = NATS_URL_RE.exec(u.trim());
    if (!m) throw new ValidationError(urlLabel, redactUrl(u), 'must be a NATS URL like nats://10.0.0.1:4222, tls://nats.example:4222 or nats://user:pass@host:4222 (comma-separate several)');
    const [, scheme, user, pass, host = '', port] = m;
    if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) throw new ValidationError(urlLabel, redactUrl(u), 'port must be 1-65535');
    if (user !== undefined) {
      const du = decodeURIComponent(user);
      const dp = pass === undefined ? null : decodeURIComponent(pass);
      if ((urlUser !== null && urlUser !== du) || (urlPass !== null && urlPass !== dp)) {
        throw new ValidationError(urlLabel, redactUrl(u), 'every URL must carry the same user:password (or none)');
      }
      urlUser = du;
      urlPass = dp;
    }
    if (scheme === 'tls') anyTls = true;
    servers.push(`${scheme ?? 'nats'}://${host}:${port ?? '4222'}`);
  }
  const opt = (v: string | undefined): string | null => (v === undefined || v.trim() === '' ? null : v);
  const file = (key: NatsFlagKey | 'creds', v: string | undefined): string | null => {
    const f = opt(v);
    if (f !== null && !f.startsWith('/') && !f.startsWith('.')) throw new ValidationError(label(key), f, 'must be a file path');
    return f;
  };
  const flagUser = opt(raw.natsUser);
  const password = opt(raw.natsPassword);
  const passwordFile = file('natsPasswordFile', raw.natsPasswordFile);
  if (password !== null && passwordFile !== null) throw new ValidationError(label('natsPassword'), '***', `use either ${label('natsPassword')} or ${label('natsPasswordFile')}, not both`);
  if (flagUser !== null && urlUser !== null && flagUser !== urlUser) throw new ValidationError(label('natsUser'), flagUser, `the URL names another user (${urlUser})`);
  const user = flagUser ?? urlUser;
  if ((password !== null || passwordFile !== null) && user === null) throw new ValidationError(label('natsUser'), undefined, 'required with a NATS password');
  const credsFile = file('creds', raw.creds);
  const nkeyFile = file('natsNkeyFile', raw.natsNkeyFile);
  const methods = [user !== null, credsFile !== null, nkeyFile !== null].filter(Boolean).length;
  if (methods > 1) throw new ValidationError(label('creds'), credsFile ?? nkeyFile ?? user ?? '', 'use one NATS authentication: user/password, a .creds file or an nkey seed file');
  const caFile = file('natsTlsCa', raw.natsTlsCa);
  const certFile = file('natsTlsCert', raw.natsTlsCert);
  const keyFile = file('natsTlsKey', raw.natsTlsKey);
  if ((certFile === null) !== (keyFile === null)) throw new ValidationError(label(certFile === null ? 'natsTlsCert' : 'natsTlsKey'), undefined, 'a client certificate needs both --nats-tls-cert and --nats-tls-key');
  const tls = anyTls || caFile !== null || certFile !== null ? Object.freeze({ caFile, certFile, keyFile }) : null;
  return Object.freeze({
    servers: Object.freeze(servers),
    user,
    password: password ?? (passwordFile === null ? urlPass : null),
    passwordFile,
    credsFile,
    nkeyFile,
    tls,
  });
}

/** Settings for bare URLs (tests, bench, the lab): no authentication flags. */
export function natsSettingsForUrls(urls: readonly string[]): NatsSettings {
  return natsSettingsFrom({ urls }, natsFlagOf, '--nats-url');
}

/**
 * The settings from flags resolved by lib/flags.ts (`resolveFlags` over specs that include
 * `--nats-url`, `--nats-creds` and NATS_AUTH_FLAGS): errors name the flag or its variable.
 */
export function natsSettingsFromFlags(flags: Readonly<Record<string, RawFlag>>, urls: readonly string[]): NatsSettings {
  const raw = (key: string): RawFlag => flags[key] ?? { label: key, value: undefined, source: 'none' };
  const value = (key: string): string | undefined => single(raw(key));
  return natsSettingsFrom(
    {
      urls,
      creds: value('natsCreds'),
      ...Object.fromEntries(NATS_AUTH_FLAGS.map((f) => [f.key, value(f.key)])),
    },
    (key) => raw(key === 'creds' ? 'natsCreds' : key).label,
    raw('natsUrl').label,
  );
}

export class NatsConnectError extends CrosslinkError {
  override name = 'NatsConnectError';
}

async function readSecret(path: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (err) {
    throw new NatsConnectError(`cannot read the NATS ${what} ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

/** How a connection behaves once it is up. */
export interface ReconnectPolicy {
  /** -1: forever (daemons); a small number for one-shot commands. */
  readonly maxReconnectAttempts: number;
  readonly reconnectTimeWaitMs: number;
  /** Reply/delivery subject prefix (default `_INBOX`); the coordinator has its own (docs/security.md). */
  readonly inboxPrefix?: string;
}
export const RECONNECT_FOREVER: ReconnectPolicy = Object.freeze({ maxReconnectAttempts: -1, reconnectTimeWaitMs: 1000 });
export const RECONNECT_ONE_SHOT: ReconnectPolicy = Object.freeze({ maxReconnectAttempts: 2, reconnectTimeWaitMs: 500 });

/** The client options (reads the secret files). Exported for tests; use connectNats. */
export async function natsConnectionOptions(s: NatsSettings, name: string, policy: ReconnectPolicy): Promise<ConnectionOptions> {
  const authenticator: Authenticator | undefined =
    s.credsFile !== null
      ? credsAuthenticator(await readSecret(s.credsFile, '.creds file'))
      : s.nkeyFile !== null
        ? nkeyAuthenticator(new TextEncoder().encode(new TextDecoder().decode(await readSecret(s.nkeyFile, 'nkey seed file')).trim()))
        : s.user !== null
          ? usernamePasswordAuthenticator(s.user, s.passwordFile !== null ? new TextDecoder().decode(await readSecret(s.passwordFile, 'password file')).replace(/\r?\n$/, '') : (s.password ?? undefined))
          : undefined;
  return {
    servers: s.servers.map((u) => u.replace(/^tls:\/\//, 'nats://')),
    name,
    maxReconnectAttempts: policy.maxReconnectAttempts,
    reconnectTimeWait: policy.reconnectTimeWaitMs,
    ...(policy.inboxPrefix === undefined ? {} : { inboxPrefix: policy.inboxPrefix }),
    timeout: 5000,
    // No stack captured per request: the client otherwise builds two Error objects (a RequestError
    // and a TimeoutError, each with a stack trace) for every request and KV write, ~4 % of the
    // coordinator's CPU in a registration storm (docs/benchmarks.md). Timeouts still reject, with
    // the client's own error.
    noAsyncTraces: true,
    pingInterval: 10_000,
    maxPingOut: 3,
    ...(authenticator ? { authenticator } : {}),
    ...(s.tls
      ? {
          tls: {
            ...(s.tls.caFile !== null ? { caFile: s.tls.caFile } : {}),
            ...(s.tls.certFile !== null ? { certFile: s.tls.certFile } : {}),
            ...(s.tls.keyFile !== null ? { keyFile: s.tls.keyFile } : {}),
          },
        }
      : {}),
  };
}

/** Connects once (the caller retries the first connect on its schedule); `policy` governs reconnects after that. */
export async function connectNats(s: NatsSettings, name: string, policy: ReconnectPolicy = RECONNECT_FOREVER): Promise<NatsConnection> {
  return connect(await natsConnectionOptions(s, name, policy));
}

/** For logs: the servers (never credentials) and the kind of authentication. */
export function describeNats(s: NatsSettings): { servers: readonly string[]; auth: string; tls: boolean } {
  const auth = s.credsFile !== null ? 'creds' : s.nkeyFile !== null ? 'nkey' : s.user !== null ? `user ${s.user}` : 'none';
  return { servers: s.servers, auth, tls: s.tls !== null };
}

/** IP addresses of the servers (names resolved; unresolvable ones skipped): what the route guard protects. */
export async function resolveNatsAddresses(s: NatsSettings, resolve: (host: string) => Promise<readonly string[]> = defaultResolve): Promise<string[]> {
  const out = new Set<string>();
  for (const u of s.servers) {
    const host = u.replace(/^[a-z]+:\/\//, '').replace(/:[0-9]+$/, '').replace(/^\[(.*)\]$/, '$1');
    if (isIP(host) !== 0) out.add(host);
    else for (const a of await resolve(host).catch(() => [])) out.add(a);
  }
  return [...out].sort();
}

async function defaultResolve(host: string): Promise<readonly string[]> {
  return (await lookup(host, { all: true })).map((a) => a.address);
}
