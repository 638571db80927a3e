// The one NATS server-URL syntax: nats://, tls://, ws://, wss:// or a bare host, optional
// user[:password]@, host name or [IPv6] literal, optional port. Lists are comma-separated.
import * as z from 'zod';

export const NATS_URL = /^((nats|tls|ws|wss):\/\/)?([^\s/:@,]+(:[^\s/@,]*)?@)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?\/?$/;

const ALLOWED = 'must be NATS URLs like nats://10.0.0.1:4222, comma-separated';

/** "nats://a:4222, nats://b:4222" → the list, or undefined if empty or any entry is malformed. */
export function parseNatsServers(text: string): string[] | undefined {
  const list = text.split(',').map((u) => u.trim()).filter((u) => u !== '');
  return list.length > 0 && list.every((u) => NATS_URL.test(u)) ? list : undefined;
}

/** zod: a comma-separated server list into a frozen array. */
export const NatsServers = z.string().transform((s, ctx): readonly string[] => {
  const list = parseNatsServers(s);
  if (list === undefined) {
    ctx.addIssue({ code: 'custom', message: ALLOWED });
    return z.NEVER;
  }
  return Object.freeze(list);
});

/** A NATS URL safe to log: user info (user:password@) replaced. */
export function redactUrl(url: string): string {
  return url.replace(/^((?:[a-z]+:\/\/)?)[^\s/@]+@/, '$1***@');
}

/** zod: one server URL. */
export const NatsUrl = z.string().regex(NATS_URL, 'must be a NATS URL like nats://10.0.0.1:4222 (comma-separate several)');
