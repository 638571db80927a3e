// Server-side NATS trust boundaries per role, as data, rendered into a nats-server `accounts` block
// by `crosslink-coordinator nats-config`. Pure. Rationale and limits: docs/security.md.
//
// nats-server 2.9 subject permissions cannot see a consumer's deliver subject or durable name (they
// are in the request body), so one account for everything would let an agent make the server push
// bucket records onto any subject of that account — the coordinator's request subjects included.
// Hence three accounts:
//   STORE        owns JetStream and the bucket; nothing in it subscribes to anything, so a push
//                consumer an agent points at `crosslink.v1.heartbeat` delivers nowhere.
//   COORDINATOR  the coordinator (and its admin commands): the whole JetStream API of STORE, its
//                deliveries under its own inbox prefix, the request services it exports, and the
//                signed "leader up" it exports to AGENTS as a stream (never through STORE: a push
//                consumer's deliveries are published in STORE and leave it only through STORE's
//                own stream exports, so no consumer an agent creates can reach leader-up).
//   AGENTS       agents and read-only CLIs: only the JetStream API subjects that name a readable
//                key range (nats.js 3 + server 2.9 put the filter subject into the consumer-create
//                subject and the key into the direct-get subject), the request services, and the
//                deliveries under `_INBOX.`. Agent USERS may not call any consumer API at all: a
//                coordinator creates their watch consumers (the watch broker, coordinator/watch-broker.ts);
//                only readers (read-only CLIs) still create their own watch consumers.
import { serviceSubjects } from '../protocol/service.ts';
import { subjects } from '../protocol/subjects.ts';
import { WATCHABLE_FILTERS } from '../protocol/watch-broker.ts';
import { NATS_MAX_PAYLOAD } from '../protocol/nats-payload.ts';
import { AGENT_EVENT_TYPES, eventStreamName, eventSubject } from '../protocol/events.ts';
import { healthStreamName } from '../protocol/health-summary.ts';
import { consumerCreatedAdvisory } from './consumer-reaper.ts';

export type NatsRole = 'agent' | 'coordinator' | 'reader';

/** Every JetStream consumer API subject starts with this (create, durable create, info, delete, list, …). */
const CONSUMER_API = '$JS.API.CONSUMER.';

export interface PermissionScope {
  readonly bucket: string;
  readonly subjectPrefix: string;
}

/** The coordinator connects with this inbox prefix, so its deliveries never reach other accounts. */
export const COORDINATOR_INBOX_PREFIX = '_XL_COORD';

export const ACCOUNTS = Object.freeze({ store: 'CROSSLINK_STORE', coordinator: 'CROSSLINK_COORDINATOR', agents: 'CROSSLINK_AGENTS' });

/**
 * Keys an agent or reader may read (watch or get): never ipam, identities, revocations or the lease.
 * The cluster enrollments are readable: the access policy maps `{cluster: X}` to X's enrolled ranges,
 * and a definition holds nothing secret (pod ranges, topology, the PUBLIC half of the join key).
 */
export function readableKeys(): readonly string[] {
  return WATCHABLE_FILTERS;
}

/** Request subjects agents send to the coordinator (readers send none). */
export function requestSubjects(prefix: string): readonly string[] {
  const s = subjects(prefix);
  const ss = serviceSubjects(prefix);
  // gateway-health is publish-only (signed verdicts, no reply), served by the coordinator like the requests.
  return [s.register, s.heartbeat, s.deregister, s.gatewayHealth, ss.export, ss.unexport, s.watch];
}

/**
 * The JetStream API subjects of STORE the AGENTS account imports: each names what it reads. Readers
 * use all of them; agent users are denied the consumer ones (agentDeniedApi).
 */
export function agentJetStreamApi(scope: PermissionScope): readonly string[] {
  const { bucket } = scope;
  const stream = `KV_${bucket}`;
  const keys = readableKeys();
  return [
    '$JS.API.INFO',
    `$JS.API.STREAM.INFO.${stream}`,
    // A KV watch: an ordered push consumer, server-named, its filter subject in the create subject.
    ...keys.map((k) => `$JS.API.CONSUMER.CREATE.${stream}.*.$KV.${bucket}.${k}`),
    `$JS.API.CONSUMER.INFO.${stream}.*`,
    // No CONSUMER.DELETE: one agent could delete another's watch consumer (names leak through the
    // shared `_INBOX.`). nats.js deletes only on an ordered-consumer reset (ignoring errors); the
    // server removes an abandoned watch consumer after its inactive threshold.
    // Direct get names the key in the subject: reads are pinned to the readable keys.
    ...keys.map((k) => `$JS.API.DIRECT.GET.${stream}.$KV.${bucket}.${k}`),
  ];
}

/**
 * Fire-and-forget publishes the STORE account's streams capture: mesh events (coordinator and agents)
 * and the agents' signed health summaries. Without these the streams stay empty under the accounts.
 */
export function observabilitySubjects(prefix: string): { readonly events: string; readonly health: string } {
  return { events: `${prefix}.events.>`, health: `${prefix}.health.>` };
}

/** Stream info and message get on the event and health streams: what `crosslink events` and the health reads use (nothing secret in them). */
export function observabilityReadApi(bucket: string): readonly string[] {
  return [eventStreamName(bucket), healthStreamName(bucket)].flatMap((st) => [`$JS.API.STREAM.INFO.${st}`, `$JS.API.STREAM.MSG.GET.${st}`]);
}

export interface SubjectPermissions {
  readonly publish: { readonly allow: readonly string[]; readonly deny: readonly string[] };
  readonly subscribe: { readonly allow: readonly string[]; readonly deny: readonly string[] };
  /** May publish to the reply subject of a request it received (nats-server `allow_responses`). */
  readonly allowResponses?: boolean;
}

/** User permissions inside the role's account (a second fence behind the account's imports). */
export function permissionsFor(role: NatsRole, scope: PermissionScope): SubjectPermissions {
  const { bucket, subjectPrefix: p } = scope;
  const stream = `KV_${bucket}`;
  if (role === 'coordinator') {
    // Replicas probe the leader among themselves (inside the coordinator account only).
    const presence = subjects(p).leaderPresence;
    return {
      // leaderUp: the signed "leader up" announcement (heard by agents on servers without accounts).
      publish: { allow: [`$KV.${bucket}.>`, '$JS.API.>', `$JS.ACK.${stream}.>`, `$JS.FC.${stream}.>`, `${COORDINATOR_INBOX_PREFIX}.>`, presence, subjects(p).leaderUp, observabilitySubjects(p).events], deny: [] },
      subscribe: { allow: [...requestSubjects(p), `${COORDINATOR_INBOX_PREFIX}.>`, presence, consumerCreatedAdvisory(stream)], deny: [] },
      // Replies to the agents' requests (their reply subjects are mapped into this account).
      allowResponses: true,
    };
  }
  return {
    publish: {
      allow: [
        // Agents publish only the agent event types: a coordinator's type (node-revoked, …) from an agent would be a forgery.
        ...(role === 'agent' ? [...requestSubjects(p), ...AGENT_EVENT_TYPES.map((type) => eventSubject(p, type)), observabilitySubjects(p).health] : []),
        ...agentJetStreamApi(scope).filter((s) => role !== 'agent' || !s.startsWith(CONSUMER_API)),
        ...observabilityReadApi(bucket),
        `$JS.FC.${stream}.>`,
      ],
      // Agents: no consumer API at all (create, durable create, info, delete): the watch broker creates their watches.
      deny: ['$KV.>', ...(role === 'agent' ? [`${CONSUMER_API}>`] : ['$JS.API.CONSUMER.DURABLE.CREATE.>', `$JS.API.CONSUMER.CREATE.${stream}`, '$JS.API.CONSUMER.DELETE.>']), `$JS.API.STREAM.MSG.GET.${stream}`],
    },
    // Only inboxes (replies and watch deliveries) and, for agents, the leader's signed "leader up"
    // (imported from COORDINATOR). Never the request subjects (no sniffing registrations); the deny
    // repeats that behind the allow list (a deny of all of `<p>.>` would also deny leader up).
    subscribe:
      role === 'agent'
        ? { allow: ['_INBOX.>', subjects(p).leaderUp], deny: [...requestSubjects(p), subjects(p).leaderPresence, observabilitySubjects(p).events, observabilitySubjects(p).health] }
        : { allow: ['_INBOX.>'], deny: [`${p}.>`] },
  };
}

export interface NatsUserSpec {
  readonly user: string;
  readonly role: NatsRole;
  /** Literal password, or a nats-server variable reference like `$CROSSLINK_AGENT_PASSWORD`. */
  readonly password: string;
}

const quote = (s: string): string => JSON.stringify(s);
const list = (xs: readonly string[]): string => `[${xs.map(quote).join(', ')}]`;

function userLines(u: NatsUserSpec, scope: PermissionScope): string[] {
  const perm = permissionsFor(u.role, scope);
  const password = u.password.startsWith('$') ? u.password : quote(u.password);
  const deny = (xs: readonly string[]): string => (xs.length > 0 ? `, deny: ${list(xs)}` : '');
  return [
    `      # ${u.role}`,
    `      { user: ${quote(u.user)}, password: ${password}, permissions: {`,
    `          publish: { allow: ${list(perm.publish.allow)}${deny(perm.publish.deny)} }`,
    `          subscribe: { allow: ${list(perm.subscribe.allow)}${deny(perm.subscribe.deny)} }`,
    ...(perm.allowResponses === true ? ['          allow_responses: true'] : []),
    `      } }`,
  ];
}

export interface AccountLimits {
  /**
   * The STORE account's JetStream `max_consumers` (all its streams): bounds what consumer creates by
   * any credential can cost. Honest use: about 7 per agent (five watches, two short-lived audit
   * consumers) plus a few per coordinator and per `crosslink events`/`watch`. null: unlimited.
   */
  readonly maxConsumers?: number | null;
}

/** A nats-server `accounts { ... }` block and the `max_payload` Crosslink needs (include it at the top level of the server config; it replaces `authorization`). */
export function renderAccounts(users: readonly NatsUserSpec[], scope: PermissionScope, limits: AccountLimits = {}): string {
  const { bucket, subjectPrefix: p } = scope;
  const stream = `KV_${bucket}`;
  const { store: S, coordinator: C, agents: A } = ACCOUNTS;
  const svc = (subject: string, to: string): string => `      { service: ${quote(subject)}, accounts: [${to}] }`;
  const str = (subject: string, to: string): string => `      { stream: ${quote(subject)}, accounts: [${to}] }`;
  const imp = (kind: 'service' | 'stream', from: string, subject: string): string => `      { ${kind}: { account: ${from}, subject: ${quote(subject)} } }`;
  const coordinatorStore = [`$JS.API.>`, `$KV.${bucket}.>`, `$JS.ACK.${stream}.>`];
  const agentStore = [...agentJetStreamApi(scope), ...observabilityReadApi(bucket)];
  const obs = observabilitySubjects(p);
  // Flow control of push consumers (KV watches): one export for both accounts (exports are keyed by subject).
  const flowControl = `$JS.FC.${stream}.>`;
  const usersOf = (roles: readonly NatsRole[]): string[] => users.filter((u) => roles.includes(u.role)).flatMap((u) => userLines(u, scope));
  const lines = [
    '# Rendered by `crosslink-coordinator nats-config`; accounts and roles: docs/security.md.',
    '# The largest message Crosslink sends (a catch-up reply) needs ~663 KiB; NATS\'s default is 1 MiB (protocol/nats-payload.ts).',
    `max_payload: ${NATS_MAX_PAYLOAD}`,
    'accounts {',
    `  ${S}: {`,
    '    # JetStream and the bucket live here; nothing here subscribes, so no push consumer can reach a service.',
    limits.maxConsumers === undefined || limits.maxConsumers === null ? '    jetstream: enabled' : `    jetstream: { max_mem: -1, max_file: -1, max_streams: -1, max_consumers: ${limits.maxConsumers} }`,
    '    exports: [',
    ...coordinatorStore.map((s) => svc(s, C)),
    str(`${COORDINATOR_INBOX_PREFIX}.>`, C),
    // The leader's consumer reaper hears of every new consumer on the bucket (consumer-reaper.ts).
    str(consumerCreatedAdvisory(stream), C),
    ...agentStore.map((s) => svc(s, A)),
    svc(flowControl, `${C}, ${A}`),
    // Events and health summaries published in the other accounts land in STORE's streams.
    svc(obs.events, `${C}, ${A}`),
    svc(obs.health, A),
    str('_INBOX.>', A),
    '    ]',
    '  }',
    `  ${C}: {`,
    '    users: [',
    ...usersOf(['coordinator']),
    '    ]',
    '    imports: [',
    ...[...coordinatorStore, flowControl, obs.events].map((s) => imp('service', S, s)),
    imp('stream', S, `${COORDINATOR_INBOX_PREFIX}.>`),
    imp('stream', S, consumerCreatedAdvisory(stream)),
    '    ]',
    '    exports: [',
    ...requestSubjects(p).map((s) => svc(s, A)),
    // The leader's signed announcement, straight to the agents (docs/security.md).
    str(subjects(p).leaderUp, A),
    '    ]',
    '  }',
    `  ${A}: {`,
    '    users: [',
    ...usersOf(['agent', 'reader']),
    '    ]',
    '    imports: [',
    ...[...agentStore, flowControl, obs.events, obs.health].map((s) => imp('service', S, s)),
    imp('stream', S, '_INBOX.>'),
    ...requestSubjects(p).map((s) => imp('service', C, s)),
    imp('stream', C, subjects(p).leaderUp),
    '    ]',
    '  }',
    '}',
  ];
  return `${lines.join('\n')}\n`;
}
