// Server-side NATS permissions per role, as data, rendered into a nats-server `authorization`
// block by `crosslink-coordinator nats-config`. Pure. Subjects are those nats.js 3 uses against
// nats-server 2.9+ (which puts the consumer's filter subject into the create subject, so a watch
// can be pinned to the key ranges a role may read). Rationale and limits: docs/security.md.
import { kvKeys } from '../protocol/subjects.ts';

export type NatsRole = 'agent' | 'coordinator' | 'reader';

export interface SubjectPermissions {
  readonly publish: { readonly allow: readonly string[]; readonly deny: readonly string[] };
  readonly subscribe: { readonly allow: readonly string[]; readonly deny: readonly string[] };
}

export interface PermissionScope {
  readonly bucket: string;
  readonly subjectPrefix: string;
}

/** Keys a role may read (watch or get). Agents: nodes, clusters, the current policy — never ipam, revocations or the lease. */
export function readableKeys(role: NatsRole): readonly string[] {
  if (role === 'agent') return [kvKeys.nodesFilter, kvKeys.clustersFilter, 'policy.current'];
  return [kvKeys.nodesFilter, kvKeys.clustersFilter, 'policy.>', kvKeys.revokedFilter];
}

export function permissionsFor(role: NatsRole, scope: PermissionScope): SubjectPermissions {
  const { bucket, subjectPrefix: p } = scope;
  const stream = `KV_${bucket}`;
  if (role === 'coordinator') {
    return {
      // The coordinator writes the bucket, manages its stream and answers requests (replies go to the requesters' inboxes).
      publish: { allow: [`$KV.${bucket}.>`, '$JS.API.>', `$JS.ACK.${stream}.>`, `$JS.FC.${stream}.>`, '_INBOX.>'], deny: [] },
      subscribe: { allow: [`${p}.register`, `${p}.heartbeat`, `${p}.deregister`, '_INBOX.>'], deny: [] },
    };
  }
  const keys = readableKeys(role);
  return {
    publish: {
      allow: [
        ...(role === 'agent' ? [`${p}.register`, `${p}.heartbeat`, `${p}.deregister`] : []),
        '$JS.API.INFO',
        `$JS.API.STREAM.INFO.${stream}`,
        // An ordered consumer (KV watch): server-named, filter subject in the create subject.
        ...keys.map((k) => `$JS.API.CONSUMER.CREATE.${stream}.*.$KV.${bucket}.${k}`),
        `$JS.API.CONSUMER.INFO.${stream}.*`,
        `$JS.API.CONSUMER.DELETE.${stream}.*`,
        // Direct get names the key in the subject: reads are pinned to the readable keys.
        ...keys.map((k) => `$JS.API.DIRECT.GET.${stream}.$KV.${bucket}.${k}`),
        `$JS.FC.${stream}.>`,
      ],
      deny: [
        `$KV.>`,
        '$JS.API.CONSUMER.DURABLE.CREATE.>',
        // Unfiltered consumer create (old API): could read every key.
        `$JS.API.CONSUMER.CREATE.${stream}`,
        // Message get by JSON body: could read any key (ipam, lease).
        '$JS.API.STREAM.MSG.GET.>',
      ],
    },
    // Only inboxes: replies, and the watch's deliveries. Never the request subjects (no sniffing registrations).
    subscribe: { allow: ['_INBOX.>'], deny: [`${p}.>`] },
  };
}

export interface NatsUserSpec {
  readonly user: string;
  readonly role: NatsRole;
  /** Literal password, or a nats-server variable reference like `$AGENT_PASSWORD`. */
  readonly password: string;
}

const quote = (s: string): string => JSON.stringify(s);
const list = (xs: readonly string[]): string => `[${xs.map(quote).join(', ')}]`;

/** A nats-server `authorization { users = [...] }` block (include it from the server config). */
export function renderAuthorization(users: readonly NatsUserSpec[], scope: PermissionScope): string {
  const lines = ['# Rendered by `crosslink-coordinator nats-config`; roles: docs/security.md.', 'authorization {', '  users = ['];
  for (const u of users) {
    const perm = permissionsFor(u.role, scope);
    const password = u.password.startsWith('$') ? u.password : quote(u.password);
    lines.push(
      `    # ${u.role}`,
      `    { user: ${quote(u.user)}, password: ${password}, permissions: {`,
      `        publish: { allow: ${list(perm.publish.allow)}${perm.publish.deny.length > 0 ? `, deny: ${list(perm.publish.deny)}` : ''} }`,
      `        subscribe: { allow: ${list(perm.subscribe.allow)}${perm.subscribe.deny.length > 0 ? `, deny: ${list(perm.subscribe.deny)}` : ''} }`,
      `    } }`,
    );
  }
  lines.push('  ]', '}');
  return `${lines.join('\n')}\n`;
}
