// The largest request an honest agent can send on each coordinator subject: every field at the
// longest the schemas allow (253-byte names, IPv6 text, the most pod CIDRs, endpoints, service
// addresses, ports and gateway verdicts), signed as the agent signs it. What the byte limits of
// protocol/request-size.ts are derived from (test/coordinator-request-size.test.ts measures them).
import { generateSigningKeyPair, generateWireguardKeyPair, signEnvelope, type SigningKeyPair } from '../../protocol/signing.ts';
import { MAX_GATEWAY_VERDICTS, type GatewayHealthReport } from '../../protocol/gateway-health.ts';
import { MAX_SERVICE_ADDRESSES, MAX_SERVICE_PORTS, type ServiceExportRequest, type ServiceUnexportRequest } from '../../protocol/service.ts';
import type { Deregister, RegistrationRequest } from '../../protocol/messages.ts';
import { CATCHUP_MAX_LIMIT, WATCHABLE_FILTERS, type WatchRequest } from '../../protocol/watch-broker.ts';
import { joinSign } from '../../protocol/join-credential.ts';

/** A DNS name of `length` characters (labels of at most 63), starting with `letter`. */
export function longName(length: number, letter = 'a'): string {
  const labels: string[] = [];
  let left = length;
  while (left > 0) {
    const n = Math.min(63, left === 64 ? 62 : left);
    labels.push(letter.repeat(n));
    left -= n + 1;
  }
  return labels.join('.');
}

/** A full-length IPv6 address (39 characters) outside the pod ranges below. */
const v6 = (i: number): string => `fd99:3456:789a:bcde:f012:3456:789a:${(0xa000 + i).toString(16)}`;

export interface LargestRequests {
  readonly identity: SigningKeyPair;
  readonly registration: RegistrationRequest;
  readonly deregistration: Deregister;
  readonly serviceExport: ServiceExportRequest;
  readonly serviceUnexport: ServiceUnexportRequest;
  readonly gatewayReport: GatewayHealthReport;
  readonly watch: readonly WatchRequest[];
}

/** Every kind of request at its largest, for node `name` (253 characters unless given). */
export async function largestRequests(name = longName(253)): Promise<LargestRequests> {
  const identity = await generateSigningKeyPair();
  const wireguard = await generateWireguardKeyPair();
  const max = Number.MAX_SAFE_INTEGER;
  const cluster = longName(63, 'c');
  const registration: RegistrationRequest = {
    v: 1,
    name,
    cluster,
    location: 'L'.repeat(63),
    zone: 'Z'.repeat(63),
    publicKey: wireguard.publicKey,
    identityKey: identity.publicKey,
    endpoints: [0, 1, 2, 3].map((i) => `[${v6(i)}]:65535`),
    privateAddresses: [4, 5, 6, 7].map(v6),
    podCidrs: Array.from({ length: 8 }, (_, i) => `fd12:3456:789a:bcde:f012:3456:${(0xb000 + i).toString(16)}:0/112`),
    listenPort: 65535,
    topology: 'gateway',
    gatewayEligible: true,
    persistentKeepalive: 3600,
    settings: { interfaceName: 'crosslink012345', mtu: 9000, natKeepaliveSec: 3600, relayPortBase: 65535, relayPortSpan: 64512 },
    agentVersion: 'v'.repeat(64),
    sentAt: max,
  };
  const filter = [...WATCHABLE_FILTERS].sort((a, b) => b.length - a.length)[0] ?? '';
  const service = { v: 1 as const, node: name, identityKey: identity.publicKey, cluster, namespace: 'n'.repeat(63), name: 's'.repeat(63), sentAt: max };
  return {
    identity,
    registration,
    deregistration: { v: 1, name, identityKey: identity.publicKey, sentAt: max },
    serviceExport: {
      ...service,
      ports: Array.from({ length: MAX_SERVICE_PORTS }, (_, i) => ({ name: `${'p'.repeat(60)}${String(i).padStart(3, '0')}`, port: 65535 - i, protocol: 'TCP' as const })),
      addresses: Array.from({ length: MAX_SERVICE_ADDRESSES }, (_, i) => `fd12:3456:789a:bcde:f012:3456:b000:${(0xd000 + i).toString(16)}`),
    },
    serviceUnexport: service,
    gatewayReport: {
      kind: 'gateway-health',
      v: 1,
      reporter: name,
      at: max,
      verdicts: Array.from({ length: MAX_GATEWAY_VERDICTS }, (_, i) => ({ gateway: longName(253, String.fromCharCode(97 + (i % 26))).slice(0, 250) + String(i).padStart(3, '0'), state: 'down' as const })),
    },
    watch: [
      { kind: 'watch', filter, deliverSubject: `_INBOX.${'i'.repeat(193)}`, start: { kind: 'after', revision: max } },
      { kind: 'count', filter },
      { kind: 'catchup', filter, afterRevision: max, limit: CATCHUP_MAX_LIMIT, nonce: 'n'.repeat(64) },
    ],
  };
}

/** The signed wire body of `value` as the agent sends it (a registration also carries a join signature). */
export async function signedBody(value: unknown, identity: SigningKeyPair, joinSecretKey?: string): Promise<string> {
  const env = await signEnvelope(value, identity.secretKey);
  return JSON.stringify(joinSecretKey === undefined ? env : { ...env, joinSig: await joinSign(env.payload, joinSecretKey) });
}
