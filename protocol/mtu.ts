// The one MTU bound of the overlay, used by the agent's --mtu, its auto-detection, the CLI's
// showconf --mtu and the /view document. The overlay carries IPv6 (pod and overlay addresses may be
// v6), and IPv6 requires every link to carry 1280-byte packets (RFC 8200 §5), so the tunnel
// interface never goes below 1280; 9000 is the largest jumbo frame clouds offer.
import * as z from 'zod';

export const MTU_MIN = 1280;
export const MTU_MAX = 9000;

/** WireGuard's worst-case encapsulation overhead: outer IPv6 40 + UDP 8 + WireGuard 32 bytes. */
export const WIREGUARD_OVERHEAD = 80;
/**
 * The overlay MTU when the underlay's is unknown: the common 1500-byte underlay minus the overhead.
 * The agent's auto-detection falls back to it; `showconf --nats-url` assumes it for a record without settings.
 */
export const MTU_FALLBACK = 1500 - WIREGUARD_OVERHEAD;

/** A configured overlay MTU (text from a flag, or a number); `alternative` names another accepted value (e.g. "auto") for the message. */
export function mtuSchema(alternative?: string): z.ZodType<number> {
  const allowed = `must be ${alternative === undefined ? '' : `${alternative} or `}a whole number ${MTU_MIN}-${MTU_MAX} (IPv6 needs at least ${MTU_MIN})`;
  return z.coerce.number().int(allowed).min(MTU_MIN, allowed).max(MTU_MAX, allowed);
}

export const Mtu = mtuSchema();
