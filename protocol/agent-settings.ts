// Agent settings both the agent and the CLI's `showconf` understand: defaults, the interface-name
// rule and the relay port range. Kept here (not in agent/config.ts) so the CLI does not reach into
// the agent's flag parsing.
import * as z from 'zod';
import { ValidationError } from '../lib/errors.ts';
import { MTU_MAX, MTU_MIN } from './mtu.ts';

export const AGENT_DEFAULTS = {
  listenPort: 51820,
  interfaceName: 'crosslink0',
  stateDir: '/var/lib/crosslink',
  natKeepaliveSec: 25,
  resyncIntervalMs: 30_000,
  relayPortRange: '52000-52999',
  /** Health port used in Kubernetes mode when --health-addr is not given (probes point here). */
  kubernetesHealthAddr: '127.0.0.1:9471',
  logLevel: 'info',
} as const;

/** Upper bound of --persistent-keepalive and --nat-keepalive (seconds; 0 = off). */
export const KEEPALIVE_MAX_SEC = 3600;

/** A keepalive in whole seconds, 0–KEEPALIVE_MAX_SEC (text from a flag is coerced). */
export const KeepaliveSeconds = z.coerce
  .number()
  .int(`must be a whole number 0-${KEEPALIVE_MAX_SEC}`)
  .min(0, `must be 0-${KEEPALIVE_MAX_SEC}`)
  .max(KEEPALIVE_MAX_SEC, `must be 0-${KEEPALIVE_MAX_SEC}`);

/** Linux IFNAMSIZ is 16 including the NUL; no '/', ':' or whitespace; not "." or "..". */
export const InterfaceName = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,15}$/, 'must be 1-15 characters: letters, digits, "_", "-", "."')
  .refine((s) => s !== '.' && s !== '..', 'must not be "." or ".."');

/** "first-last" relay ports; the range must not contain `listenPort`. */
export function parseRelayPortRange(label: string, text: string, listenPort: number): { readonly first: number; readonly last: number } {
  const rm = /^([0-9]{1,5})-([0-9]{1,5})$/.exec(text.trim());
  const allowed = 'must be "first-last" with 1024 <= first <= last <= 65535, e.g. 52000-52999, not containing --listen-port';
  if (!rm || rm[1] === undefined || rm[2] === undefined) throw new ValidationError(label, text, allowed);
  const first = Number(rm[1]);
  const last = Number(rm[2]);
  if (first < 1024 || last > 65535 || first > last || (listenPort >= first && listenPort <= last)) {
    throw new ValidationError(label, text, allowed);
  }
  return { first, last };
}

/**
 * The data-plane settings a node's agent actually applies, carried (optionally: older agents do not
 * send them) in its registration and signed node record, so `crosslink showconf --nats-url`
 * computes exactly what the agent applies instead of assuming the defaults.
 */
export const EffectiveSettings = z
  .object({
    interfaceName: InterfaceName,
    /** The MTU in effect (after --mtu auto was resolved). */
    mtu: z.number().int().min(MTU_MIN).max(MTU_MAX),
    /** Keepalive (s) used towards and from NATed peers. */
    natKeepaliveSec: z.number().int().min(0).max(KEEPALIVE_MAX_SEC),
    relayPortBase: z.number().int().min(1024).max(65535),
    relayPortSpan: z.number().int().min(1).max(64512),
  })
  .strict();
export type EffectiveSettings = z.infer<typeof EffectiveSettings>;
