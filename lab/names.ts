// Names of everything a lab creates. One prefix ("xl") plus a per-lab id, so several labs (the
// demo, tests, other engineers' runs) coexist on one machine and teardown finds exactly its own.
import { ValidationError } from '../lib/errors.ts';

export const LAB_PREFIX = 'xl';

/** Lab ids are short: they end up inside 15-character interface names (`xl<id>w<k>`). */
const LAB_ID = /^[a-z0-9]{1,6}$/;
export const MAX_WG_INDEX = 99;

export function checkLabId(id: string): string {
  if (!LAB_ID.test(id)) throw new ValidationError('id', id, 'a lab id is 1-6 lowercase letters or digits');
  return id;
}

/** A fresh id for a test run: unique enough that concurrent runs never collide. */
export function randomLabId(lead = 't'): string {
  const rest = Math.floor(Math.random() * 36 ** 5)
    .toString(36)
    .padStart(5, '0');
  return checkLabId(`${lead.slice(0, 1)}${rest}`);
}

/** Every namespace of lab `id` starts with this (the trailing dash keeps `xl-a-` apart from `xl-ab-`). */
export function namespacePrefix(id: string): string {
  return `${LAB_PREFIX}-${id}-`;
}

export function namespaceName(id: string, ...parts: string[]): string {
  return `${namespacePrefix(id)}${parts.join('-')}`;
}

/** The lab id a namespace belongs to, if it looks like a lab namespace. */
export function labIdOfNamespace(ns: string): string | undefined {
  const m = /^xl-([a-z0-9]{1,6})-/.exec(ns);
  return m?.[1];
}

/**
 * WireGuard interface of the k-th node. Must be unique machine-wide: wireguard-go's UAPI sockets
 * live in /var/run/wireguard, which every network namespace shares.
 */
export function wireguardInterfaceName(id: string, k: number): string {
  if (!Number.isInteger(k) || k < 1 || k > MAX_WG_INDEX) {
    throw new ValidationError('node index', k, `must be 1-${MAX_WG_INDEX}`);
  }
  return `${LAB_PREFIX}${id}w${k}`;
}

/** Matches the UAPI socket file names of lab `id`'s WireGuard interfaces. */
export function wireguardSocketPattern(id: string): RegExp {
  return new RegExp(`^${LAB_PREFIX}${id}w[0-9]{1,2}\\.sock$`);
}
