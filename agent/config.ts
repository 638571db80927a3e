// The agent's flags and their CROSSLINK_* environment equivalents, parsed ONCE into a frozen
// AgentConfig. Every rejection names the flag (and env var), the value, and what is allowed.
import { existsSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { Command, CommanderError } from 'commander';
import * as z from 'zod';
import { ValidationError } from '../lib/errors.ts';
import { addFlags, check, envNameOf, keyOf, list, resolveFlags, single, type Env, type FlagSpec, type RawFlag } from '../lib/flags.ts';
import { NatsServers } from '../lib/nats-url.ts';
import { NATS_AUTH_FLAGS, natsSettingsFromFlags, type NatsSettings } from '../lib/nats-connect.ts';
import { AGENT_DEFAULTS, InterfaceName, KEEPALIVE_MAX_SEC, parseRelayPortRange } from '../protocol/agent-settings.ts';
import { durationFlag, parseDuration } from '../lib/duration.ts';
import { canonicalCidr, formatEndpoint, formatIp, parseEndpoint, parseIp } from '../protocol/cidr.ts';
import { ClusterName, Key32, LocationName, NodeName, Topology } from '../protocol/messages.ts';
import { parseListenAddr, type HostPort } from '../protocol/listen-addr.ts';
import { mtuSchema } from '../protocol/mtu.ts';
import { DEFAULT_BUCKET } from '../protocol/subjects.ts';

export type WireguardMode = 'auto' | 'kernel' | 'userspace';
export type AgentMode = 'standalone' | 'kubernetes';

export type { HostPort } from '../protocol/listen-addr.ts';

export interface AgentConfig {
  readonly natsServers: readonly string[];
  readonly natsCredsFile: string | null;
  /** Everything the NATS connect needs (servers without credentials, auth, TLS): lib/nats-connect.ts. */
  readonly nats: NatsSettings;
  readonly bucket: string;
  readonly nodeName: string;
  readonly mode: AgentMode;
  readonly cluster: string;
  /** Required standalone; in Kubernetes mode the default when the Node has no location annotation/region label. */
  readonly location: string | null;
  readonly zone: string | null;
  readonly podCidrs: readonly string[];
  /** Advertised public endpoints; empty: behind NAT. */
  readonly endpoints: readonly string[];
  /** Empty: detect the primary IPv4 of the default-route interface at start. */
  readonly privateAddresses: readonly string[];
  readonly listenPort: number;
  readonly interfaceName: string;
  readonly stateDir: string;
  readonly wireguard: WireguardMode;
  /** Exactly one of these two is set. */
  readonly coordinatorKey: string | null;
  /** Every key given to --coordinator-key (comma-separated: the current key first, then keys still trusted during a rotation). */
  readonly coordinatorKeys: readonly string[];
  readonly coordinatorKeyFile: string | null;
  /** The cluster's join credential (secret file from `crosslink-coordinator cluster add`); signs registrations. */
  readonly joinCredentialFile: string | null;
  readonly statusSocket: string;
  readonly healthAddr: HostPort | null;
  /** Serve /status (the node's whole view of the mesh) on --health-addr too; default: health only. */
  readonly healthStatus: boolean;
  readonly topology: Topology;
  /** null: eligible iff the node advertises an endpoint. */
  readonly gatewayEligible: boolean | null;
  /** Seconds; null lets the data plane decide (on when behind NAT). */
  readonly persistentKeepalive: number | null;
  readonly natKeepaliveSec: number;
  /** 'auto': underlay MTU − 80. */
  readonly mtu: number | 'auto';
  readonly resyncIntervalMs: number;
  readonly relayPortBase: number;
  readonly relayPortSpan: number;
  readonly cleanup: boolean;
  readonly logLevel: string;
  /** Without nftables: 'required' carries no overlay traffic, 'best-effort' carries it unfiltered (and says so). */
  readonly policyEnforcement: 'required' | 'best-effort';
  /** The nft binary the policy table is applied with. */
  readonly nftCommand: string;
  /** DNS server for clusterset.local (multi-cluster services); null: off. */
  readonly dnsAddr: HostPort | null;
  readonly dnsPolicy: 'local-first' | 'all';
}

function spec(flag: string, arg: string | null, help: string, extra: Pick<FlagSpec, 'envAliases' | 'repeatable'> = {}): FlagSpec {
  const negated = flag.startsWith('--no-');
  return {
    key: keyOf(flag),
    flags: arg === null ? flag : `${flag} <${arg}>`,
    help,
    // "--no-x" shares the variable of "--x" (CROSSLINK_X=false).
    ...(negated ? {} : { env: envNameOf(flag) }),
    ...extra,
  };
}

export const AGENT_FLAGS: readonly FlagSpec[] = [
  spec('--nats-url', 'urls', 'NATS server URLs, comma-separated (e.g. nats://10.0.0.1:4222,nats://10.0.0.2:4222); required'),
  spec('--nats-creds', 'file', 'NATS credentials file (JWT + nkey seed)'),
  ...NATS_AUTH_FLAGS,
  spec('--bucket', 'name', `JetStream KV bucket the coordinator writes (default: ${DEFAULT_BUCKET})`),
  spec('--node-name', 'name', 'this node\'s name, a DNS subdomain (default: NODE_NAME, else the hostname lowercased)', { envAliases: ['NODE_NAME'] }),
  spec('--cluster', 'name', 'cluster this node belongs to, a DNS label (required)'),
  spec('--location', 'name', 'location/region, e.g. aws-eu-west-1 (required standalone)'),
  spec('--zone', 'name', 'availability zone (optional)'),
  spec('--pod-cidr', 'cidr', 'pod CIDR routed to this node; repeatable or comma-separated (required standalone)', { repeatable: true }),
  spec('--endpoint', 'ip:port', 'advertised public endpoint (IP literal); repeatable; none: the node is behind NAT', { repeatable: true }),
  spec('--private-address', 'ip', 'address reachable inside the VPC; repeatable (default: primary IPv4 of the default-route interface)', { repeatable: true }),
  spec('--listen-port', 'port', `WireGuard UDP port (default: ${AGENT_DEFAULTS.listenPort})`),
  spec('--interface', 'name', `WireGuard interface name, at most 15 characters (default: ${AGENT_DEFAULTS.interfaceName})`),
  spec('--state-dir', 'dir', `directory for keys and the status socket (default: ${AGENT_DEFAULTS.stateDir})`),
  spec('--wireguard', 'mode', 'WireGuard backend: auto | kernel | userspace (default: auto)'),
  spec('--coordinator-key', 'base64', 'the coordinator\'s Ed25519 public key (base64); several comma-separated during a signing-key rotation (any one verifies); this or --coordinator-key-file is required'),
  spec('--coordinator-key-file', 'file', 'file holding the coordinator\'s public key (output of `crosslink-coordinator public-key`)'),
  spec('--join-credential-file', 'file', 'the cluster\'s join credential (secret file written by `crosslink-coordinator cluster add`); required to register'),
  spec('--status-socket', 'path', 'unix socket for the status API (default: <state-dir>/agent.sock)'),
  spec('--health-addr', 'host:port', `HTTP /healthz /readyz listener (default: off standalone, ${AGENT_DEFAULTS.kubernetesHealthAddr} in Kubernetes; "off" disables); warns when not loopback`),
  spec('--health-status', null, 'also serve /status (the mesh topology, unauthenticated) on --health-addr (default: health only; the CLI uses the local socket)'),
  spec('--topology', 'mode', 'deprecated and ignored: the cluster\'s enrollment decides (crosslink-coordinator cluster add --topology mesh|gateway); still accepted: mesh | gateway'),
  spec('--gateway-eligible', null, 'may be elected gateway/relay (default: only if it has an --endpoint)'),
  spec('--no-gateway-eligible', null, 'never be elected gateway/relay'),
  spec('--persistent-keepalive', 'seconds', 'keepalive towards every peer, 0 = off (default: the data plane decides)'),
  spec('--nat-keepalive', 'seconds', `keepalive towards peers when this node is behind NAT (default: ${AGENT_DEFAULTS.natKeepaliveSec})`),
  spec('--mtu', 'bytes|auto', 'interface MTU (default: auto = underlay MTU - 80)'),
  spec('--resync-interval', 'duration', 'full reconcile period that repairs drift, e.g. 30s or 2m, a unit is required (default: 30s)'),
  spec('--relay-port-range', 'a-b', `UDP ports used when this node relays for NATed pairs (default: ${AGENT_DEFAULTS.relayPortRange})`),
  spec('--cleanup', null, 'on shutdown deregister and remove the interface, routes and rules (default)'),
  spec('--no-cleanup', null, 'on shutdown leave the data plane in place (traffic keeps flowing during upgrades)'),
  spec('--kubernetes', null, 'force Kubernetes mode: identity from the Node object (default: when KUBERNETES_SERVICE_HOST is set)'),
  spec('--no-kubernetes', null, 'force standalone mode'),
  spec('--policy-enforcement', 'mode', 'when the access policy cannot be enforced (no nftables): required = carry no overlay traffic, best-effort = carry it unfiltered and say so (default: best-effort)'),
  spec('--nft', 'path', 'the nft binary used to enforce the access policy (default: nft)'),
  spec('--dns-addr', 'ip:port', 'serve DNS for clusterset.local (multi-cluster services) on this address, UDP and TCP (default: off)'),
  spec('--dns-policy', 'policy', 'DNS answers: all (local cluster first, then by path health/latency) | local-first (only the nearest cluster with endpoints) (default: all)'),
  spec('--log-level', 'level', 'trace | debug | info | warn | error | fatal | silent (default: info)'),
];

/** The commander program: used for --help, and to parse argv (validation is ours). */
export function agentCommand(): Command {
  const cmd = new Command('crosslink-agent')
    .description('Crosslink agent: registers this node with the coordinator and keeps WireGuard peers and routes in sync.')
    .allowExcessArguments(false)
    .helpOption('-h, --help', 'show this help');
  return addFlags(cmd, AGENT_FLAGS);
}

export interface ParseContext {
  readonly env: Env;
  /** os.hostname(), injected for tests. */
  readonly hostname: string;
  /** For Kubernetes auto-detection (the service account token); default fs.existsSync. */
  readonly fileExists?: (path: string) => boolean;
}

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** Parses argv (without node and script) plus env into a frozen config. Throws ValidationError. */
export function parseAgentConfig(argv: readonly string[], ctx: ParseContext): AgentConfig {
  const cmd = agentCommand();
  cmd.exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  try {
    cmd.parse([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      throw new ValidationError('arguments', argv.join(' '), err.message.replace(/^error: /, ''), { cause: err });
    }
    throw err;
  }
  return buildConfig(resolveFlags(cmd, AGENT_FLAGS, ctx.env), ctx);
}

/** A NATS URL safe to log: user info (user:password@) replaced. */
export { redactUrl } from '../lib/nats-url.ts';

const Port = z.coerce.number().int('must be a whole number').min(1, 'must be 1-65535').max(65535, 'must be 1-65535');
const AbsPath = z.string().refine((s) => isAbsolute(s), 'must be an absolute path');
// sockaddr_un.sun_path is 108 bytes including the NUL.
const SocketPath = AbsPath.refine((s) => Buffer.byteLength(s) <= 107, 'must be at most 107 bytes (unix socket path limit)');
const LogLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

function seconds(label: string, text: string, max: number): number {
  // Keepalives are WireGuard's `persistent-keepalive N`: whole seconds, so a bare integer is seconds
  // here (the one exception to "a duration needs a unit", wg(8)'s own form); "25s" works too.
  const ms = /^[0-9]+$/.test(text.trim()) ? Number(text.trim()) * 1000 : parseDuration(text);
  if (ms === undefined || ms % 1000 !== 0 || ms / 1000 > max) {
    throw new ValidationError(label, text, `must be whole seconds 0-${max}, e.g. 25 or 25s (WireGuard's persistent-keepalive)`);
  }
  return ms / 1000;
}

const healthAddr = parseListenAddr;

function buildConfig(flags: Readonly<Record<string, RawFlag>>, ctx: ParseContext): AgentConfig {
  const get = (key: string): RawFlag => {
    const f = flags[key];
    if (!f) throw new Error(`no flag spec for ${key}`);
    return f;
  };
  const str = single;

  const natsRaw = get('natsUrl');
  const natsText = str(natsRaw);
  if (natsText === undefined) {
    throw new ValidationError(natsRaw.label, undefined, 'required: comma-separated NATS URLs, e.g. nats://10.0.0.1:4222');
  }
  const natsServers = check(natsRaw.label, natsText, NatsServers);

  const nodeRaw = get('nodeName');
  const nodeName = check(nodeRaw.label, str(nodeRaw) ?? ctx.hostname.toLowerCase(), NodeName);

  const k8sRaw = get('kubernetes');
  // Auto: in a pod with a service account (what agent/kubernetes/kubeconfig.ts detectKubernetes checks).
  const inPod = (ctx.env['KUBERNETES_SERVICE_HOST'] ?? '') !== '' && (ctx.fileExists ?? existsSync)(SERVICE_ACCOUNT_TOKEN);
  const mode: AgentMode = k8sRaw.value === true || (k8sRaw.value === undefined && inPod) ? 'kubernetes' : 'standalone';
  const standalone = mode === 'standalone';
  const requiredStandalone = (raw: RawFlag, what: string): never => {
    throw new ValidationError(raw.label, undefined, `required in standalone mode (without --kubernetes): ${what}`);
  };

  const clusterRaw = get('cluster');
  const clusterText = str(clusterRaw);
  if (clusterText === undefined) {
    // Also in Kubernetes mode: a Node object doesn't say which cluster it belongs to.
    throw new ValidationError(clusterRaw.label, undefined, 'required: a DNS label naming this cluster (lowercase letters, digits, "-")');
  }
  const cluster = check(clusterRaw.label, clusterText, ClusterName);

  const locationRaw = get('location');
  const locationText = str(locationRaw);
  if (locationText === undefined && standalone) requiredStandalone(locationRaw, 'a location name such as aws-eu-west-1');
  const location = locationText === undefined ? null : check(locationRaw.label, locationText, LocationName);

  const zoneRaw = get('zone');
  const zoneText = str(zoneRaw);
  const zone = zoneText === undefined ? null : check(zoneRaw.label, zoneText, LocationName);

  const podRaw = get('podCidr');
  const podTexts = list(podRaw);
  if (podTexts.length === 0 && standalone) requiredStandalone(podRaw, 'at least one pod CIDR like 10.244.1.0/24');
  if (podTexts.length > 8) throw new ValidationError(podRaw.label, podTexts, 'at most 8 pod CIDRs');
  const podCidrs = podTexts.map((t) => {
    const c = canonicalCidr(t);
    if (c === undefined) throw new ValidationError(podRaw.label, t, 'must be a CIDR like 10.244.1.0/24 with host bits zero');
    return c;
  });

  const endpointRaw = get('endpoint');
  const endpointTexts = list(endpointRaw);
  if (endpointTexts.length > 4) throw new ValidationError(endpointRaw.label, endpointTexts, 'at most 4 endpoints');
  const endpoints = endpointTexts.map((t) => {
    const e = parseEndpoint(t);
    if (!e) throw new ValidationError(endpointRaw.label, t, 'must be "ip:port" or "[ipv6]:port" with an IP literal (names are not resolved) and a port 1-65535');
    return formatEndpoint(e.host, e.port);
  });

  const privRaw = get('privateAddress');
  const privTexts = list(privRaw);
  if (privTexts.length > 4) throw new ValidationError(privRaw.label, privTexts, 'at most 4 private addresses');
  const privateAddresses = privTexts.map((t) => {
    const ip = parseIp(t);
    if (!ip) throw new ValidationError(privRaw.label, t, 'must be an IPv4 or IPv6 address');
    return formatIp(ip.family, ip.value);
  });

  const portRaw = get('listenPort');
  const listenPort = check(portRaw.label, str(portRaw) ?? String(AGENT_DEFAULTS.listenPort), Port.pipe(z.number()));

  const ifRaw = get('interface');
  const interfaceName = check(ifRaw.label, str(ifRaw) ?? AGENT_DEFAULTS.interfaceName, InterfaceName);

  const stateRaw = get('stateDir');
  const stateDir = check(stateRaw.label, str(stateRaw) ?? AGENT_DEFAULTS.stateDir, AbsPath).replace(/(.)\/+$/, '$1');

  const wgRaw = get('wireguard');
  const wireguard = check(wgRaw.label, str(wgRaw) ?? 'auto', z.enum(['auto', 'kernel', 'userspace'], 'allowed: auto, kernel, userspace'));

  const keyRaw = get('coordinatorKey');
  const keyFileRaw = get('coordinatorKeyFile');
  const keyText = str(keyRaw);
  const keyFileText = str(keyFileRaw);
  if (keyText !== undefined && keyFileText !== undefined) {
    throw new ValidationError(keyFileRaw.label, keyFileText, `give either --coordinator-key or --coordinator-key-file, not both`);
  }
  if (keyText === undefined && keyFileText === undefined) {
    throw new ValidationError(keyRaw.label, undefined, 'required (or --coordinator-key-file): the coordinator\'s Ed25519 public key in base64, from `crosslink-coordinator public-key`');
  }
  const coordinatorKeys = keyText === undefined ? [] : keyText.split(',').map((k) => check(keyRaw.label, k.trim(), Key32));
  const coordinatorKey = coordinatorKeys[0] ?? null;
  const coordinatorKeyFile = keyFileText === undefined ? null : check(keyFileRaw.label, keyFileText, AbsPath);

  const joinRaw = get('joinCredentialFile');
  const joinText = str(joinRaw);
  const joinCredentialFile = joinText === undefined ? null : check(joinRaw.label, joinText, AbsPath);

  const sockRaw = get('statusSocket');
  const statusSocket = check(sockRaw.label, str(sockRaw) ?? `${stateDir}/agent.sock`, SocketPath);

  const healthRaw = get('healthAddr');
  const healthText = str(healthRaw) ?? (standalone ? 'off' : AGENT_DEFAULTS.kubernetesHealthAddr);
  const health = healthAddr(healthRaw.label, healthText);
  const healthStatus = get('healthStatus').value === true;

  const topoRaw = get('topology');
  const topology = check(topoRaw.label, str(topoRaw) ?? 'mesh', z.enum(['mesh', 'gateway'], 'allowed: mesh, gateway'));

  const geRaw = get('gatewayEligible');
  const gatewayEligible = typeof geRaw.value === 'boolean' ? geRaw.value : null;

  const pkRaw = get('persistentKeepalive');
  const pkText = str(pkRaw);
  const persistentKeepalive = pkText === undefined ? null : seconds(pkRaw.label, pkText, KEEPALIVE_MAX_SEC);

  const nkRaw = get('natKeepalive');
  const nkText = str(nkRaw);
  const natKeepaliveSec = nkText === undefined ? AGENT_DEFAULTS.natKeepaliveSec : seconds(nkRaw.label, nkText, KEEPALIVE_MAX_SEC);

  const mtuRaw = get('mtu');
  const mtuText = str(mtuRaw) ?? 'auto';
  const mtu: number | 'auto' =
    mtuText === 'auto'
      ? 'auto'
      : check(mtuRaw.label, mtuText, mtuSchema('"auto"'));

  const resyncRaw = get('resyncInterval');
  const resyncText = str(resyncRaw) ?? '30s';
  const resyncMs = durationFlag(resyncRaw.label, resyncText, { minMs: 1000, maxMs: 3_600_000 });

  const relayRaw = get('relayPortRange');
  const relayText = str(relayRaw) ?? AGENT_DEFAULTS.relayPortRange;
  const relay = parseRelayPortRange(relayRaw.label, relayText, listenPort);

  const cleanupRaw = get('cleanup');
  const cleanup = typeof cleanupRaw.value === 'boolean' ? cleanupRaw.value : true;

  const credsRaw = get('natsCreds');
  const credsText = str(credsRaw);
  const natsCredsFile = credsText === undefined ? null : check(credsRaw.label, credsText, AbsPath);
  const nats = natsSettingsFromFlags(flags, natsServers);

  const bucketRaw = get('bucket');
  const bucket = check(bucketRaw.label, str(bucketRaw) ?? DEFAULT_BUCKET, z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, "_" or "-"'));

  const logRaw = get('logLevel');
  const logLevel = check(logRaw.label, str(logRaw) ?? AGENT_DEFAULTS.logLevel, LogLevel);

  const peRaw = get('policyEnforcement');
  const policyEnforcement = check(peRaw.label, str(peRaw) ?? 'best-effort', z.enum(['required', 'best-effort'], 'allowed: required, best-effort'));

  const nftRaw = get('nft');
  const nftCommand = check(nftRaw.label, str(nftRaw) ?? 'nft', z.string().regex(/^[A-Za-z0-9_./-]{1,255}$/, 'must be a command name or path (letters, digits, "_", ".", "/", "-")'));
  const dnsRaw = get('dnsAddr');
  const dnsText = str(dnsRaw);
  const dnsAddr = dnsText === undefined || dnsText === 'off' ? null : healthAddr(dnsRaw.label, dnsText);
  const dnsPolicyRaw = get('dnsPolicy');
  const dnsPolicy = check(dnsPolicyRaw.label, str(dnsPolicyRaw) ?? 'all', z.enum(['local-first', 'all'], 'allowed: all, local-first'));

  return Object.freeze({
    natsServers,
    natsCredsFile,
    nats,
    bucket,
    nodeName,
    mode,
    cluster,
    location,
    zone,
    podCidrs: Object.freeze(podCidrs),
    endpoints: Object.freeze(endpoints),
    privateAddresses: Object.freeze(privateAddresses),
    listenPort,
    interfaceName,
    stateDir,
    wireguard,
    coordinatorKey,
    coordinatorKeys: Object.freeze(coordinatorKeys),
    coordinatorKeyFile,
    joinCredentialFile,
    statusSocket,
    healthAddr: health === null ? null : Object.freeze(health),
    healthStatus,
    topology,
    gatewayEligible,
    persistentKeepalive,
    natKeepaliveSec,
    mtu,
    resyncIntervalMs: resyncMs,
    relayPortBase: relay.first,
    relayPortSpan: relay.last - relay.first + 1,
    cleanup,
    logLevel,
    policyEnforcement,
    nftCommand,
    dnsAddr: dnsAddr === null ? null : Object.freeze(dnsAddr),
    dnsPolicy,
  });
}
